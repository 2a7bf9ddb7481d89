// Reward guidance: the hook's step is scale x d reward / d logits of the soft
// sequence (checked by finite differences), it reads the reward where the
// current prediction ends, and it raises the reward of what is sampled.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/guidance.h"
#include "core/model/reward_model.h"
#include "core/util/rng.h"
#include "tests/support/test_support.h"

using namespace tess::diffusion;
using tess::model::Decoder;
using tess::model::ModelConfig;
using tess::model::RewardModel;
using tess::util::Rng;

namespace {

ModelConfig config(int64_t vocab) {
  auto c = tess::test::small_model_config(vocab, 0.3);
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

// The reward of the soft sequence, written out independently of the hook:
// exact one-hots on the prompt, softmax(logits) on the span, read at the
// first predicted EOS of each row (else its last span position).
torch::Tensor soft_reward(tess::model::RewardModelImpl& rm, const SampleBatch& batch, const torch::Tensor& logits,
                          int64_t eos) {
  int64_t v = logits.size(1);
  auto simplex = torch::one_hot(batch.ids, v).to(torch::kFloat64);
  auto span = batch.span_mask.nonzero();
  auto probs = torch::softmax(logits.to(torch::kFloat64), -1);
  auto choice = logits.argmax(-1);
  std::vector<int64_t> at(static_cast<size_t>(batch.ids.size(0)), -1);
  std::vector<bool> done(at.size(), false);
  for (int64_t i = 0; i < span.size(0); ++i) {
    int64_t b = span[i][0].item<int64_t>(), p = span[i][1].item<int64_t>();
    simplex[b][p] = probs[i];
    if (done[b]) continue;
    at[b] = p;
    done[b] = choice[i].item<int64_t>() == eos;
  }
  auto embeds = simplex.matmul(rm.embedding_weight().to(torch::kFloat64)).to(torch::kFloat32);
  return rm.forward_embeds(embeds, torch::tensor(at), batch.key_mask);
}

}  // namespace

TEST_CASE("the guidance step is scale x the gradient of the soft-sequence reward (finite differences)",
          "[unit][diffusion][guidance]") {
  torch::NoGradGuard no_grad;  // as inside the sampler: the hook enables grad itself
  RewardModel rm(Decoder(config(20), 5), 6);
  auto batch = SampleBatch::from_prompts({{1, 7, 8}, {1, 9, 10, 11, 12}}, 4, 0);
  Rng rng(3, "logits");
  auto span = SpanIndex::from_mask(batch.span_mask);
  auto logits = torch::randn({span.rows, 20}, rng.generator()) * 2;
  logits[1][2] = 30;  // row 0 predicts EOS at its second span position: the reward is read there
  double scale = 0.7;
  RewardGuidance guidance(*rm, scale, 2, RewardRead::FirstEos);
  auto hook = guidance.hook(batch);
  auto stepped = hook(3, logits, span);
  auto grad = (stepped - logits) / scale;
  REQUIRE(guidance.step_rewards().size() == 1);
  CHECK(guidance.step_rewards()[0] == Approx(soft_reward(*rm, batch, logits, 2).mean().item<double>()).epsilon(1e-5));

  // Span rows after the read position of row 0 do not influence its reward.
  CHECK(grad[2].abs().max().item<double>() < 1e-7);
  CHECK(grad[3].abs().max().item<double>() < 1e-7);
  double eps = 1e-2;
  for (auto [row, col] : {std::pair<int64_t, int64_t>{0, 4}, {1, 9}, {4, 0}, {6, 13}, {7, 19}}) {
    auto plus = logits.clone(), minus = logits.clone();
    plus[row][col] += eps;
    minus[row][col] -= eps;
    double fd = (soft_reward(*rm, batch, plus, 2).sum().item<double>() -
                 soft_reward(*rm, batch, minus, 2).sum().item<double>()) / (2 * eps);
    INFO("row " << row << " col " << col);
    CHECK(grad[row][col].item<double>() == Approx(fd).margin(2e-4).epsilon(2e-2));
  }
}

TEST_CASE("reward guidance raises the reward of sampled answers (same seeds)", "[unit][diffusion][guidance]") {
  auto c = config(24);
  DiffusionLM lm(Decoder(c, 1), SelfCondition::LogitsMean, false, 2);
  lm->eval();
  RewardModel rm(Decoder(c, 7), 8);
  auto batch = SampleBatch::from_prompts({{1, 5, 6}, {1, 9}, {1, 12, 13, 14}, {1, 20}, {1, 3, 4}, {1, 17, 18}}, 6, 0);
  SamplerOptions so;
  so.steps = 6;
  so.top_p = 0.9;
  // The reward of the hard answers, read where each answer ends.
  auto hard_reward = [&](const torch::Tensor& ids) {
    torch::NoGradGuard g;
    auto span = SpanIndex::from_mask(batch.span_mask);
    auto choice = ids.view(-1).index_select(0, span.flat);
    auto onehot = torch::one_hot(choice, c.vocab_size).to(torch::kFloat32) * 100.0;  // logits of the hard tokens
    RewardGuidance probe(*rm, 0.0, 2, RewardRead::FirstEos);
    probe.hook(batch)(0, onehot, span);
    return probe.step_rewards()[0];
  };
  // Untrained models: guidance wins on about 2 seeds in 3 (27 of 40 tried),
  // so the means are taken over 16 seeds, not a lucky few.
  double plain = 0, guided = 0;
  const int seeds = 16;
  for (uint64_t seed = 11; seed < 11 + seeds; ++seed) {
    Sampler sampler(*lm, so);
    Rng a(seed, "generate"), b(seed, "generate");
    plain += hard_reward(sampler.sample(batch, a));
    RewardGuidance guidance(*rm, 200.0, 2, RewardRead::FirstEos);
    guided += hard_reward(sampler.sample(batch, b, {}, guidance.hook(batch)));
  }
  INFO("mean reward without guidance " << plain / seeds << ", with " << guided / seeds);
  CHECK(guided > plain);
}

TEST_CASE("on trained models, guidance raises the RM score and the share of preferred tokens (same seeds)",
          "[integration][diffusion][guidance]") {
  // The LM learns answers of 4 tokens drawn uniformly from 3..12 (then EOS)
  // after [BOS, 13]; the RM learns (Bradley-Terry) to prefer answers with
  // more tokens from 3..7. Unguided samples mix both halves; guidance should
  // push both the RM score and the share of preferred tokens up (measured
  // here: reward 3.5 -> 7.8, share 0.68 -> 0.94).
  const int64_t vocab = 16, L = 7;  // [BOS 13 | a b c d EOS]
  auto c = tess::test::small_model_config(vocab, 0.02);
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  Rng data(3, "data"), noise(3, "noise"), coin(3, "self_condition");
  auto answers = [&](int64_t n, int64_t lo, int64_t hi) {
    auto ids = torch::empty({n, L}, torch::kInt64);
    ids.select(1, 0).fill_(1);
    ids.select(1, 1).fill_(13);
    ids.narrow(1, 2, 4).copy_(torch::randint(lo, hi, {n, 4}, data.generator()));
    ids.select(1, 6).fill_(2);
    return ids;
  };
  auto good_share = [](const torch::Tensor& tokens) {  // tokens 3..7 among the answer tokens
    return ((tokens >= 3) & (tokens <= 7)).to(torch::kFloat64).mean().item<double>();
  };

  DiffusionLM lm(Decoder(c, 21), SelfCondition::LogitsMean, false, 22);
  DiffusionLoss loss(NoiseScheduler(Schedule::CosineImproved, 200), {5.0, 0.5});
  auto span = torch::zeros({32, L}, torch::kBool);
  span.narrow(1, 2, 5).fill_(true);
  torch::optim::AdamW lm_opt(lm->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0));
  for (int step = 0; step < 300; ++step) {
    auto r = loss(*lm, answers(32, 3, 13), span, {noise, coin});
    lm_opt.zero_grad();
    (r.loss_sum / static_cast<double>(r.tokens)).backward();
    lm_opt.step();
  }
  lm->eval();

