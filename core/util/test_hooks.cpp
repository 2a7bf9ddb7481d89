#include "core/util/test_hooks.h"

#include <csignal>
#include <cstdlib>

#include <fmt/format.h>

namespace tess::util {
namespace {

const std::string& env(const char* name) {
  // Read once per variable: the hooks sit on hot paths (every step).
  static const std::string fault = std::getenv("TESS_FAULT") ? std::getenv("TESS_FAULT") : "";
  static const std::string mutation = std::getenv("TESS_TEST_MUTATION") ? std::getenv("TESS_TEST_MUTATION") : "";
  return std::string(name) == "TESS_FAULT" ? fault : mutation;
}

}  // namespace

bool fault_armed(const char* point, int64_t value) {
  const auto& fault = env("TESS_FAULT");
  return !fault.empty() && fault == fmt::format("{}:{}", point, value);
}

void fault_point(const char* point, int64_t value) {
  if (fault_armed(point, value)) kill_self();
}

void kill_self() {
  std::raise(SIGKILL);
  std::abort();  // not reached: SIGKILL cannot be caught
}

bool test_mutation(const char* mutation) { return !active_test_mutation().empty() && active_test_mutation() == mutation; }

const std::string& active_test_mutation() { return env("TESS_TEST_MUTATION"); }

}  // namespace tess::util
