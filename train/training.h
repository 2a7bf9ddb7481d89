#pragma once
// The components of a training run, built from its config in the one way
// that `tess train` (Trainer) and `tess bench train` share: the device, the
// stage (model and data), the weight update, the step, the checkpoints. A
// benchmark built this way times the trainer's own code.
#include <memory>
#include <vector>

#include <c10/core/Device.h>

#include "train/adamw.h"
#include "train/options.h"
#include "train/stage.h"

namespace tess::config {
class Config;
}
namespace tess::dist {
class Dist;
}

namespace tess::train {

class CheckpointManager;
class TrainStep;
class WeightUpdate;

struct Training {
  TrainOptions options;
  c10::Device device{c10::kCPU};
  std::unique_ptr<Stage> stage;
  std::vector<NamedParameter> params;  // the model's, under HF names, decay flags set
  std::unique_ptr<WeightUpdate> update;
  std::unique_ptr<TrainStep> step;
  std::unique_ptr<CheckpointManager> checkpoints;
  int64_t total_steps = 0;

  // Builds everything on run.device (CUDA picks the GPU of LOCAL_RANK) and
  // broadcasts rank 0's weights. Reads the keys its parts use.
  static Training build(const config::Config& cfg, dist::Dist& dist);
  // The same with the stage from `factory` (tests run the loop over a fake stage).
  static Training build(const config::Config& cfg, dist::Dist& dist, const StageFactory& factory);
  Training();
  Training(Training&&) noexcept;
  Training& operator=(Training&&) noexcept;
  ~Training();
};

}  // namespace tess::train
