// `tess bench sample`: the real sampler (diffusion::Sampler) against AR
// decoding with a KV cache on the same decoder weights.
#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/sampler.h"
#include "core/model/decoder.h"
#include "core/util/cpu_allocator.h"
#include "core/util/rng.h"
#include "eval/evaluate.h"
#include "eval/generate.h"
#include "launch/bench/common.h"
#include "train/flops.h"

namespace tess::bench {
using json = nlohmann::json;

// ---- sample ---------------------------------------------------------------------------

namespace {

// The best (smallest) wall time of `reps` runs of f.
double best_of(int reps, const std::function<void()>& f) {
  double b = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    f();
    b = std::min(b, since(t0));
  }
  return b;
}

// One denoising step's inputs for `batch` at t/T = 0.5: noisy span rows x (k = 5)
// and a previous prediction for self-conditioning.
struct StepInputs {
  diffusion::SpanIndex span;
  torch::Tensor x;
  diffusion::RowSource rows;
  diffusion::DiffusionInputs in;
  torch::Tensor prev;
  StepInputs(diffusion::DiffusionLMImpl& lm, const diffusion::SampleBatch& batch, util::Rng& rng)
      : span(diffusion::SpanIndex::from_mask(batch.span_mask)),
        x(diffusion::gaussian_rows(rng, span.rows, lm.decoder->config().vocab_size) * 5.0),
        rows([this](int64_t start, int64_t count) { return x.narrow(0, start, count); }),
        in{batch.ids, batch.span_mask, torch::full({batch.ids.size(0)}, 0.5f), batch.key_mask},
        prev(lm.span_logits(in, span, rows, {})) {}
  StepInputs(const StepInputs&) = delete;  // `rows` reads this object's x
  StepInputs& operator=(const StepInputs&) = delete;
};

// Where one denoising step's time goes: the model's forward (with a
// self-conditioning input), the token choice (top-p 0.99) and the re-noising
// of the chosen simplex; each the best of `reps` runs.
json sample_step_breakdown(diffusion::DiffusionLMImpl& lm, const diffusion::SampleBatch& batch, util::Rng& rng,
                           int reps) {
  torch::NoGradGuard no_grad;
  int64_t vocab = lm.decoder->config().vocab_size;
  StepInputs s(lm, batch, rng);
  auto& [span, x, rows, in, prev] = s;
  torch::Tensor logits, tokens;
  auto best = [reps](const std::function<void()>& f) { return best_of(reps, f); };
  double forward = best([&] { logits = lm.span_logits(in, span, rows, prev).to(torch::kFloat32); });
  double choose = best([&] { tokens = diffusion::choose_tokens(logits, 0.99, 1.0, rng); });
  double argmax = best([&] { tokens = diffusion::choose_tokens(logits, 0, 1.0, rng); });
  double renoise = best([&] {
    auto a = torch::full({span.rows}, 0.5f);
    x = diffusion::noisy_simplex_rows(tokens, a, diffusion::gaussian_rows(rng, span.rows, vocab), 5.0);
  });
  return {{"forward_s", forward}, {"choose_top_p_s", choose}, {"choose_argmax_s", argmax}, {"renoise_s", renoise}};
}

// The prompt cache at a prompt twice the span (batch 1): one full pass (what
// every step costs without the cache, and each refresh with it) against one
// span-only pass between refreshes, best of `reps`; and whole 32-step
// samplings at r = 0 (off), 4 and 8.
json prompt_cache_breakdown(diffusion::DiffusionLMImpl& lm, int64_t span_len, int64_t vocab, util::Rng& rng,
                            int reps) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < 2 * span_len; ++i) prompt.push_back(rng.uniform_int(3, vocab - 1));
  auto batch = diffusion::SampleBatch::from_prompts({prompt}, span_len, 0);
  StepInputs s(lm, batch, rng);
  auto& [span, x, rows, in, prev] = s;
  auto best = [reps](const std::function<void()>& f) { return best_of(reps, f); };
  double full = best([&] { lm.span_logits(in, span, rows, prev); });
  diffusion::PromptCache cache(batch.span_mask, 1 << 30);
  cache.begin_step(0);
  lm.span_logits(in, span, rows, prev, &cache);  // records
  double partial = best([&] {
    cache.begin_step(1);
    lm.span_logits(in, span, rows, prev, &cache);
  });
  json sampling = json::array();
  for (int64_t r : {0, 4, 8}) {
    diffusion::SamplerOptions so;
    so.steps = 32;
    so.cache_refresh = r;
    diffusion::Sampler sampler(lm, so);
    auto t0 = Clock::now();
    sampler.sample(batch, rng);
    sampling.push_back({{"cache_refresh", r}, {"steps", 32}, {"seconds", since(t0)}});
  }
  return {{"prompt_tokens", 2 * span_len}, {"span", span_len},          {"full_pass_s", full},
          {"span_only_pass_s", partial},   {"step_time_saved", 1.0 - partial / full}, {"sampling", sampling}};
}
}  // namespace

