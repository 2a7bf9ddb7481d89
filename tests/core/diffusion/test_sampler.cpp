#include <algorithm>
#include <limits>
#include <string>

#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/sampler.h"
#include "core/util/rng.h"

using namespace tess::diffusion;
using tess::model::Decoder;
using tess::model::ModelConfig;
using tess::util::Rng;

namespace {

ModelConfig toy_config(int64_t vocab) {
  auto c = ModelConfig::preset("tiny");
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

SamplerOptions options(int64_t steps, double top_p) {
  SamplerOptions o;
  o.steps = steps;
  o.top_p = top_p;
  return o;
}

}  // namespace

TEST_CASE("sampling is seeded (same seed, same tokens) and context positions are untouched", "[unit][diffusion]") {
  DiffusionLM lm(Decoder(toy_config(30), 1), SelfCondition::LogitsMean, false, 2);
  lm->eval();
  auto batch = SampleBatch::from_prompts({{1, 5, 6, 7}, {1, 9}}, 5, 0);
  CHECK(batch.ids.sizes() == torch::IntArrayRef({2, 9}));
  REQUIRE(batch.key_mask.defined());
  CHECK(batch.key_mask[1].sum().item<int64_t>() == 7);
  Sampler sampler(*lm, options(8, 0.99));
  Rng a(7, "sample"), b(7, "sample"), c(8, "sample");
  auto out_a = sampler.sample(batch, a);
  CHECK(torch::equal(out_a, sampler.sample(batch, b)));
  CHECK_FALSE(torch::equal(out_a, sampler.sample(batch, c)));
  auto context = batch.span_mask.logical_not();
  CHECK(torch::equal(out_a.masked_select(context), batch.ids.masked_select(context)));
}

TEST_CASE("top-p with p -> 0 is argmax and top-p keeps the smallest set reaching p", "[unit][diffusion]") {
  DiffusionLM lm(Decoder(toy_config(30), 1), SelfCondition::LogitsMean, false, 2);
  auto logits = torch::randn({64, 30}) * 3;
  Rng rng(1, "sample");
  CHECK(torch::equal(Sampler(*lm, options(4, 1e-9)).choose_tokens(logits, rng), logits.argmax(-1)));
  CHECK(torch::equal(Sampler(*lm, options(4, 0)).choose_tokens(logits, rng), logits.argmax(-1)));
  // Probabilities 0.5, 0.3, 0.2: p = 0.7 keeps the first two only.
  auto three = torch::log(torch::tensor({{0.5, 0.3, 0.2}}, torch::kFloat32)).expand({2000, 3}).contiguous();
  auto picks = Sampler(*lm, options(4, 0.7)).choose_tokens(three, rng);
  CHECK((picks == 2).sum().item<int64_t>() == 0);
  CHECK((picks == 1).sum().item<int64_t>() > 500);
}

TEST_CASE("top-p over a large vocabulary draws only from the nucleus a full sort defines, however wide",
          "[unit][diffusion]") {
  // Rows from peaked (nucleus of a few tokens) to nearly flat (thousands,
  // beyond the first top-k window the choice looks at).
  Rng init(2, "init"), rng(3, "sample");
  auto logits = torch::randn({4, 5000}, init.generator()) *
                torch::tensor({8.0f, 2.0f, 0.5f, 0.05f}).unsqueeze(1);
  auto probs = torch::softmax(logits, -1);
  auto [sorted, order] = probs.sort(-1, true);
  auto rank = torch::empty_like(order).scatter(-1, order, torch::arange(5000).expand({4, 5000}).contiguous());
  // p = 0.9: the flat row's tail is ~500 tokens (sorted path); p = 0.99: ~50
  // (bottom window); the peaked rows end in the top window.
  for (double p : {0.9, 0.99}) {
    auto nucleus = torch::zeros_like(probs, torch::kBool)
                       .scatter(-1, order, (sorted.cumsum(-1) - sorted) < p);  // the reference rule
    std::vector<int64_t> widest(4, 0);
    for (int draw = 0; draw < 300; ++draw) {
      auto picks = choose_tokens(logits, p, 1.0, rng);
      for (int64_t r = 0; r < 4; ++r) {
        int64_t t = picks[r].item<int64_t>();
        REQUIRE(nucleus[r][t].item<bool>());
        widest[r] = std::max(widest[r], rank[r][t].item<int64_t>());
      }
    }
    INFO("p " << p << ": nucleus sizes " << nucleus.sum(-1) << " widest picked ranks " << widest[0] << " "
              << widest[1] << " " << widest[2] << " " << widest[3]);
    CHECK(widest[3] > 2048);  // the flat row's picks reach far beyond the first windows
    CHECK(widest[0] < nucleus[0].sum().item<int64_t>());
  }
}

TEST_CASE("top-p keeps every token tied with the nucleus's smallest, and NaN logits are a clear error",
          "[unit][diffusion]") {
  // Probabilities 0.4, 0.2, 0.2, 0.2 at p = 0.5: the nucleus reaches into the
  // tied 0.2s, so all three are in; token 0 alone (0.4) does not reach 0.5.
  auto tied = torch::log(torch::tensor({{0.4, 0.2, 0.2, 0.2}}, torch::kFloat32)).expand({3000, 4}).contiguous();
  Rng rng(5, "sample");
  auto picks = choose_tokens(tied, 0.5, 1.0, rng);
  for (int64_t t = 0; t < 4; ++t) CHECK((picks == t).sum().item<int64_t>() > 300);
  // One row with one NaN logit: every probability is NaN.
  auto bad = torch::zeros({2, 50});
  bad[1][7] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(choose_tokens(bad, 0.9, 1.0, rng), Catch::Matchers::Contains("NaN"));
  CHECK_THROWS_WITH(choose_tokens(bad, 1.0, 1.0, rng), Catch::Matchers::Contains("NaN"));  // plain sampling too
}

TEST_CASE("the guidance hook sees every step in fp32 and steers the tokens", "[unit][diffusion]") {
  DiffusionLM lm(Decoder(toy_config(30), 3), SelfCondition::LogitsMean, false, 4);
  auto batch = SampleBatch::from_prompts({{1, 5}}, 4, 0);
  Sampler sampler(*lm, options(6, 0.9));
  std::vector<int64_t> hook_steps, callback_steps;
  Rng rng(3, "sample");
  auto out = sampler.sample(
      batch, rng, [&](const StepInfo& s) { callback_steps.push_back(s.t); },
      [&](int64_t t, const torch::Tensor& logits, const SpanIndex&) {
        CHECK(logits.scalar_type() == torch::kFloat32);
        hook_steps.push_back(t);
        auto steered = logits.clone();
        steered.select(1, 17).add_(100.0);
        return steered;
      });
  CHECK(hook_steps == std::vector<int64_t>{5, 4, 3, 2, 1, 0});
  CHECK(callback_steps == hook_steps);
  CHECK(torch::equal(out[0].narrow(0, 2, 4), torch::full({4}, 17, torch::kInt64)));
}

TEST_CASE("the answer is cut at the first EOS or PAD", "[unit][diffusion]") {
  auto batch = SampleBatch::from_prompts({{1, 5}, {1, 6}, {1, 7}}, 4, 0);
  auto ids = batch.ids.clone();
  ids[0].narrow(0, 2, 4).copy_(torch::tensor({9, 8, 2, 7}));   // EOS after two tokens
  ids[1].narrow(0, 2, 4).copy_(torch::tensor({9, 0, 8, 2}));   // PAD after one
  ids[2].narrow(0, 2, 4).copy_(torch::tensor({9, 8, 7, 6}));   // no end: the whole span
  auto out = Sampler::span_outputs(ids, batch, 2, 0);
  CHECK(out[0] == std::vector<int64_t>{9, 8});
  CHECK(out[1] == std::vector<int64_t>{9});
  CHECK(out[2] == std::vector<int64_t>{9, 8, 7, 6});
  // PAD == EOS (Qwen2.5's <|endoftext|>, id 0 here): cut at the first one.
  auto shared = batch.ids.clone();
  shared[0].narrow(0, 2, 4).copy_(torch::tensor({9, 8, 0, 0}));
  shared[1].narrow(0, 2, 4).copy_(torch::tensor({9, 0, 8, 0}));
  shared[2].narrow(0, 2, 4).copy_(torch::tensor({9, 8, 7, 6}));
  auto cut = Sampler::span_outputs(shared, batch, 0, 0);
  CHECK(cut[0] == std::vector<int64_t>{9, 8});
  CHECK(cut[1] == std::vector<int64_t>{9});
  CHECK(cut[2] == std::vector<int64_t>{9, 8, 7, 6});
  StopRule rule{true, 2, 0.5, /*end_id=*/0, /*pad_id=*/0};
  auto gap = torch::tensor({0.9f, 0.8f, 0.01f});
  auto check = check_answer(torch::tensor({5, 0, 7}, torch::kInt64), torch::tensor({5, 0, 9}, torch::kInt64), gap, rule);
  CHECK(check.same);
  CHECK(check.margin == Approx(0.8f));
}

TEST_CASE("a tiny diffusion LM learns span infilling and the sampler fills spans", "[integration][diffusion]") {
  // Task: [BOS a b c d SEP] -> span [d c b a EOS] (reversal needs bidirectional context).
  const int64_t vocab = 16, sep = 13, L = 11;
  auto cfg = toy_config(vocab);
  DiffusionLM lm(Decoder(cfg, 11), SelfCondition::LogitsMean, false, 12);
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 200), {5.0, 0.5});
  Rng data(1, "data"), noise(1, "noise"), coin(1, "self_condition");
  auto make = [&](int64_t n) {
    auto digits = torch::randint(3, 13, {n, 4}, data.generator());
    auto ids = torch::empty({n, L}, torch::kInt64);
    ids.select(1, 0).fill_(1);
    ids.narrow(1, 1, 4).copy_(digits);
    ids.select(1, 5).fill_(sep);
    ids.narrow(1, 6, 4).copy_(digits.flip(1));
    ids.select(1, 10).fill_(2);
    return ids;
  };
  auto span = torch::zeros({32, L}, torch::kBool);
  span.narrow(1, 6, 5).fill_(true);
  torch::optim::AdamW opt(lm->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0));
  lm->train();
  double first = 0, last = 0;
  for (int step = 0; step < 400; ++step) {
    auto r = loss(*lm, make(32), span, {noise, coin});
    auto mean = r.loss_sum / static_cast<double>(r.tokens);
    opt.zero_grad();
    mean.backward();
    opt.step();
    if (step < 10) first += mean.item<double>() / 10;
    if (step >= 390) last += mean.item<double>() / 10;
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.35 * first);

  lm->eval();
  auto test = make(40);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t i = 0; i < 40; ++i) {
    auto row = test[i].narrow(0, 0, 6);
    prompts.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + 6);
  }
  auto batch = SampleBatch::from_prompts(prompts, 5, 0);
  Rng rng(5, "sample");
  auto out = Sampler(*lm, options(20, 0.9)).sample(batch, rng);
  auto answers = Sampler::span_outputs(out, batch, 2, 0);
  int correct = 0;
  for (int64_t i = 0; i < 40; ++i) {
    auto want = test[i].narrow(0, 6, 4);
    correct += answers[i] == std::vector<int64_t>(want.data_ptr<int64_t>(), want.data_ptr<int64_t>() + 4);
  }
  INFO("exact fills: " << correct << "/40");
  CHECK(correct >= 28);
}

