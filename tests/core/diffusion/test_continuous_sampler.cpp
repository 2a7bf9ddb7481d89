// Continuous batching: a row's text does not depend on who it is batched with
// or when it joined, and a row alone is the batch sampler's answer for it.
#include <map>

#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/diffusion/continuous_sampler.h"
#include "core/diffusion/guidance.h"
#include "core/model/reward_model.h"
#include "core/util/error.h"
#include "core/util/rng.h"
#include "tests/support/test_support.h"

using namespace tess::diffusion;
using tess::model::Decoder;
using tess::util::Rng;

namespace {

DiffusionLM make_lm() {
  auto c = tess::test::small_model_config(40, 0.3);
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  DiffusionLM lm(Decoder(c, 4), SelfCondition::LogitsMean, false, 5);
  lm->eval();
  return lm;
}

RowSpec spec(std::vector<int64_t> prompt, int64_t span, int64_t steps, double top_p, uint64_t seed) {
  RowSpec s;
  s.prompt = std::move(prompt);
  s.span_length = span;
  s.steps = steps;
  s.top_p = top_p;
  s.seed = seed;
  return s;
}

// Runs rows that join at the given steps (join[i] = the step row i is added
// before) until all finish; returns each row's answer and its step count.
struct Finished {
  std::vector<int64_t> answer;
  int64_t steps = 0;
};
std::vector<Finished> run(ContinuousSampler& sampler, const std::vector<RowSpec>& rows, std::vector<int64_t> join) {
  std::vector<Finished> out(rows.size());
  std::map<int64_t, size_t> which;
  size_t left = rows.size();
  for (int64_t step = 0; left > 0; ++step) {
    for (size_t i = 0; i < rows.size(); ++i)
      if (join[i] == step) which[sampler.add(rows[i])] = i;
    for (auto& u : sampler.step()) {
      if (!u.finished) continue;
      out[which.at(u.id)] = {u.answer, u.step};
      --left;
    }
    REQUIRE(step < 1000);
  }
  return out;
}

// The batch sampler's answer for one prompt from stream (seed, "generate").
std::vector<int64_t> batch_sampler_answer(DiffusionLMImpl& lm, const RowSpec& s, const GuidanceHook& hook = {}) {
  SamplerOptions o;
  o.steps = s.steps;
  o.top_p = s.top_p;
  auto batch = SampleBatch::from_prompts({s.prompt}, s.span_length, 0);
  Rng rng(s.seed, "generate");
  auto ids = Sampler(lm, o).sample(batch, rng, {}, hook);
  auto span = ids[0].narrow(0, static_cast<int64_t>(s.prompt.size()), s.span_length);
  return std::vector<int64_t>(span.data_ptr<int64_t>(), span.data_ptr<int64_t>() + span.numel());
}

// Sampler::sample_rows on the row alone (stream (seed, "generate")): its span
// answer, and the result (steps, frozen).
std::pair<std::vector<int64_t>, SampleResult> sample_rows_answer(DiffusionLMImpl& lm, const RowSpec& s) {
  SamplerOptions o;
  o.steps = s.steps;
  o.top_p = s.top_p;
  o.stop = s.stop;
  auto batch = SampleBatch::from_prompts({s.prompt}, s.span_length, 0);
  std::vector<Rng> streams;
  streams.emplace_back(s.seed, "generate");
  auto ref = Sampler(lm, o).sample_rows(batch, streams);
  auto span = ref.ids[0].narrow(0, static_cast<int64_t>(s.prompt.size()), s.span_length).contiguous();
  return {std::vector<int64_t>(span.data_ptr<int64_t>(), span.data_ptr<int64_t>() + span.numel()), ref};
}

}  // namespace

