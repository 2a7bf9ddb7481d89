#pragma once
// Sums gradients over data-parallel ranks in buckets of dist.bucket_mb.
// After backward (always correct): reduce() flattens whatever gradients
// exist into buckets in parameter order. Overlapped (dist.overlap): buckets
// are fixed up front in reverse parameter order (the order backward produces
// gradients), and during the step's last backward each bucket's all-reduce
// starts as soon as autograd has accumulated every gradient in it (a
// post-accumulate-grad hook per parameter); buckets start strictly in bucket
// order, so every rank issues the same collectives in the same order
// whatever the timing. Both give the same sums: every gradient element is
// added across ranks exactly once.
#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tess::dist {
class Dist;
}

namespace tess::train {

class GradientReducer {
 public:
  // `params`: leaf tensors whose .grad backward fills. With `overlap` the
  // reducer hooks them until destroyed.
  GradientReducer(std::vector<at::Tensor> params, int64_t bucket_bytes, bool overlap, dist::Dist& dist);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  bool overlapped() const { return overlap_; }
  // Overlap: the next backward is the step's last; start buckets as they fill.
  void arm();
  // Sums `grads` over ranks (after backward), or, when armed, starts the
  // buckets still waiting and waits for all of them.
  void reduce(const std::vector<at::Tensor>& grads);

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    size_t ready = 0;
    at::Tensor flat;
  };
  void sum_across_ranks(const std::vector<at::Tensor>& grads);
  void on_gradient(size_t param);
  void start(Bucket& b);
  void start_ready_in_order();

  std::vector<at::Tensor> params_;
  std::vector<size_t> bucket_of_;  // param index -> bucket index
  std::vector<Bucket> buckets_;
  size_t next_ = 0;  // first bucket not started yet
  int64_t bucket_bytes_;
  bool overlap_, armed_ = false;
  dist::Dist& dist_;
};

}  // namespace tess::train
