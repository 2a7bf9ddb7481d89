// `tess checkpoint verify|export`: check a training checkpoint against its
// manifest, and take its model out as a plain HF model directory.
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/checkpoint/checkpoint.h"
#include "core/util/error.h"
#include "core/util/format.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {
namespace fs = std::filesystem;

struct CheckpointArgs {
  std::string dir, hf;
  bool no_hash = false;
};

// A run directory stands for its latest checkpoint, after the repairs a run
// would make first (an interrupted commit finished, `latest` repaired).
fs::path resolve(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "manifest.json")) return dir;
  for (const auto& line : checkpoint::recover_checkpoints(dir))
    std::cout << fmt::format("{}: {}\n", checkpoint::checkpoints_root(dir).string(), line);
  if (auto latest = checkpoint::latest_checkpoint(dir)) return *latest;
  throw Error(fmt::format("'{}' is neither a checkpoint (no manifest.json) nor a run directory with checkpoints", dir));
}

int verify(const CheckpointArgs& a) {
  auto dir = resolve(a.dir);
  auto m = checkpoint::verify_checkpoint(dir, !a.no_hash);
  uint64_t bytes = 0;
  for (const auto& f : m.files) bytes += f.size;
  std::cout << fmt::format("{}: ok ({})\n", dir.string(), a.no_hash ? "sizes checked, sha256 skipped" : "sizes and sha256 checked")
            << fmt::format("stage {}, step {}, {} tokens seen, {} rank(s)\n", m.stage, m.step, m.tokens_seen, m.world_size)
            << fmt::format("{} files, {}; config {}, tokenizer {}\n", m.files.size(),
                           util::human_bytes(static_cast<double>(bytes)), m.config_hash, m.tokenizer_hash.substr(0, 16));
  return 0;
}

int export_hf(const CheckpointArgs& a) {
  auto dir = resolve(a.dir);
  checkpoint::verify_checkpoint(dir, !a.no_hash);
  if (fs::exists(a.hf) && !fs::is_empty(a.hf)) throw Error(fmt::format("--hf '{}' exists and is not empty", a.hf));
  std::error_code ec;
  fs::create_directories(a.hf, ec);
  fs::copy(dir / "model", a.hf, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error(fmt::format("cannot copy the model of {} to '{}': {}", dir.string(), a.hf, ec.message()));
  std::cout << fmt::format("exported the model of {} to {}\n", dir.string(), a.hf);
  return 0;
}

}  // namespace

void add_checkpoint_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<CheckpointArgs>();
  auto* cmd = app.add_subcommand("checkpoint", "Verify checkpoints and export them as HF model directories");
  cmd->require_subcommand(1);
  auto* v = cmd->add_subcommand("verify", "Check a checkpoint (or a run's latest) against its manifest");
  v->add_option("DIR", args->dir, "Checkpoint directory or run directory")->required();
  v->add_flag("--no-hash", args->no_hash, "Check sizes only, skip sha256");
  v->callback([&action, args] { action = [args] { return verify(*args); }; });
  auto* e = cmd->add_subcommand("export", "Write a checkpoint's model as an HF model directory");
  e->add_option("DIR", args->dir, "Checkpoint directory or run directory")->required();
  e->add_option("--hf", args->hf, "Output directory (new or empty)")->required();
  e->add_flag("--no-hash", args->no_hash, "Check sizes only, skip sha256");
  e->callback([&action, args] { action = [args] { return export_hf(*args); }; });
}

}  // namespace tess::cli
