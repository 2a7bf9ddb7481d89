#pragma once
// The training loop's options, read from a config and checked once: by the
// trainer and by `tess plan` alike, so a combination the trainer refuses is
// refused by the plan with the same words. Choices are enums
// (core/config/choices.h), parsed through their one name table.
#include <cstdint>

#include "core/config/choices.h"
#include "train/adamw.h"

namespace tess::config {
class Config;
}

namespace tess::train {

using config::LossNormalization;
using config::NonfinitePolicy;
using config::Precision;
using config::RunStage;

struct TrainOptions {
  RunStage stage = RunStage::Adaptation;
  Precision precision = Precision::Fp32;  // checked against model.dtype
  int64_t batch_size = 1;                 // per micro-batch and process
  int64_t grad_accum = 1;
  int64_t max_steps = 0;                  // 0: train.epochs decides (steps())
  double epochs = 0;
  double grad_clip = 0;                   // 0: off
  LossNormalization normalization = LossNormalization::GlobalTokens;
  NonfinitePolicy nonfinite = NonfinitePolicy::Abort;
  int64_t max_rollbacks = 3;
  int64_t inject_nonfinite_at = 0;        // testing aid (train.inject_nonfinite_at)
  AdamW::Options adamw;
  bool decay_norms_and_embeddings = false;
  bool zero = false;                      // dist.zero 1
  bool overlap = true;                    // dist.overlap
  double bucket_mb = 25;
  int64_t log_every = 1, eval_every = 0, eval_batches = 1;

  // Reads the keys above; throws tess::Error naming the key and where it was
  // set for precision vs model.dtype and for max_steps next to epochs.
  static TrainOptions from_config(const config::Config& cfg);

  // Optimizer steps of the run: max_steps, or ceil(epochs x samples /
  // global batch) when training by epochs.
  int64_t steps(int64_t samples_per_epoch, int world_size) const;
  bool autocast() const { return precision == Precision::Bf16Autocast; }
  bool master_weights() const { return precision == Precision::Bf16Master; }
};

}  // namespace tess::train
