#include "core/util/cpu.h"

#include <unistd.h>

#include <pthread.h>
#include <sched.h>

#include <ATen/cpu/Utils.h>

namespace tess::util {

bool cpu_has_native_bf16() {
  auto caps = at::cpu::get_cpu_capabilities();
  auto has = [&](const char* key) {
    auto it = caps.find(key);
    return it != caps.end() && it->second.isBool() && it->second.toBool();
  };
  return has("avx512_bf16") || has("amx_bf16");
}

bool run_this_thread_when_idle() {
#ifdef SCHED_IDLE
  sched_param param{};
  param.sched_priority = 0;
  return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) == 0;
#else
  return false;
#endif
}

int64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

}  // namespace tess::util
