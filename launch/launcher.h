#pragma once
// `tess launch`: start N local processes with the torchrun environment (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
// MASTER_PORT) so they can form a c10d process group, relay their output
// line by line with a `[rank r] ` prefix, and stop them all when one fails.
#include <string>
#include <vector>

namespace tess::launch {

struct LaunchSpec {
  int nproc = 1;          // processes on this node
  int nnodes = 1;         // nodes in the job
  int node_rank = 0;      // this node's index, 0..nnodes-1
  std::string master_addr = "127.0.0.1";
  int master_port = 0;    // 0: pick a free port (only when nnodes == 1)
  std::string program;    // empty: this tess binary (/proc/self/exe)
  std::vector<std::string> args;  // arguments after the program name
  double grace_seconds = 30;      // SIGTERM -> SIGKILL delay when stopping ranks
};

// Runs the processes to completion and returns the launcher's exit code: 0
// when every rank exits 0, otherwise the first failing rank's exit code
// (128 + signal for a rank killed by a signal), after sending SIGTERM to the
// others and SIGKILL to those still alive after the grace period. SIGINT and
// SIGTERM received meanwhile are forwarded to every rank. An invalid spec or
// a program that cannot be started is a tess::Error.
int run_launch(const LaunchSpec& spec);

// A TCP port that was free on `addr` a moment ago (bind to port 0).
int pick_free_port(const std::string& addr);

}  // namespace tess::launch