  RewardModel rm(Decoder(c, 31), 32);
  torch::optim::AdamW rm_opt(rm->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0));
  auto eos_at = torch::full({32}, L - 1, torch::kInt64);
  double rm_loss = 0;
  for (int step = 0; step < 150; ++step) {
    auto a = answers(32, 3, 13), b = answers(32, 3, 13);
    auto a_better = (((a.narrow(1, 2, 4) <= 7).sum(1)) > ((b.narrow(1, 2, 4) <= 7).sum(1)));
    auto chosen = torch::where(a_better.unsqueeze(1), a, b), rejected = torch::where(a_better.unsqueeze(1), b, a);
    auto l = -torch::log_sigmoid(rm->forward(chosen, eos_at) - rm->forward(rejected, eos_at)).mean();
    rm_opt.zero_grad();
    l.backward();
    rm_opt.step();
    rm_loss = l.item<double>();
  }
  INFO("final RM loss " << rm_loss);
  REQUIRE(rm_loss < 0.6);  // it learned something (ties are ~a third of the pairs)

  std::vector<std::vector<int64_t>> prompts(40, std::vector<int64_t>{1, 13});
  auto batch = SampleBatch::from_prompts(prompts, 5, 0);
  SamplerOptions so;
  so.steps = 10;
  so.top_p = 0.95;
  auto score = [&](const torch::Tensor& ids) {
    torch::NoGradGuard g;
    return rm->forward(ids, eos_at.narrow(0, 0, 1).expand({40})).mean().item<double>();
  };
  Sampler sampler(*lm, so);
  Rng a(5, "generate"), b(5, "generate");
  auto plain = sampler.sample(batch, a);
  RewardGuidance guidance(*rm, 2.0, 2, RewardRead::FirstEos);
  auto guided = sampler.sample(batch, b, {}, guidance.hook(batch));
  auto body = [](const torch::Tensor& ids) { return ids.narrow(1, 2, 4); };
  INFO("unguided: reward " << score(plain) << ", preferred share " << good_share(body(plain)));
  INFO("guided:   reward " << score(guided) << ", preferred share " << good_share(body(guided)));
  // The LM answers with a mix of both halves (uniform would be 0.5; a short
  // training leaves it biased), so there is room for guidance to act.
  CHECK(good_share(body(plain)) > 0.3);
  CHECK(good_share(body(plain)) < 0.8);
  CHECK(score(guided) > score(plain) + 0.5);
  CHECK(good_share(body(guided)) > good_share(body(plain)) + 0.15);
}

