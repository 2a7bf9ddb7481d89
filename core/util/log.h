#pragma once
// Process-wide logging through spdlog: console (stderr) plus, for runs, one
// log file in the run directory. In multi-process runs every line carries the
// rank and, by default, only rank 0 writes to the console; files get all lines.
#include <filesystem>
#include <string>

namespace tess::util {

struct LogSetup {
  int rank = 0;
  int world_size = 1;
  std::filesystem::path file;      // empty: console only
  bool console_all_ranks = false;  // log.all_ranks
  std::string level = "info";      // trace|debug|info|warn|error
};

// Installs the default spdlog logger. Safe to call again (e.g. once the run
// directory is known); the previous sinks are flushed and replaced.
void setup_logging(const LogSetup& setup);

// Rank of this process as logging knows it (0 when setup_logging never ran).
int log_rank();

}  // namespace tess::util
