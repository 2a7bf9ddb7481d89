#pragma once
// What this CPU can do that changes which precision is worth running, and
// how background threads stay out of training's way.

#include <cstdint>

namespace tess::util {

// Whether the CPU multiplies bf16 natively (AVX512_BF16 or AMX). Without it
// LibTorch emulates bf16 matmuls at a small fraction of the fp32 rate, so
// the trainer warns and `tess bench` does not time bf16 there.
bool cpu_has_native_bf16();

// Puts the calling thread in Linux's SCHED_IDLE class: it runs only on
// cycles no normal thread wants. For background work (checkpoint writing)
// next to an intra-op pool that uses every core, where an equal-priority
// thread would make each parallel region wait for a descheduled worker.
// Returns false (and changes nothing) where the system refuses.
bool run_this_thread_when_idle();

// The machine's physical memory in bytes (0 where unknown): the bound a
// request for memory is checked against before it is allocated.
int64_t physical_memory_bytes();

}  // namespace tess::util
