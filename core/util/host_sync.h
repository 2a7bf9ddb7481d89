#pragma once
// A training step on a GPU runs ahead of the host until something makes the
// host wait for the device: reading a value (.item()), an op whose output
// shape depends on the data (nonzero, masked_select, unique), a copy to host
// memory. Each such wait drains the GPU's queue, so a step allows itself one
// (train/train_step.h), through read_to_host(). HostSyncCounter counts them
// on a CPU too, which is how the tests keep the step at one.
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tess::util {

// The values of a small tensor as host doubles (one device->host copy).
std::vector<double> read_to_host(const at::Tensor& t);

// While alive, counts on the calling thread (where a CPU backward runs too)
// the ops that would make the host wait for a device: .item()
// (aten::_local_scalar_dense), nonzero, masked_select, unique and
// read_to_host. Ops inside a CpuOnlyCheck are not counted.
class HostSyncCounter {
 public:
  HostSyncCounter();
  ~HostSyncCounter();
  HostSyncCounter(const HostSyncCounter&) = delete;
  HostSyncCounter& operator=(const HostSyncCounter&) = delete;

  int64_t count() const;
  std::vector<std::string> ops() const;  // the counted ops' names, in order

 private:
  uint64_t handle_ = 0;
};

// Marks a validation that runs only when its tensors are on the CPU (where
// reading them costs no device wait) and is skipped on a device, whose
// inputs were checked on the host where the batch was built.
class CpuOnlyCheck {
 public:
  CpuOnlyCheck();
  ~CpuOnlyCheck();
  CpuOnlyCheck(const CpuOnlyCheck&) = delete;
  CpuOnlyCheck& operator=(const CpuOnlyCheck&) = delete;
};

}  // namespace tess::util
