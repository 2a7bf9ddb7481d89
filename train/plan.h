#pragma once
// `tess plan`: the per-rank memory and the compute of a training run, from
// the same YAML config `tess train` takes, without building the model.
//
// The estimate follows what tess's trainer actually allocates (docs/plan.md
// documents every term and its formula):
//  - persistent state: weights, gradients, fp32 masters and their gradients
//    (bf16_master), AdamW moments (sharded by whole tensors with ZeRO-1,
//    the trainer's greedy owner assignment replayed exactly);
//  - the forward/backward transients of one micro-batch: the tensors a
//    decoder layer saves for backward (or only layer inputs plus one
//    recomputed layer with activation checkpointing), autocast's bf16 weight
//    copies, the vocabulary-space tensors of the loss (the fused LM-head
//    loss's chunk and the head gradients it keeps, the self-conditioning
//    logits), the backward working set;
//  - the optimizer-step transients: all-reduce bucket and ZeRO-1's flattened
//    broadcast (the gradient norm reduces in place; AdamW is fused).
// Peak = persistent + the largest of the three phases (forward end,
// backward, optimizer step): transients of different phases never coexist.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config/choices.h"
#include "core/model/model_config.h"

namespace tess::config {
class Config;
}

namespace tess::train {

using config::Precision;
using config::RunStage;

// Everything the estimate depends on, resolved from a config (plan_inputs)
// or filled in directly (tests, docs).
struct PlanInputs {
  RunStage stage = RunStage::Adaptation;
  model::ModelConfig model;          // final shape: vocab_size includes an added [PAD]
  Precision precision = Precision::Fp32;
  int64_t world_size = 1;
  bool zero = false;                 // dist.zero: 1
  double bucket_mb = 25.0;           // dist.bucket_mb
  bool activation_checkpointing = false;
  int64_t batch_size = 1;            // sequences (reward: pairs) per micro-batch per rank
  int64_t seq_len = 512;
  int64_t grad_accum = 1;
  int64_t max_steps = 0;             // 0: the run is sized by epochs (unknown here)
  bool self_condition = true;        // diffusion.self_condition != none and prob > 0
  double self_condition_prob = 0.5;
  // Span rows N (positions whose logits are computed) as a fraction of
  // B x L; 1 = worst case (memory must hold the largest batch).
  double span_fraction = 1.0;
  std::vector<std::string> assumptions;  // printed with the plan
  std::string model_source;              // where the shape came from
};

// Reads the run config like the trainer does (model shape from model.path's
// config.json, a preset or the model.* keys; vocabulary grown by [PAD] when
// the tokenizer has none) and checks the combinations the trainer rejects.
struct PlanOptions {
  int64_t world_size = 1;
  std::string model_preset;  // non-empty: use this shape instead of model.path
  double span_fraction = 1.0;  // PlanInputs::span_fraction
};
PlanInputs plan_inputs(const config::Config& cfg, const PlanOptions& options);

// One line of the plan: a number of bytes (or FLOPs) and how it was computed.
struct PlanTerm {
  std::string key;      // stable name for --json ("weights", "adamw_states", ...)
  std::string label;    // "weights (fp32)"
  std::string phase;    // persistent | forward | backward | step | info
  double value = 0;     // bytes (memory terms) or FLOPs per token
  std::string formula;  // the inputs: "7241744384 params x 4 B"
};

// What one decoder layer keeps for backward, per token.
struct SavedTensor {
  std::string name;
  int64_t bytes_per_token = 0;
};
// `autocast`: bf16 autocast active while the layer runs (it is not during
// the backward recomputation of a checkpointed layer: tess's checkpoint
// recomputes without autocast).
std::vector<SavedTensor> layer_saved_tensors(const model::ModelConfig& m, Precision p, bool autocast);

struct MemoryPlan {
  PlanInputs in;
  int64_t parameters = 0;       // trained parameters
  int64_t owned_parameters = 0; // the most-loaded rank's AdamW share
  std::vector<PlanTerm> terms;  // memory terms (bytes)
  double persistent = 0, forward_peak = 0, backward_peak = 0, step_peak = 0;
  double forward_start_peak = 0;  // diffusion: the chunked input projection (+ self-conditioning logits)
  double total = 0;             // persistent + the largest of the four phases
  std::vector<PlanTerm> flops;  // FLOPs per token, by part
  double flops_per_token = 0;
  int64_t tokens_per_step = 0;  // global: batch x accum x world x tokens per sequence
  const PlanTerm* term(const std::string& key) const;
};

MemoryPlan estimate(const PlanInputs& in);

// Throughput at a given model FLOP utilisation of a given peak.
struct ThroughputPlan {
  double tokens_per_s_per_rank = 0, step_seconds = 0, total_seconds = 0;  // total 0: unknown (epochs)
};
ThroughputPlan throughput(const MemoryPlan& plan, double mfu, double peak_tflops);

// The readable report (fmt table) and the --json document. gpu_memory_gib
// 0 leaves out the fit check; peak_tflops 0 leaves out throughput.
std::string format_plan(const MemoryPlan& plan, double gpu_memory_gib, double mfu, double peak_tflops);
std::string plan_json(const MemoryPlan& plan, double gpu_memory_gib, double mfu, double peak_tflops);

}  // namespace tess::train
