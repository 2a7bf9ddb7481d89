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

}  // namespace tess
