// `tess train CONFIG.yaml [--set key=value ...]`: one process of a training
// run. Several processes (tess launch, torchrun --no-python, SLURM) find each
// other through the torchrun environment variables.
#include <chrono>

#include <CLI/CLI.hpp>

#include "core/config/config.h"
#include "core/dist/dist.h"
#include "launch/cli.h"
#include "train/trainer.h"

namespace tess::cli {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
};

int train(const TrainArgs& a) {
  auto cfg = config::Config::load(a.config, a.sets);
  auto env = dist::DistEnv::from_environment();
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.get_float("dist.timeout_s") * 1000));
  auto dist = dist::Dist::create(env, cfg.get_string("dist.backend"), timeout);
  train::install_stop_signal_handlers();
  train::Trainer trainer(cfg, dist);
  return trainer.run();
}

}  // namespace

void add_train_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Train a model from a YAML config (stages ar, adaptation, instruction)");
  cmd->add_option("CONFIG", args->config, "YAML config file")->required();
  cmd->add_option("--set", args->sets, "Override a key: --set train.lr=3e-5 (repeatable)")->allow_extra_args(false);
  cmd->callback([&action, args] { action = [args] { return train(*args); }; });
}

}  // namespace tess::cli
