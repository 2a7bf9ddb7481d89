#pragma once
// Helpers shared by the tests: scratch directories and running the real
// `tess` binary as a user would.
#include <filesystem>
#include <functional>
#include <string>

#include "core/model/model_config.h"

namespace tess::test {

// A fresh directory under the system temp dir, removed when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Writes `text` to `name` inside the directory and returns its path.
  std::filesystem::path write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a shell command line and captures its output streams.
CommandResult run_command(const std::string& command_line);
// Runs the built `tess` with the given arguments (shell-quoted by the caller).
CommandResult run_tess(const std::string& args);

std::string read_file(const std::filesystem::path& path);

// The message of the tess::Error that `f` throws (fails the test if none).
std::string error_of(const std::function<void()>& f);
// `s` quoted for a POSIX shell command line.
std::string shell_quote(const std::string& s);

// A TCP port on 127.0.0.1 that was free a moment ago (for several launchers
// that must agree on one rendezvous port; one launcher picks its own).
int free_port();

// Ends the calling test case as skipped, saying why. Under ctest the process
// exits with TESS_TEST_SKIP_CODE, which ctest reports as "Skipped" (never as
// a pass); run by hand, it warns and counts as one passing assertion. Use
// TESS_SKIP, which also returns from the test case.
void skip(const std::string& reason);
#define TESS_SKIP(reason)         \
  do {                            \
    ::tess::test::skip(reason);   \
    return;                       \
  } while (0)

// A small GQA decoder shape for fast tests: hidden 32, 2 layers, 4 heads,
// 2 KV heads, vocabulary `vocab`; `init_std` > 0.02 gives a less uniform
// untrained model.
model::ModelConfig small_model_config(int64_t vocab, double init_std = 0.2);

}  // namespace tess::test
