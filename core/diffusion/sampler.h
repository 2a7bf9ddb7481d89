#pragma once
// Iterative denoising (method.md 7): a fixed-length span starts as k * noise;
// at each of N steps (t = N-1 .. 0) the model predicts logits, a guidance
// hook may adjust them (reward guidance, fp32), they become the
// self-conditioning input of the next step, a token is chosen per position (top-p with
// temperature, or argmax), and its simplex is re-noised to level abar_N[t-1]
// (noise-free at t = 0). Context positions stay clean throughout. The answer
// is the argmax of the last logits, cut at the first EOS/PAD.
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/noise_scheduler.h"

namespace tess::config {
class Config;
}
namespace tess::util {
class Rng;
}

namespace tess::diffusion {

// The most sampling steps a request may ask for (each is a forward over the
// whole sequence; the inference schedule holds one entry per step).
inline constexpr int64_t kMaxSamplingSteps = 100000;

// Adaptive stopping (sample.adaptive): a row stops once its answer -- the
// argmax tokens of its span up to the first `end_id` or `pad_id`, which cut
// the output -- has not changed for `stable_steps` consecutive steps and the
// smallest top-1 minus top-2 probability (softmax of the step's logits) over
// the answer's positions is at least `margin`; its output is that argmax, and
// it leaves the batch. `steps` stays the budget.
struct StopRule {
  bool enabled = false;
  int64_t stable_steps = 2;
  double margin = 0.5;
  int64_t end_id = -1, pad_id = -1;  // -1: none (the whole span is the answer)
  // Freezing (sample.freeze, sample_rows only): a single position whose
  // argmax held for stable_steps steps with a top-1 minus top-2 probability of
  // at least margin keeps that token from then on -- its simplex is the clean
  // one (no more noise) and its choice never changes. Independent of `enabled`.
  bool freeze = false;
  static StopRule from_config(const config::Config& cfg);  // sample.*; the caller sets end_id and pad_id
};

// One row's step under adaptive stopping, on the host: whether its answer
// in `now` (argmax tokens of its span, int64 [n]) repeats the one in
// `before` (undefined at the first step), and the smallest of `gap` (top-1
// minus top-2 probability, [n]) over the answer's positions.
struct AnswerCheck {
  bool same = false;
  float margin = 0;
};
AnswerCheck check_answer(const torch::Tensor& now, const torch::Tensor& before, const torch::Tensor& gap,
                         const StopRule& rule);

// Freezing's state over span positions (StopRule::freeze), one rule for
// Sampler::sample_rows and ContinuousSampler: per position the steps its
// argmax held, whether it is frozen, and its token. Undefined until the first
// update.
struct FrozenPositions {
  torch::Tensor held, frozen, token;  // int64, bool, int64 [positions]
  bool active() const { return frozen.defined(); }
  // After a step: that step's argmax and top-1 minus top-2 probability `gap`
  // per position, `last` the previous step's argmax (unused at the first).
  void update(const torch::Tensor& argmax, const torch::Tensor& last, const torch::Tensor& gap, const StopRule& rule);
  // `tokens` with every frozen position's token (as is when none is frozen yet).
  torch::Tensor apply(const torch::Tensor& tokens) const;
  // The noisy simplex rows `x` [positions, V] with the frozen positions' clean
  // simplex instead: they enter the next step without noise.
  torch::Tensor enter_clean(const torch::Tensor& x, double simplex_value) const;
};

struct SamplerOptions {
  int64_t steps = 100;
  double top_p = 0.99;       // 0 = argmax; 1 = plain sampling
  double temperature = 1.0;
  double simplex_value = 5.0;
  Schedule schedule = Schedule::CosineImproved;
  StopRule stop;
  int64_t cache_refresh = 0;  // prompt cache (diffusion_lm.h PromptCache): a full pass every r steps; 0 = off
  // eval.steps, eval.top_p, eval.temperature, diffusion.simplex_value, diffusion.schedule, sample.*.
  static SamplerOptions from_config(const config::Config& cfg);
};

// Prompts (clean context) each followed by a span of `span_length` tokens to
// generate; rows of different lengths are right-padded with `pad_id`, and the
// padding is masked out of attention.
struct SampleBatch {
  torch::Tensor ids;        // int64 [B, L]
  torch::Tensor span_mask;  // bool [B, L]
  torch::Tensor key_mask;   // bool [B, L]; undefined when no row is padded
  static SampleBatch from_prompts(const std::vector<std::vector<int64_t>>& prompts, int64_t span_length,
                                  int64_t pad_id);
  SampleBatch to(c10::Device device) const;  // the sampler runs where the batch is
};

struct StepInfo {
  int64_t step;                    // 0 .. N-1
  int64_t t;                       // N-1 .. 0
  const torch::Tensor& logits;     // fp32 [rows, V], after guidance
  const torch::Tensor& tokens;     // int64 [rows], the tokens chosen at this step
  const SpanIndex& span;
  const std::vector<int64_t>& rows;  // the input row of each batch row still sampled
};
using StepCallback = std::function<void(const StepInfo&)>;
// Returns the (possibly modified) fp32 span logits of step t.
using GuidanceHook = std::function<torch::Tensor(int64_t t, const torch::Tensor& logits, const SpanIndex& span)>;
// The guidance of the rows still sampled (adaptive stopping shrinks the batch).
using GuidanceFactory = std::function<GuidanceHook(const SampleBatch& rows)>;

struct SampleResult {
  torch::Tensor ids;           // int64 [B, L]: the batch with its spans filled
  std::vector<int64_t> steps;  // denoising steps each row took
  std::vector<int64_t> frozen; // positions each row froze (StopRule::freeze)
};

// Model passes a sampler ran: over the whole sequence, and span-only ones
// between prompt-cache refreshes.
struct PassCount {
  int64_t full = 0, span_only = 0;
  PassCount& operator+=(const PassCount& o) {
    full += o.full;
    span_only += o.span_only;
    return *this;
  }
};

// Token choice from logits [rows, V]: argmax when top_p <= 0, else a draw from
// softmax(logits / temperature) restricted to the nucleus of mass top_p
// (plain sampling at top_p >= 1; tokens tied with the nucleus's smallest
// probability are all in). One uniform draw per row from `rng`. O(V) per row
// (a radix select over the probabilities' bits, no sort), rows in parallel.
// NaN logits are an error. Shared by the sampler and AR decoding.
torch::Tensor choose_tokens(const torch::Tensor& logits, double top_p, double temperature, util::Rng& rng);

class Sampler {
 public:
  Sampler(DiffusionLMImpl& model, SamplerOptions options);

