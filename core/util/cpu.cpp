#include "core/util/cpu.h"

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

}  // namespace tess::util
