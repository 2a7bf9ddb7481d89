#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "core/diffusion/diffusion_loss.h"
#include "core/model/safetensors.h"
#include "core/util/rng.h"
#include "tests/support/test_support.h"

using namespace tess::diffusion;
using tess::model::Decoder;
using tess::model::ModelConfig;
using tess::util::Rng;

namespace {

ModelConfig tiny_config(int64_t vocab = 40) {
  auto c = ModelConfig::preset("tiny");
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

DiffusionLM tiny_lm(SelfCondition mode = SelfCondition::LogitsMean, uint64_t seed = 1) {
  return DiffusionLM(Decoder(tiny_config(), seed), mode, false, seed + 100);
}

torch::Tensor mask_of(std::vector<int> bits) {
  std::vector<int64_t> b(bits.begin(), bits.end());
  return torch::tensor(b, torch::kInt64).to(torch::kBool).unsqueeze(0);
}

const std::string kData = std::string(TESS_TEST_DATA) + "/diffusion/";

}  // namespace

TEST_CASE("abar matches the formulas of all three schedules (golden from Python)", "[unit][diffusion]") {
  auto golden = nlohmann::json::parse(tess::test::read_file(kData + "schedule.json"));
  for (auto& [T, kinds] : golden.items()) {
    for (auto& [kind, values] : kinds.items()) {
      NoiseScheduler s(parse_schedule(kind), std::stoll(T));
      for (auto& [i, v] : values.items()) {
        INFO(kind << " T=" << T << " i=" << i);
        CHECK(s.abar(std::stoll(i)) == Approx(v.get<double>()).margin(1e-6));
      }
    }
  }
  NoiseScheduler s(Schedule::CosineImproved, 5000);
  CHECK(s.abar(0) == 1.0);
  CHECK(s.abar_prev(0) == 1.0);
  CHECK(s.abar_prev(10) == s.abar(9));
  for (int64_t i = 1; i < 5000; ++i) REQUIRE(s.abar(i) < s.abar(i - 1));  // strictly decreasing
}

TEST_CASE("add_noise has the forward-process mean and variance", "[unit][diffusion]") {
  NoiseScheduler s(Schedule::CosineImproved, 100);
  Rng rng(1, "noise");
  double k = 5.0;
  auto ids = torch::randint(0, 50, {4000}, rng.generator());
  auto simplex = 2 * k * torch::one_hot(ids, 50).to(torch::kFloat32) - k;
  auto t = torch::full({4000}, 60, torch::kInt64);
  auto z = torch::randn({4000, 50}, rng.generator());
  auto x = s.add_noise(simplex, t, z, k);
  double a = s.abar(60);
  auto resid = x - std::sqrt(a) * simplex;
  CHECK(resid.mean().item<double>() == Approx(0.0).margin(0.01));
  CHECK(resid.std().item<double>() == Approx(std::sqrt(1 - a) * k).epsilon(0.01));
  // The fused span-row form equals the formula with an explicit one-hot.
  auto rows = noisy_simplex_rows(ids, torch::full({4000}, a, torch::kFloat32), z, k);
  CHECK((rows - x).abs().max().item<double>() < 1e-5);
}

TEST_CASE("timesteps are uniform over 0..T-1 and drawn from the named stream", "[unit][diffusion]") {
  NoiseScheduler s(Schedule::CosineImproved, 10);
  Rng a(3, "noise"), b(3, "noise");
  auto ta = s.sample_timesteps(20000, a);
  CHECK(torch::equal(ta, s.sample_timesteps(20000, b)));
  CHECK(ta.min().item<int64_t>() == 0);
  CHECK(ta.max().item<int64_t>() == 9);
  auto counts = torch::bincount(ta);
  CHECK(counts.to(torch::kFloat64).std().item<double>() / 2000.0 < 0.05);
}

TEST_CASE("the loss is the cross-entropy of span tokens only and position 0 is never counted", "[unit][diffusion]") {
  auto lm = tiny_lm();
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 0.0});
  torch::NoGradGuard g;
  auto ids = torch::tensor({{1, 5, 7, 9, 11, 13, 15, 17}}, torch::kInt64);
  auto span = mask_of({1, 0, 0, 1, 1, 1, 0, 0});
  auto noise = torch::randn({1, 8, 40});
  torch::Tensor full;
  auto r = loss.replay(*lm, ids, span, torch::tensor({37}, torch::kInt64), noise, {}, &full);
  CHECK(r.tokens == 3);
  double expected = 0;
  for (int64_t j : {3, 4, 5})
    expected += torch::nn::functional::cross_entropy(full[0][j].unsqueeze(0), ids[0][j].unsqueeze(0)).item<double>();
  CHECK(r.loss_sum.item<double>() == Approx(expected).epsilon(1e-6));
  // The clean positions' labels are not part of it: a cross-entropy over every
  // position would be different.
  double all = torch::nn::functional::cross_entropy(full[0].narrow(0, 1, 7), ids[0].narrow(0, 1, 7)).item<double>() * 7;
  CHECK(all != Approx(expected));
}