TEST_CASE("a row alone is the batch sampler's answer for it (same stream), for every step count and nucleus",
          "[unit][diffusion]") {
  auto lm = make_lm();
  for (auto s : {spec({1, 5, 6, 7}, 6, 8, 0.9, 3), spec({1, 9}, 4, 5, 0.0, 4), spec({1, 3, 3}, 7, 3, 1.0, 5)}) {
    INFO("steps " << s.steps << " top_p " << s.top_p);
    ContinuousSampler sampler(*lm, {});
    auto got = run(sampler, {s}, {0});
    CHECK(got[0].answer == batch_sampler_answer(*lm, s));
    CHECK(got[0].steps == s.steps);
  }
}

TEST_CASE("rows joining a running batch at different steps get the text they get alone", "[unit][diffusion]") {
  auto lm = make_lm();
  // Different prompt lengths, spans, step counts, nuclei and seeds; one adaptive.
  std::vector<RowSpec> rows = {spec({1, 5, 6, 7, 8, 9}, 6, 10, 0.9, 1), spec({1, 9}, 4, 6, 0.0, 2),
                               spec({1, 3, 3}, 8, 12, 0.95, 3), spec({1, 4, 2, 7}, 3, 40, 0.9, 4)};
  rows[3].top_p = 0;  // argmax: the answer settles before the budget
  rows[3].stop.enabled = true;
  rows[3].stop.stable_steps = 1;
  rows[3].stop.margin = 0.0;
  ContinuousSampler together(*lm, {});
  auto batched = run(together, rows, {0, 0, 3, 5});
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i);
    ContinuousSampler alone(*lm, {});
    auto single = run(alone, {rows[i]}, {0});
    CHECK(batched[i].answer == single[0].answer);
    CHECK(batched[i].steps == single[0].steps);
  }
  CHECK(batched[0].steps == 10);
  CHECK(batched[3].steps < 40);  // adaptive stopping ended it early
}

TEST_CASE("an adaptive row stops where Sampler::sample_rows stops it, with the same answer", "[unit][diffusion]") {
  auto lm = make_lm();
  auto s = spec({1, 4, 2, 7}, 5, 20, 0.9, 4);
  s.stop.enabled = true;
  s.stop.stable_steps = 2;
  s.stop.margin = 0.0;
  ContinuousSampler sampler(*lm, {});
  auto got = run(sampler, {s}, {0});
  auto [expected, ref] = sample_rows_answer(*lm, s);
  CHECK(got[0].answer == expected);
  CHECK(got[0].steps == ref.steps[0]);
}

TEST_CASE("freezing, alone and beside other rows, freezes what Sampler::sample_rows freezes", "[unit][diffusion]") {
  auto lm = make_lm();
  for (bool adaptive : {false, true}) {
    INFO("adaptive " << adaptive);
    auto s = spec({1, 4, 2, 7}, 6, 12, 0.9, 6);
    s.top_p = 0;  // argmax: positions settle
    s.stop.freeze = true;
    s.stop.enabled = adaptive;
    s.stop.stable_steps = 1;
    s.stop.margin = 0.0;
    auto [expected, ref] = sample_rows_answer(*lm, s);
    REQUIRE(ref.frozen[0] > 0);
    // Alone, and joining a batch at step 2 beside an unfrozen row.
    ContinuousSampler alone(*lm, {});
    ContinuousSampler together(*lm, {});
    for (auto* sampler : {&alone, &together}) {
      auto rows = sampler == &alone ? std::vector<RowSpec>{s} : std::vector<RowSpec>{spec({1, 9, 9}, 4, 10, 0.9, 1), s};
      auto join = sampler == &alone ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 2};
      int64_t frozen = -1, steps = 0;
      std::map<int64_t, size_t> which;
      std::vector<int64_t> answer;
      for (int64_t step = 0; answer.empty(); ++step) {
        for (size_t i = 0; i < rows.size(); ++i)
          if (join[i] == step) which[sampler->add(rows[i])] = i;
        for (auto& u : sampler->step())
          if (u.finished && which.at(u.id) == rows.size() - 1) answer = u.answer, frozen = u.frozen, steps = u.step;
        REQUIRE(step < 100);
      }
      CHECK(answer == expected);
      CHECK(frozen == ref.frozen[0]);
      CHECK(steps == ref.steps[0]);
    }
  }
}

