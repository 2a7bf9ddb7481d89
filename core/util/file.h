#pragma once
// Whole small files (configs, manifests, pointers) read into memory.
#include <filesystem>
#include <string>
#include <string_view>

namespace tess::util {

// The file's bytes; throws tess::Error "cannot read <what> '<path>'".
std::string read_file(const std::filesystem::path& path, const std::string& what = "");

// Writes `bytes` through `<path>.tmp` and a rename, so a crash never leaves a
// half-written file behind; throws tess::Error "cannot write '<path>'".
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// Throws tess::Error naming `what` and `path` unless `path` could be written
// now: its directory exists and is writable, and the path is not a directory
// or a read-only file. For outputs written at the end of a long job, checked
// before the job starts.
void check_writable(const std::filesystem::path& path, const std::string& what);

// An exclusive advisory lock (flock) on `path`, held while the object lives
// (and released by the kernel when the process dies). The file records who
// holds it; a second holder gets a tess::Error naming `what` and the first
// holder (pid, host, since when).
class FileLock {
 public:
  FileLock(const std::filesystem::path& path, const std::string& what);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace tess::util
