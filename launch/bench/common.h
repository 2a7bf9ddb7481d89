#pragma once
// What the benchmark jobs share: timing, child processes, scratch
// directories, the presets' shapes, resident memory.
#include <chrono>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "launch/bench/bench.h"

namespace tess::bench {

using Clock = std::chrono::steady_clock;
inline double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void apply_threads(const BenchOptions& opt);
std::string quote(const std::string& s);  // for a shell command line
std::filesystem::path exe_of(const BenchOptions& opt);
// Runs a command line; returns its stdout (stderr passes through) or throws
// naming the command and its exit status.
std::string run_child(const std::string& cmd, const std::string& what);
// The JSON object a child printed last.
nlohmann::json parse_child_json(const std::string& out, const std::string& what);
// The flags a child job inherits (--smoke, --threads, --cpu-allocator).
std::string common_flags(const BenchOptions& opt);
// Resident memory now (VmRSS).
int64_t resident_bytes();
// Square matmuls of a few sizes, best of N: {"gflops": best, "by_size": [...]}.
// The best of square matmuls on `device` (larger sizes on a GPU).
nlohmann::json matmul_peak(c10::ScalarType dtype, bool smoke, c10::Device device = c10::kCPU);

// The field `field` of case `id` in a train report (0 when absent): what the
// data and checkpoint jobs compare their figures with.
double consumption_of(const nlohmann::json& train, const std::string& id, const char* field);

// A fresh directory under the system temp dir, removed when destroyed.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace tess::bench
