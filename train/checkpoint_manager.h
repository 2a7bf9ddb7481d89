#pragma once
// Everything about a run's checkpoints in one place (docs/checkpoints.md):
// saving the trainer's TrainState with the stage's model and stream states
// and the weight update's optimizer state (in the background by default,
// through CheckpointSaver), resuming per checkpoint.resume (auto | none |
// PATH) with every check a resume needs (verified files, same stage, same
// tokenizer, a changed configuration named), and reloading the newest
// committed checkpoint for a rollback.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train/adamw.h"

namespace tess::config {
class Config;
}
namespace tess::dist {
class Dist;
}
namespace tess::checkpoint {
struct Manifest;
}

namespace tess::train {

class CheckpointSaver;
class Stage;
class WeightUpdate;

// The trainer's counters; a checkpoint carries them.
struct TrainState {
  int64_t step = 0;         // optimizer steps done
  int64_t tokens_seen = 0;  // loss units trained on, all ranks
  int64_t skipped = 0;      // non-finite steps skipped
  int64_t rollbacks = 0;    // rollbacks done
};

class CheckpointManager {
 public:
  struct Options {
    int64_t every = 0;       // checkpoint.every (0: only at the end and on a stop signal)
    int keep_last = 1;
    bool asynchronous = true;
    bool verify = true;      // check sha256 on load
    std::string resume = "auto";
    bool overwrite = false;  // resume none may delete the checkpoints already there
    double timeout_s = 600;  // dist.timeout_s: how long rank 0 waits for the other ranks' files
    std::string config_hash;                   // Config::hash() of this run
    std::map<std::string, std::string> config; // Config::canonical_values() of this run
    static Options from_config(const config::Config& cfg);
  };

  // `params`: the model's parameters under their HF names (the weights a
  // checkpoint restores).
  CheckpointManager(std::filesystem::path run_dir, Options options, dist::Dist& dist, Stage& stage,
                    WeightUpdate& update, std::vector<NamedParameter> params);
  ~CheckpointManager();

  // checkpoint.resume: the state restored from the checkpoint it names (auto:
  // the newest committed one of the run directory, if any), or a fresh state.
  TrainState resume();
  // Restores the newest committed checkpoint (waiting for a save in flight);
  // nullopt when the run has none yet.
  std::optional<TrainState> reload_latest();

  // A periodic save due after `step` of `total` (the last step saves anyway).
  bool due(int64_t step, int64_t total) const;
  // Saves `state` with the stage's and the update's state as of now; `wait`:
  // return once it is committed.
  void save(const TrainState& state, bool wait);
  // A background save's error surfaces here (never blocks).
  void check();
  // Before the optimizer changes what a save in flight still copies.
  void wait_copied();
  // Until the save in flight (if any) is committed; rethrows its error.
  void wait();

 private:
  TrainState load(const std::filesystem::path& dir);
  void refuse_or_clear_earlier_checkpoints();
  void warn_changed_config(const std::filesystem::path& dir, const checkpoint::Manifest& manifest) const;

  std::filesystem::path run_dir_;
  Options options_;
  dist::Dist& dist_;
  Stage& stage_;
  WeightUpdate& update_;
  std::vector<NamedParameter> params_;
  std::unique_ptr<CheckpointSaver> saver_;
};

}  // namespace tess::train
