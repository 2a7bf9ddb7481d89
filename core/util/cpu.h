#pragma once
// What this CPU can do that changes which precision is worth running.

namespace tess::util {

// Whether the CPU multiplies bf16 natively (AVX512_BF16 or AMX). Without it
// LibTorch emulates bf16 matmuls at a small fraction of the fp32 rate, so
// the trainer warns and `tess bench` does not time bf16 there.
bool cpu_has_native_bf16();

}  // namespace tess::util