namespace {

SamplerOptions adaptive(int64_t steps, double top_p, int64_t stable_steps, double margin) {
  auto o = options(steps, top_p);
  o.stop = {true, stable_steps, margin};
  return o;
}

std::vector<Rng> row_streams(uint64_t seed, const std::vector<int>& rows) {
  std::vector<Rng> out;
  for (int r : rows) out.emplace_back(seed, "row." + std::to_string(r));
  return out;
}

// A zero LM head: every step's logits are 0, so the probabilities are
// uniform (top-p draws at random), the argmax (token 0) never changes and the
// top-1/top-2 margin is exactly 0.
DiffusionLM zero_head_lm() {
  DiffusionLM lm(Decoder(toy_config(30), 1), SelfCondition::LogitsMean, false, 2);
  lm->eval();
  torch::NoGradGuard g;
  lm->decoder->lm_head_weight().zero_();
  return lm;
}

}  // namespace

TEST_CASE("adaptive stopping stops a row whose argmax held for stable_steps with the margin, within the budget",
          "[unit][diffusion]") {
  auto lm = zero_head_lm();
  auto batch = SampleBatch::from_prompts({{1, 5, 6}, {1, 9, 4}}, 4, 0);
  struct Case {
    int64_t stable_steps;
    double margin;
    int64_t expected_steps;
  };
  // Step 1 sets the argmax, each later unchanged step adds one: a row stops
  // after stable_steps + 1 steps once the margin is met, never after the budget.
  for (auto c : {Case{2, 0.0, 3}, Case{1, 0.0, 2}, Case{2, 0.1, 10}, Case{20, 0.0, 10}}) {
    INFO("stable_steps " << c.stable_steps << ", margin " << c.margin);
    auto streams = row_streams(3, {0, 1});
    auto r = Sampler(*lm, adaptive(10, 0.99, c.stable_steps, c.margin)).sample_rows(batch, streams);
    CHECK(r.steps == std::vector<int64_t>{c.expected_steps, c.expected_steps});
    CHECK(torch::equal(r.ids.masked_select(batch.span_mask), torch::zeros({8}, torch::kInt64)));
  }
}