TEST_CASE("guidance refuses a bf16 reward model and a negative scale", "[unit][diffusion][guidance]") {
  RewardModel rm(Decoder(config(20), 5), 6);
  CHECK_THROWS_WITH(RewardGuidance(*rm, -1.0, 2, RewardRead::FirstEos), Catch::Contains("guidance scale must be >= 0"));
  rm->to(torch::kBFloat16);
  CHECK_THROWS_WITH(RewardGuidance(*rm, 1.0, 2, RewardRead::FirstEos), Catch::Contains("fp32"));
}

TEST_CASE("guidance reads the reward at the last position (the reference) or at the first predicted EOS",
          "[unit][diffusion]") {
  // Two rows; spans at positions 3..6 and 2..6. Row 0 predicts EOS (2) at
  // position 4 and 6, row 1 never.
  auto mask = torch::zeros({2, 7}, torch::kBool);
  mask[0].narrow(0, 3, 4).fill_(true);
  mask[1].narrow(0, 2, 5).fill_(true);
  auto span = SpanIndex::from_mask(mask);
  std::vector<int64_t> choice = {9, 2, 9, 2, 9, 9, 9, 9, 9};
  auto logits = torch::zeros({span.rows, 12});
  for (int64_t i = 0; i < span.rows; ++i) logits[i][choice[static_cast<size_t>(i)]] = 1.0;
  auto last = reward_read_positions(logits, span, 2, 2, RewardRead::Last);
  auto eos = reward_read_positions(logits, span, 2, 2, RewardRead::FirstEos);
  CHECK(torch::equal(last, torch::tensor({6, 6}, torch::kInt64)));
  CHECK(torch::equal(eos, torch::tensor({4, 6}, torch::kInt64)));
  CHECK(reward_read_choices().parse("last") == RewardRead::Last);
  CHECK_THROWS_WITH(reward_read_choices().parse("eos"), Catch::Contains("expected last or first_eos"));
}
