#include "core/util/peak.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

namespace tess::util {

double matmul_gflops(c10::Device device, c10::ScalarType dtype, int64_t n, int warmup, int reps) {
  torch::NoGradGuard no_grad;
  auto opts = torch::TensorOptions().device(device);
  auto a = torch::randn({n, n}, opts).to(dtype), b = torch::randn({n, n}, opts).to(dtype);
  auto out = torch::empty({n, n}, a.options());
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };
  for (int i = 0; i < warmup; ++i) torch::mm_out(out, a, b);
  sync();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    torch::mm_out(out, a, b);
    sync();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / best / 1e9;
}

}  // namespace tess::util