json bench_sample(const BenchOptions& opt, const std::string& preset_name) {
  apply_threads(opt);
  // As `tess generate` and `tess eval` do (eval::GenerateOptions::cpu_cache), for both decoders.
  std::optional<util::CachingCpuAllocatorScope> cpu_cache;
  if (opt.cpu_allocator == "caching") cpu_cache.emplace();
  auto preset = train_preset(preset_name, false);
  model::Decoder decoder(preset.model, 0);
  diffusion::DiffusionLM lm(decoder, diffusion::SelfCondition::LogitsMean, false, 0);
  const int64_t span = opt.smoke ? 16 : 256, prompt_len = opt.smoke ? 8 : 32;
  std::vector<int64_t> steps = opt.smoke ? std::vector<int64_t>{2, 4} : std::vector<int64_t>{8, 16, 32, 64, 100};
  util::Rng rng(0, "bench.sample");
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < prompt_len; ++i) prompt.push_back(rng.uniform_int(3, preset.model.vocab_size - 1));

  // AR with KV cache, the same decoder weights: one warm-up run, then the best
  // of three (a 1-second run varies by tens of percent between repetitions).
  eval::ar_generate(*decoder, prompt, std::min<int64_t>(span, 16), -1, 0.99, 1.0, rng);
  std::vector<int64_t> ar;
  double ar_s = 1e30;
  for (int rep = 0; rep < (opt.smoke ? 1 : 3); ++rep) {
    auto t0 = Clock::now();
    ar = eval::ar_generate(*decoder, prompt, span, -1, 0.99, 1.0, rng);
    ar_s = std::min(ar_s, since(t0));
  }
  double ar_tps = static_cast<double>(ar.size()) / ar_s;

  json curve = json::array();
  auto batch = diffusion::SampleBatch::from_prompts({prompt}, span, 0);
  for (int64_t n : steps) {
    diffusion::SamplerOptions so;
    so.steps = n;
    diffusion::Sampler sampler(*lm, so);
    if (n == steps.front()) sampler.sample(batch, rng);  // warm-up
    auto t0 = Clock::now();
    sampler.sample(batch, rng);
    double s = since(t0);
    double tps = static_cast<double>(span) / s;
    curve.push_back({{"steps", n}, {"seconds", s}, {"tokens_per_s", tps}, {"speedup_vs_ar", tps / ar_tps}});
  }
  json step = sample_step_breakdown(*lm, batch, rng, opt.smoke ? 2 : 5);
  json cache = prompt_cache_breakdown(*lm, opt.smoke ? 8 : 128, preset.model.vocab_size, rng, opt.smoke ? 2 : 5);
  auto fwd = train::step_flops(preset.model, config::RunStage::Adaptation, 1, batch.ids.size(1), span, 1.0).self_condition;
  step["forward_gflops"] = fwd / 1e9;
  step["forward_achieved_gflops"] = fwd / step["forward_s"].get<double>() / 1e9;
  return {{"preset", preset_name},
          {"hidden", preset.model.hidden_size},
          {"layers", preset.model.num_hidden_layers},
          {"vocab", preset.model.vocab_size},
          {"prompt_tokens", prompt_len},
          {"span", span},
          {"batch", 1},
          {"threads", torch::get_num_threads()},
          {"ar", {{"seconds", ar_s}, {"tokens", static_cast<int64_t>(ar.size())}, {"tokens_per_s", ar_tps}}},
          {"diffusion", curve},
          {"step", step},
          {"prompt_cache", cache}};
}