TEST_CASE("shifted output: row 0 is zero and hidden j-1 predicts token j", "[unit][diffusion]") {
  auto lm = tiny_lm();
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 0.0});
  torch::NoGradGuard g;
  auto ids = torch::tensor({{1, 5, 7, 9, 11, 13}}, torch::kInt64);
  // No span: the head is the plain bidirectional decoder on clean embeddings, shifted by one.
  auto none = torch::zeros({1, 6}, torch::kBool);
  torch::Tensor full;
  loss.replay(*lm, ids, none, torch::tensor({5}, torch::kInt64), torch::zeros({1, 6, 40}), {}, &full);
  tess::model::ForwardOptions bidir;
  bidir.attention = tess::model::Attention::Bidirectional;
  auto plain = lm->decoder->forward(ids, bidir);
  CHECK(full[0][0].abs().max().item<double>() == 0.0);
  CHECK((full.narrow(1, 1, 5) - plain.narrow(1, 0, 5)).abs().max().item<double>() < 1e-5);
  // Moving a token moves its prediction: the logits of position j follow position j-1's input.
  auto moved = torch::tensor({{1, 5, 9, 7, 11, 13}}, torch::kInt64);
  torch::Tensor full_moved;
  loss.replay(*lm, moved, none, torch::tensor({5}, torch::kInt64), torch::zeros({1, 6, 40}), {}, &full_moved);
  auto plain_moved = lm->decoder->forward(moved, bidir);
  CHECK((full_moved.narrow(1, 1, 5) - plain_moved.narrow(1, 0, 5)).abs().max().item<double>() < 1e-5);
}

