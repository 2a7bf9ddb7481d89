#pragma once
// One optimizer step of every stage (docs/training.md), the code that both
// the trainer and `tess bench train` run: the step's micro-batches through
// the stage's loss (forward and backward, under bf16 autocast for
// bf16_autocast), the loss normalised by the step's global token count (or
// per micro-batch, diffusion.loss_normalization), gradients summed over
// ranks, the global gradient norm and one non-finite verdict for all ranks;
// then either apply() (clipping, AdamW with the step's learning rate) or
// discard(). Each phase's wall time is kept for benchmarks.
//
// On a GPU the host queues the step's work and waits for the device once:
// compute() reads the loss, the counts and the gradient norms together
// (util::read_to_host); nothing else in a step reads device memory
// (tests/train/test_train_step.cpp counts it with util::HostSyncCounter).
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <c10/core/Device.h>

#include "train/options.h"
#include "train/stage.h"

namespace tess::dist {
class Dist;
}

namespace tess::train {

class GradientReducer;
class WeightUpdate;

struct StepResult {
  double loss = 0;           // mean over the step's global loss units
  double grad_norm = 0;      // global L2 norm before clipping
  int64_t tokens = 0;        // the loss units of the step, all ranks
  int64_t positions = 0;     // every position the model ran over, all ranks (throughput)
  bool finite = true;        // loss and norm finite on every rank
  bool stop_requested = false;  // some rank asked compute() to stop the run (its files cannot be written)
  // This rank's share, for its FLOPs (train/flops.h): rows of `seq_len`
  // tokens, noised rows, and micro-batches that ran the self-conditioning pass.
  int64_t local_sequences = 0, seq_len = 0, local_span_rows = 0, local_self_conditioned = 0;
};

// Seconds spent in each phase of the last step on this rank.
struct StepPhases {
  double data = 0;            // waiting for the loader's micro-batches
  double forward = 0;         // the loss, without the two below
  double noise = 0;           // diffusion: drawing the noise, making x_t
  double self_condition = 0;  // diffusion: the no-grad first pass, without its noise
  double backward = 0;
  double reduce = 0;          // gradient all-reduce, norm, the step's scalar sums
  double update = 0;          // clipping and the optimizer
};

class TrainStep {
 public:
  TrainStep(const TrainOptions& options, Stage& stage, WeightUpdate& update, dist::Dist& dist, c10::Device device,
            const std::vector<NamedParameter>& params);
  ~TrainStep();

  // Forward and backward of the step's micro-batches, gradients reduced over
  // ranks; the update is not applied yet. `poison`: report a non-finite loss
  // (train.inject_nonfinite_at). `request_stop`: tell every rank, through
  // the step's count all-reduce, that this one cannot go on.
  StepResult compute(bool poison = false, bool request_stop = false);
  // Clips to train.grad_clip and applies AdamW at `lr`; `before_update` runs
  // first (a checkpoint in flight must finish copying the state).
  void apply(const StepResult& r, double lr, const std::function<void()>& before_update = {});
  // Drops the step's gradients (a non-finite step).
  void discard();

  const StepPhases& phases() const { return phases_; }
  // The loss of validation batches (no gradient), summed with their units.
  std::pair<double, int64_t> evaluate(const std::vector<MicroBatch>& batches);

 private:
  MicroBatch on_device(MicroBatch mb) const;
  at::Tensor gradient_norms();

  TrainOptions options_;
  Stage& stage_;
  WeightUpdate& update_;
  dist::Dist& dist_;
  c10::Device device_;
  std::unique_ptr<GradientReducer> reducer_;
  StepPhases phases_;
};

}  // namespace tess::train
