// `tess plan CONFIG [--set key=value ...] --world-size N --gpu-memory-gb G`:
// the per-rank memory and compute of a training run, from the config
// `tess train` would take (train/plan.h, docs/plan.md).
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/config/config.h"
#include "core/util/error.h"
#include "launch/cli.h"
#include "train/plan.h"

namespace tess::cli {
namespace {

struct PlanArgs {
  std::string config;
  std::vector<std::string> sets;
  int64_t world_size = 1;
  double gpu_memory_gb = 0;
  std::string model_preset;
  double span_fraction = 1.0;
  double mfu = 0.4;
  double peak_tflops = 0;
  bool json = false;
};

int plan(const PlanArgs& a) {
  auto cfg = config::Config::load(a.config, a.sets);
  train::PlanOptions options;
  options.world_size = a.world_size;
  options.model_preset = a.model_preset;
  options.span_fraction = a.span_fraction;
  auto in = train::plan_inputs(cfg, options);
  if (a.gpu_memory_gb < 0) throw Error(fmt::format("--gpu-memory-gb must be positive, got {}", a.gpu_memory_gb));
  if (a.peak_tflops > 0 && !(a.mfu > 0 && a.mfu <= 1)) throw Error(fmt::format("--mfu must be in (0, 1], got {}", a.mfu));
  auto p = train::estimate(in);
  auto text = a.json ? train::plan_json(p, a.gpu_memory_gb, a.mfu, a.peak_tflops)
                     : train::format_plan(p, a.gpu_memory_gb, a.mfu, a.peak_tflops);
  std::fputs(text.c_str(), stdout);
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<PlanArgs>();
  auto* cmd = app.add_subcommand("plan", "Per-rank memory estimate and FLOPs of a training config (docs/plan.md)");
  cmd->add_option("CONFIG", args->config, "YAML config file (as for tess train)")->required();
  cmd->add_option("--set", args->sets, "Override a key: --set train.batch_size=2 (repeatable)")->allow_extra_args(false);
  cmd->add_option("--world-size", args->world_size, "Data-parallel ranks (processes / GPUs)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--gpu-memory-gb", args->gpu_memory_gb, "Memory per device in GiB (e.g. 80); prints the headroom")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--model-preset", args->model_preset,
                  "Model shape when model.path is not on this machine: tiny, tinyllama-1.1b, mistral-7b-v0.1, "
                  "llama-3-8b, llama-3.2-1b, qwen2.5-0.5b");
  cmd->add_option("--span-fraction", args->span_fraction,
                  "Span rows as a fraction of B x L for the vocabulary-space tensors (1 = worst case)")
      ->check(CLI::Range(1e-9, 1.0))->capture_default_str();
  cmd->add_option("--mfu", args->mfu, "Model FLOP utilisation for the throughput estimate")
      ->check(CLI::Range(1e-9, 1.0))->capture_default_str();
  cmd->add_option("--peak-tflops", args->peak_tflops, "Peak TFLOP/s per device (e.g. 989 for an H100's dense bf16)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", args->json, "Machine-readable output");
  cmd->callback([&action, args] { action = [args] { return plan(*args); }; });
}

}  // namespace tess::cli