TEST_CASE("the ablations: unshifted labels predict each position from itself, causal attention hides the future",
          "[unit][diffusion]") {
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 0.0});
  torch::NoGradGuard g;
  auto ids = torch::tensor({{1, 5, 7, 9, 11, 13}}, torch::kInt64);
  auto span = mask_of({1, 0, 0, 1, 1, 1});  // position 0 in the span: predicted only when unshifted
  auto noise = torch::randn({1, 6, 40});
  auto replay = [&](DiffusionLMImpl& lm, const torch::Tensor& x, int64_t* tokens = nullptr) {
    torch::Tensor full;
    auto r = loss.replay(lm, x, span, torch::tensor({37}, torch::kInt64), noise, {}, &full);
    if (tokens) *tokens = r.tokens;
    return full;
  };
  auto shifted = tiny_lm();
  auto unshifted = tiny_lm();
  unshifted->layout.shift_labels = false;
  int64_t shifted_tokens = 0, unshifted_tokens = 0;
  auto a = replay(*shifted, ids, &shifted_tokens), b = replay(*unshifted, ids, &unshifted_tokens);
  // The same hidden states read one position later: b[j] = a[j + 1]; b[5] has no shifted twin.
  CHECK((b.narrow(1, 0, 5) - a.narrow(1, 1, 5)).abs().max().item<double>() < 1e-6);
  CHECK(a[0][0].abs().max().item<double>() == 0.0);
  CHECK(b[0][0].abs().max().item<double>() > 0.0);
  CHECK(shifted_tokens == 3);    // position 0 is never counted when shifted
  CHECK(unshifted_tokens == 4);  // unshifted it is predicted like any other
  // The sampler's and the trainer's paths (span_logits, span_loss) agree with the full logits in both layouts.
  for (auto* lm : {&shifted, &unshifted}) {
    auto index = SpanIndex::from_mask(span);
    auto labels = ids.reshape(-1).index_select(0, index.flat);
    auto x = noise.reshape({6, 40}).index_select(0, index.flat);
    RowSource rows = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
    DiffusionInputs in{ids, span, torch::tensor({0.37f}), {}};
    auto full = (*lm)->full_logits(in, index, rows).reshape({6, 40}).index_select(0, index.flat);
    auto logits = (*lm)->span_logits(in, index, rows);
    CHECK((logits - full).abs().max().item<double>() < 1e-5);
    auto expected = span_cross_entropy(logits, labels, index, (*lm)->layout.shift_labels).first.item<double>();
    CHECK((*lm)->span_loss(in, index, rows, labels).item<double>() == Approx(expected).epsilon(1e-5));
  }

  // Causal attention: a later token cannot move an earlier prediction; bidirectional it does.
  auto causal = tiny_lm();
  causal->layout.attention = tess::model::Attention::Causal;
  auto later = ids.clone();
  later[0][5] = 21;
  auto c1 = replay(*causal, ids), c2 = replay(*causal, later);
  CHECK((c1.narrow(1, 0, 5) - c2.narrow(1, 0, 5)).abs().max().item<double>() == 0.0);
  auto d1 = replay(*shifted, ids), d2 = replay(*shifted, later);
  CHECK((d1.narrow(1, 0, 5) - d2.narrow(1, 0, 5)).abs().max().item<double>() > 1e-4);
  // Saved with the model and read back; the recipe's layout writes neither key.
  auto image = diffusion_lm_image(*causal);
  CHECK(image.config.attention == tess::model::Attention::Causal);
  CHECK(read_layout(image.config.extra, "x") == causal->layout);
  unshifted->layout.attention = tess::model::Attention::Causal;
  CHECK(read_layout(diffusion_lm_image(*unshifted).config.extra, "x") == unshifted->layout);
  auto plain = diffusion_lm_image(*shifted).config.extra;
  CHECK_FALSE(plain.count("diffusion_attention"));
  CHECK_FALSE(plain.count("shift_labels"));
  CHECK_THROWS_WITH(read_layout({{"shift_labels", "\"no\""}}, "m/config.json"),
                    Catch::Contains("m/config.json: shift_labels must be true or false"));
}

TEST_CASE("self-conditioning coin: reproducible under a seed, restored from saved state", "[unit][diffusion]") {
  auto lm = tiny_lm();
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 0.5});
  auto ids = torch::tensor({{1, 5, 7, 9, 11, 13, 15, 17}}, torch::kInt64);
  auto span = mask_of({0, 0, 1, 1, 1, 1, 1, 1});
  torch::NoGradGuard g;
  auto run = [&](Rng& n, Rng& c, int steps) {
    std::vector<double> losses;
    std::vector<bool> coins;
    for (int i = 0; i < steps; ++i) {
      auto r = loss(*lm, ids, span, {n, c});
      losses.push_back(r.loss_sum.item<double>());
      coins.push_back(r.self_conditioned);
    }
    return std::make_pair(losses, coins);
  };
  Rng n1(5, "noise"), c1(5, "self_condition"), n2(5, "noise"), c2(5, "self_condition");
  auto a = run(n1, c1, 40);
  auto b = run(n2, c2, 40);
  CHECK(a == b);
  int heads = 0;
  for (bool c : a.second) heads += c;
  CHECK(heads > 8);
  CHECK(heads < 32);
  // Save both streams mid-way, continue, restore, continue again: identical.
  Rng n3(9, "noise"), c3(9, "self_condition");
  run(n3, c3, 5);
  auto ns = n3.state(), cs = c3.state();
  auto tail1 = run(n3, c3, 10);
  n3.set_state(ns);
  c3.set_state(cs);
  CHECK(run(n3, c3, 10) == tail1);
  // The noise stream advances the same whether or not the coin came up.
  DiffusionLoss never(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 0.0});
  DiffusionLoss always(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 1.0});
  Rng na(1, "noise"), ca(1, "sc"), nb(1, "noise"), cb(1, "sc");
  never(*lm, ids, span, {na, ca});
  always(*lm, ids, span, {nb, cb});
  CHECK(na.next_u64() == nb.next_u64());
}

