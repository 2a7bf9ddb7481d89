// `tess bench sample`: the real sampler (diffusion::Sampler) against AR
// decoding with a KV cache on the same decoder weights.
#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/sampler.h"
#include "core/model/decoder.h"
#include "core/util/cpu_allocator.h"
#include "core/util/rng.h"
#include "eval/generate.h"
#include "launch/bench/common.h"
#include "train/flops.h"

namespace tess::bench {
using json = nlohmann::json;

// ---- sample ---------------------------------------------------------------------------

namespace {
// Where one denoising step's time goes: the model's forward (with a
// self-conditioning input), the token choice (top-p 0.99) and the re-noising
// of the chosen simplex; each the best of `reps` runs.
json sample_step_breakdown(diffusion::DiffusionLMImpl& lm, const diffusion::SampleBatch& batch, util::Rng& rng,
                           int reps) {
  torch::NoGradGuard no_grad;
  auto span = diffusion::SpanIndex::from_mask(batch.span_mask);
  int64_t vocab = lm.decoder->config().vocab_size;
  auto x = diffusion::gaussian_rows(rng, span.rows, vocab) * 5.0;
  diffusion::RowSource rows = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
  diffusion::DiffusionInputs in{batch.ids, batch.span_mask, torch::full({batch.ids.size(0)}, 0.5f), batch.key_mask};
  auto prev = lm.span_logits(in, span, rows, {});
  torch::Tensor logits, tokens;
  auto best = [&](const std::function<void()>& f) {
    double b = 1e30;
    for (int i = 0; i < reps; ++i) {
      auto t0 = Clock::now();
      f();
      b = std::min(b, since(t0));
    }
    return b;
  };
  double forward = best([&] { logits = lm.span_logits(in, span, rows, prev).to(torch::kFloat32); });
  double choose = best([&] { tokens = diffusion::choose_tokens(logits, 0.99, 1.0, rng); });
  double argmax = best([&] { tokens = diffusion::choose_tokens(logits, 0, 1.0, rng); });
  double renoise = best([&] {
    auto a = torch::full({span.rows}, 0.5f);
    x = diffusion::noisy_simplex_rows(tokens, a, diffusion::gaussian_rows(rng, span.rows, vocab), 5.0);
  });
  return {{"forward_s", forward}, {"choose_top_p_s", choose}, {"choose_argmax_s", argmax}, {"renoise_s", renoise}};
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
          {"step", step}};
}

}  // namespace tess::bench
