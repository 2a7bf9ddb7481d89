#pragma once
// The one training loop of every stage (docs/training.md): gradient
// accumulation, loss normalised by the global token count, data-parallel
// gradient all-reduce, clipping, AdamW with the LR schedule, non-finite
// detection on all ranks together, metrics, and checkpoints that resume
// bit-exactly (every step after a resume computes what the uninterrupted run
// computed).
#include <filesystem>
#include <memory>

#include "train/stage.h"

namespace tess::config {
class Config;
}
namespace tess::dist {
class Dist;
}

namespace tess::train {

class Trainer {
 public:
  Trainer(const config::Config& cfg, std::shared_ptr<dist::Dist> dist);
  // With the stage from `factory` instead of run.stage's (tests of the loop).
  Trainer(const config::Config& cfg, std::shared_ptr<dist::Dist> dist, StageFactory factory);
  ~Trainer();
  // Runs to train.max_steps (or the epochs) and writes RUN_DIR/final; on
  // SIGTERM/SIGINT saves a checkpoint and returns early. Returns the exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Installs SIGTERM/SIGINT handlers that ask the running Trainer to save a
// checkpoint and stop after the current step.
void install_stop_signal_handlers();

}  // namespace tess::train