// Each diffusion.self_condition mode mixes p = softmax(x_t) with the previous
// prediction q = softmax(prev) (uniform when absent) by its own formula,
// written out here by hand and pushed through the decoder independently.
TEST_CASE("each self-conditioning mode feeds the decoder its own mix of softmax(x_t) and softmax(prev)",
          "[unit][diffusion]") {
  auto ids = torch::tensor({{1, 5, 7, 9, 11, 13}}, torch::kInt64);
  auto span = mask_of({0, 1, 1, 0, 1, 1});
  auto index = SpanIndex::from_mask(span);
  torch::manual_seed(3);
  auto x = torch::randn({4, 40}) * 5, prev = torch::randn({4, 40}) * 2;
  RowSource rows = [&](int64_t s, int64_t c) { return x.narrow(0, s, c); };
  DiffusionInputs in{ids, span, torch::tensor({0.4}), {}};
  std::map<std::string, torch::Tensor> by_mode;
  for (const char* name : {"none", "logits_mean", "logits_addition", "logits_max", "logits_multiply"}) {
    for (bool with_prev : {true, false}) {
      INFO(name << (with_prev ? " with prev" : " without prev (uniform q)"));
      auto lm = tiny_lm(parse_self_condition(name));
      torch::NoGradGuard g;
      auto got = lm->full_logits(in, index, rows, with_prev ? prev : torch::Tensor());
      auto p = torch::softmax(x, -1);
      auto q = with_prev ? torch::softmax(prev, -1) : torch::full_like(p, 1.0 / 40);
      std::map<std::string, torch::Tensor> mixes{{"none", p},
                                                 {"logits_mean", (p + q) / 2},
                                                 {"logits_addition", p + q},
                                                 {"logits_max", torch::max(p, q)},
                                                 {"logits_multiply", p * q}};
      auto& d = lm->decoder;
      auto embeds = d->embed(ids).clone();
      auto span_rows = torch::matmul(mixes.at(name), d->embedding_weight()) +
                       0.4 * lm->timestep_embed->weight.reshape({1, -1});
      for (int64_t r = 0; r < 4; ++r) embeds[0][index.pos[r].item<int64_t>()] = span_rows[r];
      tess::model::ForwardOptions opt;
      opt.attention = tess::model::Attention::Bidirectional;
      auto logits = torch::matmul(d->hidden_states(embeds, opt), d->lm_head_weight().t());
      auto want = torch::zeros_like(logits);
      want.narrow(1, 1, 5).copy_(logits.narrow(1, 0, 5));  // shifted: position j - 1 predicts j
      CHECK(torch::allclose(got, want, 1e-4, 1e-5));
      if (with_prev) by_mode[name] = got;
    }
  }
  for (const auto& [a, ta] : by_mode)  // five different inputs, five different outputs
    for (const auto& [b, tb] : by_mode)
      if (a < b) CHECK_FALSE(torch::allclose(ta, tb, 1e-4, 1e-5));
}

TEST_CASE("the self-conditioning pass uses t+1 with the same noise", "[unit][diffusion]") {
  auto lm = tiny_lm();
  DiffusionLoss always(NoiseScheduler(Schedule::CosineImproved, 100), {5.0, 1.0});
  auto ids = torch::tensor({{1, 5, 7, 9, 11, 13}}, torch::kInt64);
  auto span = mask_of({0, 0, 1, 1, 1, 1});
  torch::NoGradGuard g;
  Rng n(2, "noise"), c(2, "sc");
  auto saved = n.state();
  auto r = always(*lm, ids, span, {n, c});
  REQUIRE(r.self_conditioned);
  // Rebuild the same two passes by hand with replay().
  n.set_state(saved);
  NoiseScheduler s(Schedule::CosineImproved, 100);
  auto t = s.sample_timesteps(1, n);
  CHECK(torch::equal(t, r.timesteps));
  auto z_rows = gaussian_rows(n, 4, 40);
  auto noise = torch::zeros({1, 6, 40});
  noise[0].narrow(0, 2, 4).copy_(z_rows);
  torch::Tensor first;
  always.replay(*lm, ids, span, (t + 1).clamp_max(99), noise, {}, &first);
  auto second = always.replay(*lm, ids, span, t, noise, first, nullptr);
  CHECK(second.loss_sum.item<double>() == Approx(r.loss_sum.item<double>()).epsilon(1e-6));
}

