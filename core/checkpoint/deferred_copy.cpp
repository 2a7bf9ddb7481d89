#include "core/checkpoint/deferred_copy.h"

#include <cstring>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace tess::checkpoint {

at::Tensor DeferredCopies::take(const at::Tensor& source) {
  auto src = source.detach();
  auto dst = at::empty(src.sizes(), at::TensorOptions().dtype(src.dtype()).device(at::kCPU).pinned_memory(src.is_cuda()));
  pending_.emplace_back(src, dst);
  bytes_ += static_cast<int64_t>(src.nbytes());
  return dst;
}

void DeferredCopies::take_all(std::map<std::string, at::Tensor>& tensors) {
  for (auto& [name, t] : tensors) t = take(t);
}

void DeferredCopies::run() {
  c10::AutoGradMode no_grad(false);
  for (auto& [src, dst] : pending_) {
    if (src.nbytes() == 0) continue;
    if (src.is_cpu() && src.is_contiguous())
      std::memcpy(dst.data_ptr(), src.data_ptr(), src.nbytes());  // one core: training keeps the thread pool
    else
      dst.copy_(src);
  }
  pending_.clear();  // the sources may now change and be freed
}

}  // namespace tess::checkpoint
