#pragma once
// Writes the trainer's checkpoints (core/checkpoint layout) from every rank,
// by default in the background so that a save stalls training only for the
// time it takes to copy the state in memory.
//
// A save starts from a Snapshot the trainer takes at a step boundary: this
// rank's stream states, and host tensors for its optimizer shard and (rank 0)
// the model image. When asynchronous, those tensors are deferred copies that
// the writer thread fills first, while the next step's forward and backward
// run; the trainer calls wait_copied() before its optimizer step changes the
// originals. The writer thread runs in SCHED_IDLE (util/cpu.h) and hashes
// with the CPU's SHA extensions, so that it takes cycles training leaves
// free instead of stalling its parallel regions. Rank 0 prepares the staging directory and all ranks meet at a
// barrier; then each rank's writer thread writes its rank file (rank 0 also
// the model) and reports "written" or its error through the process group's
// store; rank 0's writer waits for every report and commits (manifest,
// atomic rename, `latest`, retention). Writers never use collectives, so
// training's all-reduces go on undisturbed. One save is in flight at a time:
// the next save, and the end of training, wait for the previous one. A failed
// background write surfaces at the trainer's next check() as a tess::Error
// naming the file and the rank; the previous checkpoint stays intact because
// nothing is renamed into place until every file is written.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <ATen/core/Tensor.h>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/deferred_copy.h"

namespace tess::dist {
class Dist;
}

namespace tess::train {

struct CheckpointSnapshot {
  int64_t step = 0;
  std::shared_ptr<checkpoint::DeferredCopies> copies;  // filled by the writer before it writes (asynchronous saves)
  std::map<std::string, at::Tensor> rank_tensors;      // this rank's optimizer shard (`copies`' tensors when set)
  std::map<std::string, std::string> rank_metadata;  // stream states, loader position, counters
  std::function<void(const std::filesystem::path&)> write_model;  // rank 0: writes the model directory
  checkpoint::Manifest manifest;                                  // rank 0: committed with the file list
};

class CheckpointSaver {
 public:
  // `asynchronous` false: save() returns once the checkpoint is committed.
  // `timeout_s`: how long rank 0 waits for the other ranks' files after its own.
  CheckpointSaver(std::filesystem::path run_dir, dist::Dist& dist, int keep_last, bool asynchronous, double timeout_s);
  ~CheckpointSaver();  // waits for a save in flight (errors are logged, not thrown)
  CheckpointSaver(const CheckpointSaver&) = delete;
  CheckpointSaver& operator=(const CheckpointSaver&) = delete;

  bool asynchronous() const { return asynchronous_; }
  // Collective: every rank calls it at the same step.
  void save(CheckpointSnapshot snapshot);
  // Until the save in flight (if any) is committed; rethrows its error.
  void wait();
  // Until the save in flight (if any) has copied its tensors: call it before
  // changing anything a snapshot took (the optimizer step). Never throws.
  void wait_copied();
  // Rethrows the error of a finished background save; never blocks.
  void check();

 private:
  void write(CheckpointSnapshot snapshot, int64_t serial);
  void mark_copied();
  void join();

  std::filesystem::path run_dir_;
  dist::Dist& dist_;
  int keep_last_;
  bool asynchronous_;
  double timeout_s_;
  int64_t serial_ = 0;  // saves started by this process (the same count on every rank)
  std::thread writer_;
  std::atomic<bool> finished_{true};
  std::mutex copy_mutex_;
  std::condition_variable copy_done_;
  bool copied_ = true;  // the save in flight no longer reads the trainer's tensors
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace tess::train