  // Fills the span of `batch`; every draw comes from `rng` (same seed, same text).
  torch::Tensor sample(const SampleBatch& batch, util::Rng& rng, const StepCallback& on_step = {},
                       const GuidanceHook& guidance = {});

  // The same with one stream per row (`rows[b]` for row b: a row's answer
  // does not depend on the rows sampled beside it) and, with options.stop,
  // rows that stop early and leave the batch.
  SampleResult sample_rows(const SampleBatch& batch, std::vector<util::Rng>& rows, const StepCallback& on_step = {},
                           const GuidanceFactory& guidance = {});

  // Passes run by every call so far.
  const PassCount& passes() const { return passes_; }

  // diffusion::choose_tokens with this sampler's top_p and temperature.
  torch::Tensor choose_tokens(const torch::Tensor& logits, util::Rng& rng) const;

  // The generated tokens of each row, cut before the first EOS or PAD.
  static std::vector<std::vector<int64_t>> span_outputs(const torch::Tensor& ids, const SampleBatch& batch,
                                                        int64_t eos_id, int64_t pad_id);

 private:
  // One denoising step's span logits at t (fp32, after guidance) from the
  // noisy simplex rows x and the previous step's logits.
  torch::Tensor step_logits(const SampleBatch& batch, const SpanIndex& span, const torch::Tensor& x,
                            const torch::Tensor& prev, int64_t t, const GuidanceHook& guidance, PromptCache* cache);
  std::optional<PromptCache> make_cache(const SampleBatch& batch) const;  // none when options.cache_refresh = 0
  void count_passes(const std::optional<PromptCache>& cache, int64_t uncached_passes);
  // The chosen tokens' simplex re-noised with z to the level of step t - 1.
  torch::Tensor renoise(const torch::Tensor& tokens, int64_t t, const torch::Tensor& z) const;

  DiffusionLMImpl& model_;
  SamplerOptions options_;
  NoiseScheduler scheduler_;
  PassCount passes_;
};

}  // namespace tess::diffusion
