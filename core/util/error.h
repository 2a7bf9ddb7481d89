#pragma once
// One exception type for every user-facing failure. The message is the whole
// story (file, line, key, what was expected); the CLI prints it and exits 1.
#include <stdexcept>
#include <string>

namespace tess {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A LibTorch message without the C++ stack LibTorch appends to it ("Exception
// raised from F at FILE:LINE (most recent call first): frame #0 ..."): users
// get what went wrong, not LibTorch's internals.
inline std::string without_backtrace(std::string what) {
  auto at = what.find("Exception raised from ");
  if (at != std::string::npos) what.resize(at);
  while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
  return what;
}

}  // namespace tess
