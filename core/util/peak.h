#pragma once
// The machine's measured matmul rate: the denominator of every MFU figure
// (`tess bench peak`, each bench case, the trainer's per-step mfu).
#include <cstdint>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace tess::util {

// GFLOP/s of square n x n matrix products of `dtype` on `device`: the best of
// `reps` runs after `warmup` (CUDA: timed to completion).
double matmul_gflops(c10::Device device, c10::ScalarType dtype, int64_t n, int warmup, int reps);

}  // namespace tess::util