TEST_CASE("batched adaptive decoding gives each row the tokens and steps of decoding it alone", "[unit][diffusion]") {
  DiffusionLM lm(Decoder(toy_config(30), 4), SelfCondition::LogitsMean, false, 5);
  lm->eval();
  std::vector<std::vector<int64_t>> prompts = {{1, 5, 6, 7}, {1, 9, 8, 3}, {1, 4, 4, 4}, {1, 3, 9, 5}};
  auto options = adaptive(24, 0.9, 2, 0.0);
  Sampler sampler(*lm, options);
  auto batch = SampleBatch::from_prompts(prompts, 6, 0);
  auto streams = row_streams(11, {0, 1, 2, 3});
  std::vector<int64_t> seen_steps;
  auto together = sampler.sample_rows(batch, streams, [&](const StepInfo& s) { seen_steps.push_back(s.rows.size()); });
  for (int i = 0; i < 4; ++i) {
    INFO("row " << i);
    auto alone_batch = SampleBatch::from_prompts({prompts[static_cast<size_t>(i)]}, 6, 0);
    auto alone_streams = row_streams(11, {i});
    auto alone = sampler.sample_rows(alone_batch, alone_streams);
    CHECK(torch::equal(alone.ids[0], together.ids[i]));
    CHECK(alone.steps[0] == together.steps[static_cast<size_t>(i)]);
  }
  // The rows that stopped left the batch: later steps ran fewer rows.
  INFO("steps per row: " << together.steps[0] << " " << together.steps[1] << " " << together.steps[2] << " "
                         << together.steps[3]);
  CHECK(seen_steps.front() == 4);
  CHECK(*std::min_element(together.steps.begin(), together.steps.end()) < 24);
  CHECK(seen_steps.back() < 4);
}

