#pragma once
// Counts the bytes of CPU tensors, to tell the memory a run's tensors really
// need from what the process's allocator (glibc) holds on top of them:
// `tess bench` compares the peak of the former with `tess plan`, and the unit
// tests check the plan's activation model against it to the byte.
#include <cstdint>

namespace tess::util {

// While one is alive, LibTorch's CPU tensors are allocated through a counting
// allocator that takes its memory from the allocator installed before it
// (LibTorch's own, or the caching one of cpu_allocator.h); tensors allocated
// before keep their own deleter. Scopes do not nest.
class TensorMemoryScope {
 public:
  TensorMemoryScope();
  ~TensorMemoryScope();  // restores the previous allocator
  TensorMemoryScope(const TensorMemoryScope&) = delete;
  TensorMemoryScope& operator=(const TensorMemoryScope&) = delete;

  int64_t live() const;  // bytes allocated in this scope and not yet freed
  int64_t peak() const;  // the highest live() since the scope began or reset_peak()
  void reset_peak();     // peak = live()

 private:
  void* previous_;  // c10::Allocator*
};

}  // namespace tess::util
