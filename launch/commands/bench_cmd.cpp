// `tess bench peak|train|sample|data|checkpoint|dist|all`: throughput figures
// of this machine (eval/bench.h, docs/performance.md). A table goes to stdout,
// or to stderr with --json, which prints the report as JSON on stdout;
// --output FILE writes the JSON to a file.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "launch/bench/bench.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

namespace bench = tess::bench;
using json = nlohmann::json;

struct BenchArgs {
  bench::BenchOptions opt;
  bool json_out = false;
  std::string output;
  std::string python, eager_script;
  bool no_eager = false;
  bool overlap = false;
  // train
  std::string case_id;
  std::vector<std::string> presets{"tiny", "small", "medium"};
  double peak_fp32 = 0, peak_bf16 = 0;
  // sample
  std::string sample_preset = "small";
  bench::SampleGrid grid;
  std::string grid_config, grid_ar_model;
  // serve
  bench::ServeBench serve;
  // dist-worker
  int64_t global_batch = 8, steps = 3;
  std::string workspace;
};

int emit(const BenchArgs& a, json report) {
  auto table = bench::format_report(report);
  if (a.json_out) {
    if (a.case_id.empty()) std::fputs(table.c_str(), stderr);  // a case's parent prints the table
    std::cout << report.dump(2) << std::endl;
  } else {
    std::cout << table << std::flush;
  }
  if (!a.output.empty()) {
    std::ofstream f(a.output);
    f << report.dump(2) << "\n";
    f.close();
    if (!f) throw Error(fmt::format("cannot write the bench report to {} (disk full or not writable?)", a.output));
  }
  return 0;
}

bench::BenchOptions options_of(const BenchArgs& a) {
  auto o = a.opt;
  o.python = a.python;
  o.eager_script = a.eager_script;
  o.eager = !a.no_eager;
  return o;
}

