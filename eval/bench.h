#pragma once
// `tess bench`: throughput figures of this machine and build (docs/performance.md).
// Every figure carries its configuration, the torch thread count and the
// measured matmul peak it is compared to, so a number is never read without
// its context. Training is measured with the library pieces the trainer uses
// (Decoder, DiffusionLM, DiffusionLoss's functions, AdamW) on synthetic token
// batches, one case per child process so that peak resident memory (VmHWM)
// belongs to that case alone. Nothing here asserts a speed: the targets are
// compared in docs/performance.md.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/model/model_config.h"

namespace tess::eval::bench {

struct BenchOptions {
  bool smoke = false;  // minimal sizes and repetitions (CI): the figures mean nothing
  int threads = 0;     // torch intra-op threads; 0 = LibTorch's default
  std::filesystem::path exe;     // the tess binary children are started from (default /proc/self/exe)
  std::filesystem::path python;  // interpreter of the eager-PyTorch reference step (default python3)
  bool eager = true;             // also time the plain eager PyTorch step
  std::filesystem::path eager_script;  // default: eval/bench_eager.py of the source tree
  std::string cpu_allocator = "caching";  // of training and sampling cases, as run.cpu_allocator: caching | system
};

// ---- FLOP counting (docs/performance.md "Counting rules") --------------------

enum class TrainStage { Ar, Adaptation, Instruction };
TrainStage parse_train_stage(const std::string& name);  // ar | adaptation | instruction
const char* train_stage_name(TrainStage s);

// Model FLOPs of one optimizer step (forward + backward of B sequences of L
// tokens), by term. `span_tokens`: noised positions of the batch (diffusion);
// ignored for ar. `self_condition_rate`: the share of steps that run the
// no-grad self-conditioning pass (0.5 in training).
struct StepFlops {
  double body = 0;              // 6 * N_layers per token (N_layers: weights of the layers' linear maps)
  double attention = 0;         // 12 * layers * heads * head_dim * L per token (score and value matmuls)
  double lm_head = 0;           // 6 * V * H per predicted token (ar: L - 1 per row; diffusion: span rows)
  double input_projection = 0;  // 2 * V * H per span token, forward only (E without gradient)
  double self_condition = 0;    // rate * (forward of body + attention + input projection + LM head)
  double total() const { return body + attention + lm_head + input_projection + self_condition; }
};
StepFlops train_step_flops(const model::ModelConfig& config, TrainStage stage, int64_t batch, int64_t seq_len,
                           int64_t span_tokens, double self_condition_rate);
// The decoder layers' linear weights (what `body` multiplies by 6).
int64_t layer_matmul_parameters(const model::ModelConfig& config);

// ---- benchmark shapes -------------------------------------------------------

struct TrainPreset {
  std::string name;
  model::ModelConfig model;
  int64_t batch = 1;
  int64_t seq_len = 128;
};
// tiny | small (H 256, 4 layers, L 256, V 8k) | medium (H 512, 8 layers, L 512, V 32k).
// Smoke shrinks batch and length, never the model.
TrainPreset train_preset(const std::string& name, bool smoke);
const std::vector<std::string>& train_preset_names();

struct TrainCase {
  std::string preset = "small";
  TrainStage stage = TrainStage::Adaptation;
  std::string precision = "fp32";  // fp32 | bf16 (autocast)
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
// Diffusion sampler vs. AR with KV cache on the same decoder.
nlohmann::json bench_sample(const BenchOptions& opt, const std::string& preset);
// Loader throughput; `train` (optional) gives the consumption rate to compare to.
nlohmann::json bench_data(const BenchOptions& opt, const nlohmann::json& train);
// Save/load of a model's weights and of an optimizer-state-sized file.
nlohmann::json bench_checkpoint(const BenchOptions& opt, const nlohmann::json& train);
// 1 process vs. 2 Gloo processes (under `tess launch --nproc 2`) on the same global batch.
nlohmann::json bench_dist(const BenchOptions& opt);
// The per-rank body of bench_dist: run from the torchrun environment; rank 0
// writes its JSON to `output`.
void bench_dist_worker(const BenchOptions& opt, int64_t global_batch, int64_t steps, bool overlap,
                       const std::filesystem::path& output);

// Whether Trainer accepts train.precision = `precision` (tried on a one-step
// run over a generated tokenizer and dataset in a temp dir); the error text
// when it does not.
std::string trainer_precision_error(const std::string& precision);

// The machine, threads and load the figures were taken with.
nlohmann::json machine_json(const BenchOptions& opt);

// Readable tables of a report holding any of the sections above.
std::string format_report(const nlohmann::json& report);

// Peak resident memory of this process (VmHWM), bytes.
int64_t peak_resident_bytes();

}  // namespace tess::eval::bench