TEST_CASE("adaptive stopping settings out of range are config errors naming file and line", "[unit][diffusion]") {
  for (const auto& [yaml, key] : {std::pair<std::string, std::string>{"sample:\n  stable_steps: 0\n", "sample.stable_steps"},
                                  {"sample:\n  margin: 1.5\n", "sample.margin"},
                                  {"sample:\n  margin: -0.1\n", "sample.margin"}}) {
    INFO(yaml);
    try {
      (void)tess::config::Config::load_string(yaml, "adaptive.yaml");
      FAIL("accepted");
    } catch (const std::exception& e) {
      CHECK_THAT(e.what(), Catch::Contains("adaptive.yaml:2") && Catch::Contains(key));
    }
  }
}

TEST_CASE("adaptive stopping judges the answer only: the span up to its first end or pad token", "[unit][diffusion]") {
  auto now = torch::tensor({5, 2, 7}, torch::kInt64), before = torch::tensor({5, 2, 9}, torch::kInt64);
  auto gap = torch::tensor({0.9f, 0.8f, 0.01f});
  StopRule rule{true, 2, 0.5, /*end_id=*/2, /*pad_id=*/0};
  auto answer = check_answer(now, before, gap, rule);
  CHECK(answer.same);  // what follows the end token differs, the answer does not
  CHECK(answer.margin == Approx(0.8f));
  rule.end_id = rule.pad_id = -1;  // no end token: the whole span
  auto whole = check_answer(now, before, gap, rule);
  CHECK_FALSE(whole.same);
  CHECK(whole.margin == Approx(0.01f));
  rule.end_id = 2;
  CHECK_FALSE(check_answer(now, torch::tensor({5, 3, 2}, torch::kInt64), gap, rule).same);  // the answer grew
  CHECK_FALSE(check_answer(now, torch::Tensor(), gap, rule).same);                           // the first step
}

// ---- the approximate prompt cache (sample.cache_refresh) -------------------------------------

