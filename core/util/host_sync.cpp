#include "core/util/host_sync.h"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <cstring>

namespace tess::util {
namespace {

struct Tally {
  bool active = false;
  int cpu_only_depth = 0;
  std::vector<std::string> ops;
};
thread_local Tally tally;

constexpr const char* kHostRead = "tess::host_read";

bool waits_for_device(const char* name) {
  static const char* const kOps[] = {"aten::_local_scalar_dense", "aten::nonzero",   "aten::masked_select",
                                     "aten::unique_consecutive",  "aten::_unique",   "aten::_unique2",
                                     "aten::unique_dim",          kHostRead};
  for (const char* op : kOps)
    if (std::strcmp(name, op) == 0) return true;
  return false;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (!tally.active) return nullptr;
  if (tally.cpu_only_depth == 0 && waits_for_device(fn.name())) tally.ops.emplace_back(fn.name());
  return nullptr;
}

}  // namespace

std::vector<double> read_to_host(const at::Tensor& t) {
  RECORD_USER_SCOPE(kHostRead);
  auto host = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double* p = host.data_ptr<double>();
  return {p, p + host.numel()};
}

HostSyncCounter::HostSyncCounter() {
  tally = Tally{true, 0, {}};
  handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(on_start));
}

HostSyncCounter::~HostSyncCounter() {
  at::removeCallback(handle_);
  tally = Tally{};
}

int64_t HostSyncCounter::count() const { return static_cast<int64_t>(tally.ops.size()); }
std::vector<std::string> HostSyncCounter::ops() const { return tally.ops; }

CpuOnlyCheck::CpuOnlyCheck() {
  if (tally.active) ++tally.cpu_only_depth;
}
CpuOnlyCheck::~CpuOnlyCheck() {
  if (tally.active) --tally.cpu_only_depth;
}

}  // namespace tess::util
