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
  bool stop_on_write_error = true; // log.on_write_error: stop (else warn once)
};

// Installs the default spdlog logger. Safe to call again (e.g. once the run
// directory is known); the previous sinks are flushed and replaced.
void setup_logging(const LogSetup& setup);

// Rank of this process as logging knows it (0 when setup_logging never ran).
int log_rank();

// The first failed write of the log file ("cannot write the log file F:
// why"), when the setup says such a failure stops the run; empty otherwise.
// A failure is always reported once on stderr as it happens (spdlog would
// print "LOG ERROR" and go on).
std::string log_write_error();

}  // namespace tess::util
