#pragma once
// Helpers shared by the tests: scratch directories and running the real
// `tess` binary as a user would.
#include <filesystem>
#include <string>

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

}  // namespace tess::test
