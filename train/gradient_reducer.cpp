#include "train/gradient_reducer.h"

#include <torch/torch.h>

#include <functional>

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <spdlog/spdlog.h>

#include "core/dist/dist.h"
#include "core/util/test_hooks.h"

namespace tess::train {
namespace {

// Calls back after autograd has accumulated a parameter's gradient.
class ReadyHook : public torch::autograd::PostAccumulateGradHook {
 public:
  explicit ReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  void operator()(const torch::autograd::Variable&) override { fn_(); }

 private:
  std::function<void()> fn_;
};

// Contiguous runs of `tensors` (in the given order) of at most `bytes` each
// (a tensor larger than that is a bucket of its own).
template <typename Bytes>
std::vector<std::vector<size_t>> plan_buckets(const std::vector<size_t>& order, Bytes&& nbytes, int64_t bytes) {
  std::vector<std::vector<size_t>> out;
  int64_t filled = 0;
  for (size_t i : order) {
    int64_t n = nbytes(i);
    if (out.empty() || (!out.back().empty() && filled + n > bytes)) {
      out.emplace_back();
      filled = 0;
    }
    out.back().push_back(i);
    filled += n;
  }
  return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& grads) {
  std::vector<at::Tensor> views;
  for (const auto& g : grads) views.push_back(g.reshape(-1));
  return torch::cat(views);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& grads) {
  int64_t offset = 0;
  for (const auto& g : grads) {
    g.view(-1).copy_(flat.narrow(0, offset, g.numel()));
    offset += g.numel();
  }
}

}  // namespace

GradientReducer::GradientReducer(std::vector<at::Tensor> params, int64_t bucket_bytes, bool overlap, dist::Dist& dist)
    : params_(std::move(params)), bucket_bytes_(bucket_bytes), overlap_(overlap && dist.world_size() > 1), dist_(dist) {
  if (!overlap_) return;
  std::vector<size_t> reverse;
  for (size_t i = params_.size(); i-- > 0;) reverse.push_back(i);
  auto nbytes = [&](size_t i) { return static_cast<int64_t>(params_[i].nbytes()); };
  bucket_of_.resize(params_.size());
  for (auto& members : plan_buckets(reverse, nbytes, bucket_bytes_)) {
    for (size_t i : members) bucket_of_[i] = buckets_.size();
    buckets_.emplace_back();
    buckets_.back().members = std::move(members);
  }
  for (size_t i = 0; i < params_.size(); ++i)
    torch::autograd::impl::set_post_acc_grad_hooks(params_[i],
                                                   std::make_unique<ReadyHook>([this, i] { on_gradient(i); }));
}

GradientReducer::~GradientReducer() {
  if (!overlap_) return;
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

void GradientReducer::arm() {
  if (!overlap_) return;
  armed_ = true;
  next_ = 0;
  for (auto& b : buckets_) {
    b.ready = 0;
    b.flat = at::Tensor();
  }
}

void GradientReducer::on_gradient(size_t param) {
  if (!armed_) return;  // an earlier micro-batch of the step: its gradients keep accumulating
  ++buckets_[bucket_of_[param]].ready;
  start_ready_in_order();
}

void GradientReducer::start_ready_in_order() {
  while (next_ < buckets_.size() && buckets_[next_].ready == buckets_[next_].members.size()) start(buckets_[next_++]);
}

void GradientReducer::start(Bucket& b) {
  std::vector<at::Tensor> grads;
  for (size_t i : b.members)
    if (params_[i].grad().defined()) grads.push_back(params_[i].grad());
  if (grads.empty()) return;
  b.flat = flatten(grads);
  dist_.all_reduce_sum_start(b.flat, "gradient all-reduce (overlapped)");
}

void GradientReducer::reduce(const std::vector<at::Tensor>& grads) {
  if (dist_.world_size() == 1) return;
  sum_across_ranks(grads);
  if (util::test_mutation("allreduce_average")) {  // the deliberate bug of tests/train: a mean, not a sum
    torch::NoGradGuard no_grad;
    for (const auto& g : grads)
      if (g.defined()) g.div_(dist_.world_size());
  }
}

void GradientReducer::sum_across_ranks(const std::vector<at::Tensor>& grads) {
  if (armed_) {
    armed_ = false;
    spdlog::debug("gradient all-reduce: {} of {} buckets started during backward", next_, buckets_.size());
    while (next_ < buckets_.size()) start(buckets_[next_++]);  // parameters backward did not reach
    dist_.finish_pending();
    torch::NoGradGuard no_grad;
    for (auto& b : buckets_) {
      if (!b.flat.defined()) continue;
      std::vector<at::Tensor> members;
      for (size_t i : b.members)
        if (params_[i].grad().defined()) members.push_back(params_[i].grad());
      unflatten(b.flat, members);
      b.flat = at::Tensor();
    }
    return;
  }
  std::vector<size_t> order;
  for (size_t i = 0; i < grads.size(); ++i)
    if (grads[i].defined()) order.push_back(i);
  auto nbytes = [&](size_t i) { return static_cast<int64_t>(grads[i].nbytes()); };
  torch::NoGradGuard no_grad;
  for (auto& members : plan_buckets(order, nbytes, bucket_bytes_)) {
    std::vector<at::Tensor> bucket_grads;
    for (size_t i : members) bucket_grads.push_back(grads[i]);
    std::vector<at::Tensor> flat{flatten(bucket_grads)};
    dist_.all_reduce_sum(flat, "gradient all-reduce");
    unflatten(flat[0], bucket_grads);
  }
}

}  // namespace tess::train
