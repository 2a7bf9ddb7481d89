#pragma once
// The one diffusion loss of both training stages (method.md 2-4): draw t per
// sequence and Gaussian noise for the span rows from the run's seeded
// streams, toss the self-conditioning coin (a no-grad first pass one step
// noisier, at min(t + 1, T - 1) with the same noise, whose logits condition
// the real pass), and return the summed cross-entropy over span tokens with
// their count. The trainer divides by the global count of span tokens of the
// optimizer step (over accumulation and ranks), or per micro-batch as the
// reference does (diffusion.loss_normalization).
#include <cstdint>

#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/noise_scheduler.h"

namespace tess::config {
class Config;
}
namespace tess::util {
class Rng;
}

namespace tess::diffusion {

struct DiffusionLossOptions {
  double simplex_value = 5.0;        // k
  double self_condition_prob = 0.5;  // chance per batch of the first pass
  static DiffusionLossOptions from_config(const config::Config& cfg);
};

// The random streams the loss draws from (owned by the trainer, checkpointed).
struct DiffusionStreams {
  util::Rng& noise;           // t and z
  util::Rng& self_condition;  // the coin
};

struct DiffusionLossResult {
  torch::Tensor loss_sum;  // scalar: sum of per-token cross-entropy over counted span tokens
  int64_t tokens = 0;      // span tokens counted (position 0 excluded: nothing predicts it)
  bool self_conditioned = false;
  torch::Tensor timesteps;  // int64 [B], the drawn t
  int64_t span_rows = 0;    // noised positions (position 0's included: it is noised, not counted)
  // Where the time went (benchmarks): drawing the noise and making x_t, and
  // the self-conditioning pass without its noise.
  double noise_s = 0, self_condition_s = 0;
};

class DiffusionLoss {
 public:
  DiffusionLoss(NoiseScheduler scheduler, DiffusionLossOptions options)
      : scheduler_(std::move(scheduler)), options_(options) {}

  // ids/span_mask: [B, L] (int64, bool). Draws from `streams`.
  DiffusionLossResult operator()(DiffusionLMImpl& model, const torch::Tensor& ids, const torch::Tensor& span_mask,
                                 DiffusionStreams streams) const;
  // The same with the span's index and its counted tokens known already
  // (made on the host where the batch was built): no device->host wait.
  DiffusionLossResult operator()(DiffusionLMImpl& model, const torch::Tensor& ids, const torch::Tensor& span_mask,
                                 const SpanIndex& span, int64_t tokens, DiffusionStreams streams) const;

  // One forward with given t and noise (the replay of a training example:
  // `tess debug diffusion-forward`). noise: fp32 [B, L, V] standard normal.
  DiffusionLossResult replay(DiffusionLMImpl& model, const torch::Tensor& ids, const torch::Tensor& span_mask,
                             const torch::Tensor& timesteps, const torch::Tensor& noise,
                             const torch::Tensor& prev_logits, torch::Tensor* full_logits) const;

  const NoiseScheduler& scheduler() const { return scheduler_; }
  const DiffusionLossOptions& options() const { return options_; }

 private:
  NoiseScheduler scheduler_;
  DiffusionLossOptions options_;
};

// Noisy simplex rows x_t = sqrt(a) * (2k onehot(id) - k) + sqrt(1 - a) * k * z
// for span rows, without materialising the one-hot: z scaled, shifted by
// -k sqrt(a), plus 2k sqrt(a) at each row's id. ids/abar: [count], z: [count, V].
torch::Tensor noisy_simplex_rows(const torch::Tensor& ids, const torch::Tensor& abar, const torch::Tensor& z, double k);

// z for `rows` span rows: [rows, vocab] fp32 standard normals on `device`.
// On the CPU they come from `rng` itself (util::Rng::fill_standard_normal,
// parallel and thread-count independent: the bit-exact reference). On a GPU
// they are drawn there, by a generator seeded from one draw of `rng`: no
// noise crosses from host memory (~65 MB per 512 rows at V = 32k), and the
// stream's checkpointed state still determines them, so resume stays exact.
torch::Tensor gaussian_rows(util::Rng& rng, int64_t rows, int64_t vocab, c10::Device device = c10::kCPU);

// Cross-entropy of span rows against the clean ids, summed over rows with a
// predictor (shifted labels: pos > 0; unshifted: every row), and their count.
std::pair<torch::Tensor, int64_t> span_cross_entropy(const torch::Tensor& span_logits, const torch::Tensor& labels,
                                                     const SpanIndex& span, bool shift_labels = true);

}  // namespace tess::diffusion