namespace {

// The span logits of one pass with noisy simplex rows x at time t.
torch::Tensor pass(DiffusionLMImpl& lm, const SampleBatch& batch, const torch::Tensor& x, PromptCache* cache) {
  auto span = SpanIndex::from_mask(batch.span_mask);
  RowSource rows = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
  DiffusionInputs in{batch.ids, batch.span_mask, torch::full({batch.ids.size(0)}, 0.5f), batch.key_mask};
  return lm.span_logits(in, span, rows, {}, cache);
}

}  // namespace

TEST_CASE("a prompt cache's span-only pass right after a refresh gives the full pass's logits", "[unit][diffusion]") {
  torch::NoGradGuard no_grad;
  DiffusionLM lm(Decoder(toy_config(30), 4), SelfCondition::LogitsMean, false, 5);
  lm->eval();
  // Rows of different prompt lengths: right padding, masked keys, spans at different positions.
  auto batch = SampleBatch::from_prompts({{1, 5, 6, 7, 8, 9}, {1, 9}, {1, 4, 4}}, 4, 0);
  int64_t n = batch.span_mask.sum().item<int64_t>();
  Rng rng(3, "x");
  auto x = gaussian_rows(rng, n, 30) * 5.0;
  auto full = pass(*lm, batch, x, nullptr);

  PromptCache cache(batch.span_mask, 4);
  REQUIRE(cache.usable());
  cache.begin_step(0);
  CHECK(torch::equal(pass(*lm, batch, x, &cache), full));  // the recording pass is the full pass
  cache.begin_step(1);
  auto reused = pass(*lm, batch, x, &cache);
  CHECK(cache.full_passes() == 1);
  CHECK(cache.partial_passes() == 1);
  // The same span input: the recorded keys/values are exactly what a full pass would compute.
  CHECK(torch::allclose(reused, full, 1e-5, 1e-5));
  CHECK((reused - full).abs().max().item<float>() < 1e-5);

  // A changed span: the span-only pass is approximate (the context keeps the
  // recorded keys/values), the next refresh is exact again.
  auto x2 = gaussian_rows(rng, n, 30) * 5.0;
  auto full2 = pass(*lm, batch, x2, nullptr);
  cache.begin_step(2);
  auto approx = pass(*lm, batch, x2, &cache);
  CHECK((approx - full2).abs().max().item<float>() > 1e-4);
  CHECK((approx - full).abs().max().item<float>() > 1e-3);  // it did see the new span
  cache.begin_step(4);
  CHECK(torch::equal(pass(*lm, batch, x2, &cache), full2));
  CHECK(cache.full_passes() == 2);
}

TEST_CASE("cache_refresh 1 is the uncached sampler bit for bit, larger intervals run span-only passes between",
          "[unit][diffusion]") {
  DiffusionLM lm(Decoder(toy_config(30), 4), SelfCondition::LogitsMean, false, 5);
  lm->eval();
  auto batch = SampleBatch::from_prompts({{1, 5, 6, 7}, {1, 9}}, 5, 0);
  PassCount passes;
  auto with = [&](int64_t refresh, bool adaptive_stop) {
    auto o = options(10, 0.9);
    o.cache_refresh = refresh;
    o.stop.enabled = adaptive_stop;
    auto streams = row_streams(9, {0, 1});
    Sampler sampler(*lm, o);
    auto r = sampler.sample_rows(batch, streams);
    passes = sampler.passes();
    return r;
  };
  auto plain = with(0, false);
  CHECK(passes.full == 10);
  auto exact = with(1, false);
  CHECK(torch::equal(plain.ids, exact.ids));
  CHECK(passes.full == 10);
  CHECK(passes.span_only == 0);
  Sampler fixed(*lm, [] { auto o = options(10, 0.9); o.cache_refresh = 1; return o; }());
  Rng a(4, "s"), b(4, "s");
  CHECK(torch::equal(fixed.sample(batch, a), Sampler(*lm, options(10, 0.9)).sample(batch, b)));

  auto cached = with(4, false);  // full passes at steps 0, 4, 8
  CHECK(passes.full == 3);
  CHECK(passes.span_only == 7);
  CHECK(fixed.passes().full == 10);
  auto context = batch.span_mask.logical_not();
  CHECK(torch::equal(cached.ids.masked_select(context), batch.ids.masked_select(context)));
}