TEST_CASE("head gradients match finite differences (timestep embedding, E, layers)", "[unit][diffusion]") {
  auto cfg = tiny_config(12);
  cfg.num_hidden_layers = 1;
  DiffusionLM lm(Decoder(cfg, 3), SelfCondition::LogitsMean, /*embedding_grad=*/true, 4);
  lm->to(torch::kFloat64);
  auto ids = torch::tensor({{1, 5, 7, 9, 3}}, torch::kInt64);
  auto span = mask_of({0, 1, 1, 1, 0});
  auto index = SpanIndex::from_mask(span);
  auto x = torch::randn({3, 12}, torch::kFloat64) * 3;
  auto prev = torch::randn({3, 12}, torch::kFloat64);
  auto weights = torch::randn({3, 12}, torch::kFloat64);
  RowSource rows = [&](int64_t s, int64_t c) { return x.narrow(0, s, c); };
  // Runs in fp64 end to end (the softmax too) for a clean finite difference.
  auto loss_fn = [&] {
    DiffusionInputs in{ids, span, torch::tensor({0.3}, torch::kFloat64), {}};
    return (lm->span_logits(in, index, rows, prev).to(torch::kFloat64) * weights).sum();
  };
  lm->zero_grad();
  loss_fn().backward();
  torch::NoGradGuard g;
  for (const char* name : {"timestep_embed.weight", "decoder.model.embed_tokens.weight",
                           "decoder.model.layers.0.self_attn.v_proj.weight", "decoder.lm_head.weight"}) {
    auto p = lm->named_parameters()[name];
    auto flat = p.view(-1);
    for (int64_t idx : {int64_t{1}, flat.numel() / 2, flat.numel() - 2}) {
      double eps = 1e-6, orig = flat[idx].item<double>();
      flat[idx] = orig + eps;
      double up = loss_fn().item<double>();
      flat[idx] = orig - eps;
      double down = loss_fn().item<double>();
      flat[idx] = orig;
      INFO(name << "[" << idx << "]");
      CHECK(p.grad().view(-1)[idx].item<double>() == Approx((up - down) / (2 * eps)).margin(1e-6).epsilon(1e-4));
    }
  }
}

TEST_CASE("span_loss (fused LM head, chunked previous logits) gives span_cross_entropy of span_logits, gradients "
          "included",
          "[unit][diffusion]") {
  for (bool tied : {false, true}) {
    INFO("tied embeddings " << tied);
    auto cfg = tiny_config();
    cfg.tie_word_embeddings = tied;
    DiffusionLM lm(Decoder(cfg, 5), SelfCondition::LogitsMean, /*embedding_grad=*/true, 6);
    lm->to(torch::kFloat64);
    auto ids = torch::tensor({{1, 5, 7, 9, 3, 8}, {2, 4, 6, 8, 10, 12}}, torch::kInt64);
    auto span = torch::tensor({{1, 0, 1, 1, 0, 1}, {0, 1, 1, 1, 1, 1}}, torch::kInt64).to(torch::kBool);
    auto index = SpanIndex::from_mask(span);
    auto labels = ids.reshape(-1).index_select(0, index.flat);
    auto x = torch::randn({index.rows, 40}, torch::kFloat64) * 3;
    // The self-conditioning input: states for span_loss, their (shifted, row-0-zeroed) logits for span_logits.
    auto prev_states = torch::randn({index.rows, 32}, torch::kFloat64);
    torch::Tensor prev;
    {
      torch::NoGradGuard no_grad;
      prev = lm->decoder->logits(prev_states) * (index.pos > 0).to(torch::kFloat64).unsqueeze(1);
    }
    RowSource rows = [&](int64_t s, int64_t c) { return x.narrow(0, s, c); };
    DiffusionInputs in{ids, span, torch::tensor({0.3, 0.7}, torch::kFloat64), {}};
    auto gradients = [&](bool fused) {
      lm->zero_grad();
      auto loss = fused ? lm->span_loss(in, index, rows, labels, prev_states)
                        : span_cross_entropy(lm->span_logits(in, index, rows, prev), labels, index).first;
      loss.backward();
      std::map<std::string, torch::Tensor> g{{"loss", loss.detach()}};
      for (auto& p : lm->named_parameters()) g[p.key()] = p.value().grad().clone();
      return g;
    };
    auto unfused = gradients(false), fused = gradients(true);
    for (auto& [name, value] : unfused) {
      INFO(name);
      CHECK((fused[name] - value).abs().max().item<double>() < 1e-12);
    }
  }
}

