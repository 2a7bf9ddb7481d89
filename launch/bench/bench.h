#pragma once
// `tess bench`: throughput figures of this machine and build
// (docs/performance.md). Every figure carries its configuration, the torch
// thread count and the measured matmul peak it is compared to, so a number is
// never read without its context. A training case runs the trainer's own
// step (train::Training: the stage's data loader and loss, the weight update,
// the checkpoint manager) on generated inputs, one case per child process so
// that peak resident memory (VmHWM) belongs to that case alone; FLOPs come
// from train/flops.h, the count `tess plan` and metrics.jsonl use. Nothing
// here asserts a speed: the targets are compared in docs/performance.md.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/config/choices.h"
#include "core/model/model_config.h"

namespace tess::bench {

struct BenchOptions {
  bool smoke = false;  // minimal sizes and repetitions (CI): the figures mean nothing
  int threads = 0;     // torch intra-op threads; 0 = LibTorch's default
  std::filesystem::path exe;     // the tess binary children are started from (default /proc/self/exe)
  std::filesystem::path python;  // interpreter of the eager-PyTorch reference step (default python3)
  bool eager = true;             // also time the plain eager PyTorch step
  std::filesystem::path eager_script;  // default: launch/bench/reference/bench_eager.py of the source tree
  std::string cpu_allocator = "caching";  // of training and sampling cases, as run.cpu_allocator: caching | system
  std::string device = "cpu";  // training cases and their peak: cpu | cuda (run.device)
};

// ---- benchmark shapes -------------------------------------------------------

struct TrainPreset {
  std::string name;
  model::ModelConfig model;
  int64_t batch = 1;
  int64_t seq_len = 128;
};
// tiny (the tiny model preset with V 512) | small (H 256, 4 layers, L 256, V 8k) | medium (H 512, 8
// layers, L 512, V 32k).
// Smoke shrinks batch and length, never the model.
TrainPreset train_preset(const std::string& name, bool smoke);
const std::vector<std::string>& train_preset_names();

// The stages a case can time (reward has no bench case).
const util::Choices<config::RunStage>& bench_stage_choices();

struct TrainCase {
  std::string preset = "small";
  config::RunStage stage = config::RunStage::Adaptation;
  std::string precision = "fp32";  // fp32 | bf16 (train.precision bf16_autocast)
  std::string id() const;          // "small/adaptation/fp32"
  static TrainCase parse(const std::string& id);
};

// ---- the measurements (each returns its JSON section) -----------------------

// Square fp32 and bf16 matmuls of a few sizes, best of N after warm-up.
nlohmann::json bench_peak(const BenchOptions& opt);
// One training case in this process. peak_* (GFLOP/s) are the MFU
// denominators; <= 0 measures them first.
nlohmann::json bench_train_case(const TrainCase& c, const BenchOptions& opt, double peak_fp32, double peak_bf16);
// Every case, each in a child `tess bench train --case ...`, plus the eager
// PyTorch step of the same shapes and the precision support check.
nlohmann::json bench_train(const BenchOptions& opt, const nlohmann::json& peak, const std::vector<std::string>& presets);
// Diffusion sampler vs. AR with KV cache on the same decoder (random
// weights: speed only), and one denoising step with and without the prompt
// cache at a prompt twice the span.
nlohmann::json bench_sample(const BenchOptions& opt, const std::string& preset);

// The sampler settings people choose between (fixed 8/16/32/64 steps;
// adaptive stopping at a 32-step budget; adaptive + prompt cache at r = 4, 8),
// each run through `tess eval`'s own code (eval::evaluate) on trained models
// and held-out prompts, at each batch size, beside its exact match, against
// AR decoding (KV cache, batched) of the same prompts at the same batch size.
struct SampleGrid {
  std::filesystem::path config;    // an eval config: eval.model, eval.data, extraction, span, top_p, ...
  std::filesystem::path ar_model;  // the AR model answering the same prompts
  std::vector<int64_t> batches{1, 8, 32};
  int64_t limit = 64;              // held-out prompts per run
};
nlohmann::json bench_sample_grid(const BenchOptions& opt, const SampleGrid& grid);
// The trainer's data loader alone; `train` (optional) gives the consumption rate to compare to.
nlohmann::json bench_data(const BenchOptions& opt, const nlohmann::json& train);
// Save/load of a model's weights and of an optimizer-state-sized file.
nlohmann::json bench_checkpoint(const BenchOptions& opt, const nlohmann::json& train);
// The trainer's step on 1 process vs. 2 Gloo processes (under `tess launch
// --nproc 2`) on the same global batch.
nlohmann::json bench_dist(const BenchOptions& opt);
// The per-rank body of bench_dist: run from the torchrun environment over the
// inputs in `workspace`; rank 0 writes its JSON to `output`.
void bench_dist_worker(const BenchOptions& opt, const std::filesystem::path& workspace, int64_t global_batch,
                       int64_t steps, bool overlap, const std::filesystem::path& output);

// Whether Trainer accepts train.precision = `precision` (tried on a one-step
// run over generated inputs in a temp dir); the error text when it does not.
std::string trainer_precision_error(const std::string& precision);

// `tess bench serve`: a loopback load test of the real server (launch/bench/serve.cpp).
struct ServeBench {
  std::filesystem::path model;  // a diffusion model directory
  int64_t clients = 32, requests = 8;  // concurrent clients x sequential requests each
  int64_t max_tokens = 16, steps = 8;
  int64_t max_batch = 8, max_queue = 64;
};
nlohmann::json bench_serve(const BenchOptions& opt, const ServeBench& bench);

// The machine, threads and load the figures were taken with.
nlohmann::json machine_json(const BenchOptions& opt);

// Readable tables of a report holding any of the sections above.
std::string format_report(const nlohmann::json& report);

// Peak resident memory of this process (VmHWM), bytes.
int64_t peak_resident_bytes();

}  // namespace tess::bench
