#pragma once
// Host copies of tensors, taken in two halves so that an asynchronous
// checkpoint does not stall training for the copy: take() at the step
// boundary only allocates the destination (no page is touched); run(), on
// the checkpoint writer's thread, copies while the next step's forward and
// backward read, but do not change, the sources. Whoever changes a source
// (the optimizer step) must first wait for run() to return
// (CheckpointSaver::wait_copied).
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tess::checkpoint {

class DeferredCopies {
 public:
  // An uninitialised host tensor of `source`'s shape and dtype that run()
  // fills (pinned when the source lives on a GPU).
  at::Tensor take(const at::Tensor& source);
  // take() of every tensor of `tensors`, in place: the map then holds the copies.
  void take_all(std::map<std::string, at::Tensor>& tensors);
  // Copies every source taken so far into its tensor, without autograd and
  // without the intra-op thread pool (the training thread owns it). Once.
  void run();
  int64_t bytes() const { return bytes_; }

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> pending_;  // (source, destination)
  int64_t bytes_ = 0;
};

}  // namespace tess::checkpoint