TEST_CASE("with the prompt cache, batched adaptive decoding still gives each row the tokens of decoding it alone",
          "[unit][diffusion]") {
  DiffusionLM lm(Decoder(toy_config(30), 4), SelfCondition::LogitsMean, false, 5);
  lm->eval();
  std::vector<std::vector<int64_t>> prompts = {{1, 5, 6, 7}, {1, 9, 8, 3}, {1, 4, 4, 4}, {1, 3, 9, 5}};
  auto o = adaptive(24, 0.9, 2, 0.0);
  o.cache_refresh = 3;
  Sampler sampler(*lm, o);
  auto batch = SampleBatch::from_prompts(prompts, 6, 0);
  auto streams = row_streams(11, {0, 1, 2, 3});
  auto together = sampler.sample_rows(batch, streams);
  CHECK(sampler.passes().span_only > 0);
  CHECK(*std::min_element(together.steps.begin(), together.steps.end()) <
        *std::max_element(together.steps.begin(), together.steps.end()));  // rows left the batch on the way
  for (int i = 0; i < 4; ++i) {
    INFO("row " << i);
    auto alone_streams = row_streams(11, {i});
    auto alone = sampler.sample_rows(SampleBatch::from_prompts({prompts[static_cast<size_t>(i)]}, 6, 0), alone_streams);
    CHECK(torch::equal(alone.ids[0], together.ids[i]));
    CHECK(alone.steps[0] == together.steps[static_cast<size_t>(i)]);
  }
}

TEST_CASE("a prompt cache over rows with different active counts runs full passes only, bad intervals are errors",
          "[unit][diffusion]") {
  auto mask = torch::zeros({2, 6}, torch::kBool);
  mask[0].narrow(0, 2, 3).fill_(true);  // 3 span + 1 predictor
  mask[1].narrow(0, 1, 2).fill_(true);  // 2 span + 1 predictor
  PromptCache uneven(mask, 4);
  CHECK_FALSE(uneven.usable());
  CHECK(uneven.refreshes(1));
  CHECK_THROWS_WITH(PromptCache(mask, 0), Catch::Contains("refresh interval must be >= 1"));
  try {
    (void)tess::config::Config::load_string("sample:\n  cache_refresh: -1\n", "cache.yaml");
    FAIL("accepted");
  } catch (const std::exception& e) {
    CHECK_THAT(e.what(), Catch::Contains("cache.yaml:2") && Catch::Contains("sample.cache_refresh"));
  }
}

TEST_CASE("freezing keeps a settled position's token from then on, and counts the frozen positions",
          "[unit][diffusion]") {
  auto lm = zero_head_lm();
  auto batch = SampleBatch::from_prompts({{1, 5, 6}, {1, 9, 4}}, 6, 0);
  auto run = [&](bool freeze, double margin, std::vector<torch::Tensor>* seen) {
    auto o = options(10, 0.99);
    o.stop.freeze = freeze;
    o.stop.stable_steps = 2;
    o.stop.margin = margin;
    auto streams = row_streams(5, {0, 1});
    return Sampler(*lm, o).sample_rows(batch, streams, [&](const StepInfo& s) { seen->push_back(s.tokens.clone()); });
  };
  std::vector<torch::Tensor> free_steps, frozen_steps, blocked_steps;
  auto unfrozen = run(false, 0.0, &free_steps);
  auto frozen = run(true, 0.0, &frozen_steps);
  auto blocked = run(true, 0.1, &blocked_steps);  // the margin is never met
  REQUIRE(frozen_steps.size() == 10);
  // Steps 0-2 draw as without freezing (held 0, 1, 2 steps); every position freezes after step 2 and
  // from step 3 on its token is the frozen argmax, 0, never changing.
  for (size_t s = 0; s < 3; ++s) CHECK(torch::equal(frozen_steps[s], free_steps[s]));
  for (size_t s = 3; s < 10; ++s) {
    INFO("step " << s);
    CHECK(torch::equal(frozen_steps[s], torch::zeros({12}, torch::kInt64)));
    CHECK_FALSE(torch::equal(free_steps[s], torch::zeros({12}, torch::kInt64)));  // random draws otherwise
  }
  CHECK(frozen.frozen == std::vector<int64_t>{6, 6});
  CHECK(unfrozen.frozen == std::vector<int64_t>{0, 0});
  CHECK(blocked.frozen == std::vector<int64_t>{0, 0});
  for (size_t s = 0; s < 10; ++s) CHECK(torch::equal(blocked_steps[s], free_steps[s]));  // no freeze, same draws
  CHECK(torch::equal(frozen.ids.masked_select(batch.span_mask), torch::zeros({12}, torch::kInt64)));
}
