// `tess launch`: run N local copies of tess (or of --program) with the
// torchrun environment, like `torchrun --no-python`.
#include <memory>

#include <CLI/CLI.hpp>

#include "launch/cli.h"
#include "launch/launcher.h"

namespace tess::cli {

void add_launch_command(CLI::App& app, Action& action) {
  auto spec = std::make_shared<launch::LaunchSpec>();
  auto* cmd = app.add_subcommand("launch", "Start N local training processes with the torchrun environment");
  cmd->footer(
      "Each process gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and\n"
      "MASTER_PORT; its output is relayed line by line prefixed with `[rank r] `. When a rank fails the\n"
      "others get SIGTERM (SIGKILL after --grace-seconds) and launch exits with the failing rank's code\n"
      "(128+signal when killed by a signal). SIGINT/SIGTERM are forwarded to every rank.\n"
      "Example: tess launch --nproc 2 -- train configs/quickstart.yaml");
  cmd->add_option("--nproc,--nproc-per-node", spec->nproc, "Processes to start on this node")
      ->capture_default_str();
  cmd->add_option("--nnodes", spec->nnodes, "Nodes taking part in the job")->capture_default_str();
  cmd->add_option("--node-rank", spec->node_rank, "Index of this node, 0..nnodes-1")->capture_default_str();
  cmd->add_option("--master-addr", spec->master_addr, "Address of the rank-0 node (c10d store)")
      ->capture_default_str();
  cmd->add_option("--master-port", spec->master_port,
                  "Port of the c10d store; default: a free port (required when --nnodes > 1)");
  cmd->add_option("--program", spec->program,
                  "Run this program instead of tess (searched in PATH when it has no '/')");
  cmd->add_option("--grace-seconds", spec->grace_seconds,
                  "Time ranks get after SIGTERM before SIGKILL when stopping them")
      ->capture_default_str();
  cmd->add_option("ARGS", spec->args, "Arguments for every process, after `--`");
  cmd->callback([&action, spec] { action = [spec] { return launch::run_launch(*spec); }; });
}

}  // namespace tess::cli