void add_common(CLI::App* cmd, BenchArgs& a) {
  cmd->add_flag("--json", a.json_out, "Print the report as JSON on stdout (the table goes to stderr)");
  cmd->add_option("--output,-o", a.output, "Also write the JSON report to FILE");
  cmd->add_flag("--smoke", a.opt.smoke, "Minimal sizes and repetitions (CI): checks that it runs, figures mean nothing");
  cmd->add_option("--threads", a.opt.threads, "Torch intra-op threads (default: LibTorch's)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", a.opt.device, "Where training cases and their matmul peak run (cpu or cuda)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--cpu-allocator", a.opt.cpu_allocator,
                  "CPU allocator of the training and sampling cases, as run.cpu_allocator (caching or system)")
      ->check(CLI::IsMember({"caching", "system"}))
      ->capture_default_str();
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("bench", "Measure peak, training, sampling, data, checkpoint and data-parallel throughput (JSON)");
  cmd->require_subcommand(1);
  auto a = std::make_shared<BenchArgs>();

  auto* peak = cmd->add_subcommand("peak", "fp32 and bf16 matmul GFLOP/s with the threads in use (the MFU denominators)");
  add_common(peak, *a);
  peak->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      return emit(*a, {{"machine", bench::machine_json(o)}, {"peak", bench::bench_peak(o)}});
    };
  });

  auto* train = cmd->add_subcommand("train", "Training step: tokens/s, time breakdown, peak memory, MFU, vs eager PyTorch");
  add_common(train, *a);
  train->add_option("--case", a->case_id, "Run one case PRESET/STAGE/PRECISION in this process (e.g. medium/adaptation/fp32)");
  train->add_option("--presets", a->presets, "Presets to run (tiny, small, medium; 1b for GPUs)")->delimiter(',')->capture_default_str();
  train->add_option("--peak-fp32", a->peak_fp32, "fp32 peak GFLOP/s for MFU (default: measured)");
  train->add_option("--peak-bf16", a->peak_bf16, "bf16 peak GFLOP/s for MFU (default: measured)");
  train->add_option("--python", a->python, "Python with torch for the eager reference step (default python3)");
  train->add_option("--eager-script", a->eager_script, "The eager reference step script (default launch/bench/reference/bench_eager.py)");
  train->add_flag("--no-eager", a->no_eager, "Skip the eager PyTorch comparison");
  train->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      json report = {{"machine", bench::machine_json(o)}};
      if (!a->case_id.empty()) {
        auto c = bench::TrainCase::parse(a->case_id);
        report["train"] = {{"cases", json::array({bench::bench_train_case(c, o, a->peak_fp32, a->peak_bf16)})}};
        return emit(*a, report);
      }
      for (const auto& p : a->presets) bench::train_preset(p, true);  // unknown names fail before any work
      report["peak"] = bench::bench_peak(o);
      report["train"] = bench::bench_train(o, report["peak"], a->presets);
      return emit(*a, report);
    };
  });

  auto* sample = cmd->add_subcommand(
      "sample",
      "Diffusion sampler vs AR decoding with KV cache: random weights (speed only), or with --config the sampler "
      "settings on trained models and held-out prompts, exact match beside speed, batch 1/8/32");
  add_common(sample, *a);
  sample->add_option("--preset", a->sample_preset, "Model shape (tiny, small, medium)")->capture_default_str();
  auto* grid_config = sample->add_option(
      "--config", a->grid_config,
      "An eval config (eval.model, eval.data, span, top-p, extraction): run the settings grid on it");
  sample->add_option("--ar-model", a->grid_ar_model, "The AR model answering the same prompts (with --config)")
      ->needs(grid_config);
  sample->add_option("--batches", a->grid.batches, "Batch sizes of the grid")->delimiter(',')->capture_default_str();
  sample->add_option("--limit", a->grid.limit, "Held-out prompts per run of the grid")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sample->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      if (a->grid_config.empty())
        return emit(*a, {{"machine", bench::machine_json(o)}, {"sample", bench::bench_sample(o, a->sample_preset)}});
      if (a->grid_ar_model.empty()) throw Error("bench sample --config needs --ar-model: the AR model to compare with");
      a->grid.config = a->grid_config;
      a->grid.ar_model = a->grid_ar_model;
      return emit(*a, {{"machine", bench::machine_json(o)}, {"sample_grid", bench::bench_sample_grid(o, a->grid)}});
    };
  });

  auto* serve = cmd->add_subcommand(
      "serve", "Loopback load test of tess serve: concurrent clients, latency percentiles, tokens/s, no request lost "
               "or answered twice, every answer equal to the request served alone");
  add_common(serve, *a);
  serve->add_option("--model", a->serve.model, "Diffusion model directory")->required();
  serve->add_option("--clients", a->serve.clients, "Concurrent clients")->capture_default_str()->check(CLI::PositiveNumber);
  serve->add_option("--requests", a->serve.requests, "Requests per client, one after another")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve->add_option("--max-tokens", a->serve.max_tokens, "Span length of each request")->capture_default_str();
  serve->add_option("--steps", a->serve.steps, "Denoising steps of each request")->capture_default_str();
  serve->add_option("--max-batch", a->serve.max_batch, "The server's --max-batch")->capture_default_str();
  serve->add_option("--max-queue", a->serve.max_queue, "The server's --max-queue")->capture_default_str();
  serve->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      return emit(*a, {{"machine", bench::machine_json(o)}, {"serve", bench::bench_serve(o, a->serve)}});
    };
  });

  auto* data = cmd->add_subcommand("data", "Loader throughput vs the training step's consumption");
  add_common(data, *a);
  data->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      o.eager = false;
      json report = {{"machine", bench::machine_json(o)}};
      // The consumption rate: the same batch shape's training step, here.
      bench::TrainCase c{"small", config::RunStage::Adaptation, "fp32"};
      json train = {{"cases", json::array({bench::bench_train_case(c, o, 0, 0)})}};
      report["data"] = bench::bench_data(o, train);
      return emit(*a, report);
    };
  });

  auto* ckpt = cmd->add_subcommand("checkpoint", "safetensors save/load GB/s of weights and optimizer state");
  add_common(ckpt, *a);
  ckpt->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      // The step a save would stall: the checkpointed model's training step, here.
      bench::TrainCase c{o.smoke ? "tiny" : "medium", config::RunStage::Adaptation, "fp32"};
      json train = {{"cases", json::array({bench::bench_train_case(c, o, 0, 0)})}};
      return emit(*a, {{"machine", bench::machine_json(o)}, {"checkpoint", bench::bench_checkpoint(o, train)}});
    };
  });

  auto* dist = cmd->add_subcommand("dist", "2-process Gloo data parallelism vs 1 process on the same global batch");
  add_common(dist, *a);
  dist->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      return emit(*a, {{"machine", bench::machine_json(o)}, {"dist", bench::bench_dist(o)}});
    };
  });

  auto* worker = cmd->add_subcommand("dist-worker", "One rank of `tess bench dist` (run under tess launch)");
  add_common(worker, *a);
  worker->add_option("--workspace", a->workspace, "The inputs `tess bench dist` generated")->required();
  worker->add_option("--global-batch", a->global_batch, "Sequences per optimizer step over all ranks")->capture_default_str();
  worker->add_option("--steps", a->steps, "Timed steps (after one warm-up)")->capture_default_str();
  worker->add_flag("--overlap", a->overlap, "All-reduce gradient buckets during backward (dist.overlap)");
  worker->callback([&action, a] {
    action = [a] {
      if (a->output.empty()) throw Error("bench dist-worker: --output FILE is required (rank 0 writes its result there)");
      bench::bench_dist_worker(options_of(*a), a->workspace, a->global_batch, a->steps, a->overlap, a->output);
      return 0;
    };
  });

  auto* all = cmd->add_subcommand("all", "Everything above, one report");
  add_common(all, *a);
  all->add_option("--presets", a->presets, "Training presets (tiny, small, medium)")->delimiter(',')->capture_default_str();
  all->add_option("--python", a->python, "Python with torch for the eager reference step (default python3)");
  all->add_flag("--no-eager", a->no_eager, "Skip the eager PyTorch comparison");
  all->callback([&action, a] {
    action = [a] {
      auto o = options_of(*a);
      for (const auto& p : a->presets) bench::train_preset(p, true);
      json report = {{"machine", bench::machine_json(o)}};
      report["peak"] = bench::bench_peak(o);
      report["train"] = bench::bench_train(o, report["peak"], a->presets);
      report["sample"] = bench::bench_sample(o, "small");
      report["data"] = bench::bench_data(o, report["train"]);
      report["checkpoint"] = bench::bench_checkpoint(o, report["train"]);
      report["dist"] = bench::bench_dist(o);
      report["machine_after"] = bench::machine_json(o);
      return emit(*a, report);
    };
  });
}

}  // namespace tess::cli