TEST_CASE("each row is guided by its own scale: a guided row beside an unguided one gets its alone answers",
          "[unit][diffusion][guidance]") {
  auto lm = make_lm();
  auto c = tess::test::small_model_config(40, 0.3);
  tess::model::RewardModel rm(Decoder(c, 9), 10);
  rm->to(torch::kFloat32);
  ContinuousSampler::Guidance guide = [&](const torch::Tensor& logits, const SampleBatch& row, const SpanIndex& span,
                                          double scale) {
    return RewardGuidance(*rm, scale, 2, RewardRead::Last).hook(row)(0, logits, span);
  };
  auto plain = spec({1, 5, 6}, 5, 6, 0.9, 7), guided = spec({1, 8}, 5, 6, 0.9, 8);
  guided.guidance_scale = 5.0;
  ContinuousSampler sampler(*lm, {}, guide);
  auto both = run(sampler, {plain, guided}, {0, 0});
  CHECK(both[0].answer == batch_sampler_answer(*lm, plain));
  RewardGuidance alone(*rm, 5.0, 2, RewardRead::Last);
  auto guided_batch = SampleBatch::from_prompts({guided.prompt}, 5, 0);
  CHECK(both[1].answer == batch_sampler_answer(*lm, guided, alone.hook(guided_batch)));
  // and guidance changed it
  auto unguided = guided;
  unguided.guidance_scale = 0;
  CHECK(both[1].answer != batch_sampler_answer(*lm, unguided));
}

TEST_CASE("removed rows leave at the next step, finished rows leave by themselves, bad rows are errors",
          "[unit][diffusion]") {
  auto lm = make_lm();
  ContinuousSampler sampler(*lm, {});
  auto a = sampler.add(spec({1, 5}, 3, 4, 0.9, 1));
  sampler.add(spec({1, 6}, 3, 2, 0.9, 2));
  CHECK(sampler.step().size() == 2);
  sampler.remove(a);
  auto u = sampler.step();
  REQUIRE(u.size() == 1);
  CHECK(u[0].finished);
  CHECK(sampler.empty());
  CHECK_THROWS_AS(sampler.add(spec({}, 3, 4, 0.9, 1)), tess::Error);
  CHECK_THROWS_AS(sampler.add(spec({1}, 0, 4, 0.9, 1)), tess::Error);
  CHECK_THROWS_AS(sampler.add(spec({1}, 3, 0, 0.9, 1)), tess::Error);
  auto guided = spec({1}, 3, 4, 0.9, 1);
  guided.guidance_scale = 1;
  CHECK(tess::test::error_of([&] { sampler.add(guided); }).find("reward model") != std::string::npos);
}

TEST_CASE("the prediction and its confidences come only for rows that ask, and the last one is the answer",
          "[unit][diffusion]") {
  auto lm = make_lm();
  ContinuousSampler sampler(*lm, {});
  auto a = sampler.add(spec({1, 5}, 4, 3, 0.9, 1));
  sampler.add(spec({1, 6}, 4, 3, 0.9, 2));
  auto u = sampler.step([&](int64_t id) { return id == a; });
  REQUIRE(u.size() == 2);
  REQUIRE(u[0].confidence.size() == 4);
  for (float c : u[0].confidence) CHECK((c > 1.0f / 40 && c <= 1.0f));
  CHECK(u[0].prediction.size() == 4);
  CHECK(u[1].confidence.empty());
  CHECK(u[1].prediction.empty());
  sampler.step([&](int64_t id) { return id == a; });
  u = sampler.step([&](int64_t id) { return id == a; });
  REQUIRE(u[0].finished);
  CHECK(u[0].prediction == u[0].answer);
}