TEST_CASE("by default E gets no gradient through the softmax(x_t) @ E path", "[unit][diffusion]") {
  auto lm = tiny_lm();
  auto ids = torch::tensor({{1, 5, 7, 9}}, torch::kInt64);
  auto span = mask_of({0, 1, 1, 1});  // every position but 0 is span: E is used only through the projection...
  auto index = SpanIndex::from_mask(span);
  auto x = torch::randn({3, 40});
  RowSource rows = [&](int64_t s, int64_t c) { return x.narrow(0, s, c); };
  DiffusionInputs in{ids, span, torch::tensor({0.5f}), {}};
  lm->zero_grad();
  lm->span_logits(in, index, rows).sum().backward();
  auto g = lm->decoder->embedding_weight().grad();
  // ... and through E[id] of the clean position 0 only: rows other than id 1 get nothing.
  REQUIRE(g.defined());
  CHECK(g[1].abs().sum().item<double>() > 0);
  CHECK(g.narrow(0, 2, 38).abs().sum().item<double>() == 0.0);
}

TEST_CASE("diffusion forward matches the TESS 2 arithmetic on HF's decoder (golden)", "[unit][diffusion]") {
  tess::model::SafetensorsFile g(kData + "forward.safetensors");
  auto lm = load_diffusion_lm(kData + "model");
  CHECK(lm->self_condition() == SelfCondition::LogitsMean);
  CHECK(lm->decoder->config().attention == tess::model::Attention::Bidirectional);
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 5000), {5.0, 0.0});
  auto ids = g.load("ids").to(torch::kInt64);
  auto span = g.load("span_mask").to(torch::kBool);
  auto t = g.load("timestep").to(torch::kInt64).reshape({1});
  torch::NoGradGuard ng;
  for (bool with_prev : {false, true}) {
    torch::Tensor full;
    auto r = loss.replay(*lm, ids, span, t, g.load("noise"), with_prev ? g.load("previous_logits") : torch::Tensor(), &full);
    std::string suffix = with_prev ? "prev" : "noprev";
    INFO(suffix);
    CHECK((full - g.load("logits_" + suffix)).abs().max().item<double>() < 1e-4);
    CHECK(r.loss_sum.item<double>() / r.tokens == Approx(g.load("loss_" + suffix).item<double>()).epsilon(1e-5));
  }
}

TEST_CASE("tess debug schedule and diffusion-forward replay an example", "[unit][diffusion][cli]") {
  auto csv = tess::test::run_tess("debug schedule --kind cosine_improved --timesteps 100");
  REQUIRE(csv.exit_code == 0);
  CHECK(csv.out.rfind("i,abar\n0,1\n", 0) == 0);
  NoiseScheduler s(Schedule::CosineImproved, 100);
  CHECK(csv.out.find(fmt::format("\n50,{:.17g}\n", s.abar(50))) != std::string::npos);

  tess::test::TempDir dir;
  tess::model::SafetensorsFile g(kData + "forward.safetensors");
  auto noise_file = dir / "z.safetensors";
  auto prev_file = dir / "p.safetensors";
  tess::model::write_safetensors(noise_file, {{"noise", g.load("noise")}});
  tess::model::write_safetensors(prev_file, {{"logits", g.load("previous_logits")}});
  auto out = dir / "out.safetensors";
  auto r = tess::test::run_tess("debug diffusion-forward --model " + kData + "model --ids \"1 17 5 33 9 40 2 12 60 8\"" +
                                " --span-mask \"0 0 0 1 1 1 0 1 1 1\" --timestep 1234 --noise " + noise_file.string() +
                                " --previous-logits " + prev_file.string() + " --output " + out.string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Matchers::Contains("over 6 span tokens"));
  tess::model::SafetensorsFile o(out);
  CHECK((o.load("logits") - g.load("logits_prev")).abs().max().item<double>() < 1e-4);
  CHECK(o.load("loss").item<double>() == Approx(g.load("loss_prev").item<double>()).epsilon(1e-5));
  auto bad = tess::test::run_tess("debug diffusion-forward --model " + kData + "model --ids \"1 2\" --span-mask \"0\"" +
                                  " --timestep 1 --noise " + noise_file.string() + " --output " + out.string());
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Catch::Matchers::Contains("--span-mask has 1 entries, --ids has 2"));
}
