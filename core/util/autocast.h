#pragma once
// CPU/CUDA autocast state, set for a scope and restored after it.
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace tess::util {

// The autocast flags and dtypes of both device types: taken in a forward
// pass and re-applied where the same arithmetic must be replayed (an
// activation-checkpointed layer recomputed in backward, which runs outside
// the forward's autocast scope).
struct AutocastState {
  bool cpu = false, cuda = false;
  c10::ScalarType cpu_dtype = c10::kBFloat16, cuda_dtype = c10::kHalf;
  static AutocastState current();
  void apply() const;
};

// bf16 autocast on `device` for the scope's lifetime when `on` (train.precision
// bf16_autocast: weights stay fp32, matmuls run in bf16); the previous state
// (flag and dtype) comes back when the scope ends, nesting included.
class AutocastScope {
 public:
  AutocastScope(bool on, c10::DeviceType device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
  c10::DeviceType device_;
  bool enabled_ = false;
  c10::ScalarType dtype_ = c10::kBFloat16;
};

}  // namespace tess::util