// ---- sample grid: trained models, held-out prompts, quality beside speed ---------------

namespace {

struct GridSetting {
  std::string name;
  int64_t steps;
  bool adaptive;
  int64_t cache_refresh;
  int64_t stable_steps = 0;  // adaptive stopping's rule; 0 / < 0: the config's (sample.*)
  double margin = -1;
};

const std::vector<GridSetting>& grid_settings() {
  static const std::vector<GridSetting> s = {
      {"fixed 8", 8, false, 0},   {"fixed 16", 16, false, 0},          {"fixed 32", 32, false, 0},
      {"fixed 64", 64, false, 0}, {"adaptive (32 budget)", 32, true, 0}, {"adaptive + cache r=4", 32, true, 4},
      {"adaptive + cache r=8", 32, true, 8},
      // The rule that stops early on the quickstart model (docs/performance.md).
      {"adaptive stable 1 margin 0", 32, true, 0, 1, 0.0}, {"adaptive stable 1 margin 0 + cache r=4", 32, true, 4, 1, 0.0}};
  return s;
}

json grid_row(const eval::EvalResult& r) {
  const auto& m = r.report["metrics"];
  json row = {{"seconds", m["seconds"]},
              {"exact_match", m.value("exact_match", 0.0)},
              {"answer_tokens", m["answer_tokens"]},
              {"answer_tokens_per_s", m["answer_tokens_per_s"]},
              {"span_tokens_per_s", m["tokens_per_s"]}};
  if (m.contains("mean_steps")) row["mean_steps"] = m["mean_steps"];
  return row;
}

}  // namespace

json bench_sample_grid(const BenchOptions& opt, const SampleGrid& grid) {
  apply_threads(opt);
  config::Config cfg;
  cfg.merge_file(grid.config);
  auto base = eval::EvalPlan::from_config(cfg).options;
  base.metrics = {"exact_match", "speed"};
  base.limit = opt.smoke ? std::min<int64_t>(grid.limit, 4) : grid.limit;
  base.progress = false;
  base.generate.cpu_cache = opt.cpu_allocator == "caching";
  auto batches = opt.smoke ? std::vector<int64_t>{1, 2} : grid.batches;
  json rows = json::array();
  int64_t prompts = 0;
  for (int64_t b : batches) {
    auto ar = base;
    ar.model = grid.ar_model;
    ar.generate.ar = true;
    ar.generate.stop = {};
    ar.generate.cache_refresh = 0;
    ar.generate.batch_size = b;
    auto ar_result = eval::evaluate(ar);
    prompts = ar_result.report["settings"]["records"].get<int64_t>();
    auto ar_row = grid_row(ar_result);
    ar_row["batch"] = b;
    ar_row["setting"] = "AR (KV cache)";
    rows.push_back(ar_row);
    for (const auto& s : grid_settings()) {
      if (opt.smoke && s.steps > 8 && !s.adaptive) continue;
      auto o = base;
      o.generate.batch_size = b;
      o.generate.steps = opt.smoke ? std::min<int64_t>(s.steps, 4) : s.steps;
      o.generate.stop.enabled = s.adaptive;
      if (s.stable_steps > 0) o.generate.stop.stable_steps = s.stable_steps;
      if (s.margin >= 0) o.generate.stop.margin = s.margin;
      o.generate.cache_refresh = s.cache_refresh;
      auto row = grid_row(eval::evaluate(o));
      row["batch"] = b;
      row["setting"] = s.name;
      if (s.adaptive) row["stable_steps"] = o.generate.stop.stable_steps, row["margin"] = o.generate.stop.margin;
      // Same prompts, same batch size: the time ratio is the throughput ratio.
      row["speedup_vs_ar"] = ar_row["seconds"].get<double>() / std::max(row["seconds"].get<double>(), 1e-9);
      rows.push_back(row);
    }
  }
  return {{"config", grid.config.string()},
          {"model", base.model.string()},
          {"ar_model", grid.ar_model.string()},
          {"data", base.data.string()},
          {"prompts", prompts},
          {"span", base.generate.length},
          {"top_p", base.generate.top_p},
          {"stable_steps", base.generate.stop.stable_steps},
          {"margin", base.generate.stop.margin},
          {"threads", torch::get_num_threads()},
          {"rows", rows}};
}

}  // namespace tess::bench
