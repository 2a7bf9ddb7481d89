#pragma once
// A training stage is what differs between `run.stage`s: the model it
// trains, the data it takes and the loss of one micro-batch. The Trainer owns
// everything else (optimizer, schedule, accumulation, data parallelism,
// checkpoints, metrics). One module per stage under train/stages/: ar,
// adaptation (token shards + UL2 span masks), instruction (chat + Tulu
// template, span = response) and reward; the two diffusion stages differ
// only in data and masking and share one DiffusionLoss over one
// NoiseScheduler (train/stages/diffusion_stage.h).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "data/batches.h"
#include "train/adamw.h"
#include "train/flops.h"

namespace torch::nn {
class Module;
}
namespace tess::config {
class Config;
}
namespace tess::checkpoint {
class DeferredCopies;
}

namespace tess::train {

// One micro-batch (data/batches.h), moved to the training device by the
// trainer; `slot` says which random streams its loss draws from.
using MicroBatch = data::Batch;

struct LossTerms {
  at::Tensor sum;      // scalar: summed per-token loss
  int64_t tokens = 0;  // its token count
  // Diffusion stages: the micro-batch's noised rows, whether it ran the
  // self-conditioning pass (its FLOPs), and the time of noise and of that
  // pass inside the loss (benchmarks).
  int64_t span_rows = 0;
  bool self_conditioned = false;
  double noise_s = 0, self_condition_s = 0;
};

// Where a run's components come from (rank, world size, accumulation, seed, device).
struct StageContext {
  int rank = 0;
  int world_size = 1;
  int64_t grad_accum = 1;  // micro-batches per rank and step
  uint64_t seed = 0;
  std::string device = "cpu";
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string name() const = 0;
  virtual torch::nn::Module& module() = 0;
  virtual std::vector<NamedParameter> parameters() = 0;  // HF names, decay flags set by the trainer

  // The next micro-batch of this rank (the loader runs ahead in the background).
  virtual MicroBatch next_batch() = 0;
  virtual LossTerms loss(const MicroBatch& batch) = 0;
  // The model FLOPs (train/flops.h) of `examples` rows of `row_len` tokens
  // (the batch's shape), `span_rows` of them noised, the self-conditioning
  // pass run at `self_condition_rate`.
  virtual StepFlops flops(int64_t examples, int64_t row_len, int64_t span_rows, double self_condition_rate) const = 0;
  // Optional validation batches (empty when no validation data).
  virtual std::vector<MicroBatch> validation_batches(int64_t count) { return {}; }

  // Everything random or positional the stage owns (stream states of this
  // rank's micro-batch slots, loader position), as of the last batch handed
  // out, which must end an optimizer step; restored exactly on resume from
  // `rank_states`, the state() of every rank of the saved run (rank order),
  // whatever its world size and accumulation were.
  virtual std::map<std::string, std::string> state() const = 0;
  virtual void load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                          const std::string& source) = 0;

  // Writes the model (and tokenizer) as an HF-layout directory. With a
  // `snapshot`, the weights the function writes are that snapshot's deferred
  // host copies, so it may run on another thread while training goes on
  // (asynchronous checkpoints); without, it writes the live weights.
  virtual std::function<void(const std::filesystem::path&)> model_writer(checkpoint::DeferredCopies* snapshot) = 0;
  void save_model(const std::filesystem::path& dir) { model_writer(nullptr)(dir); }
  virtual std::string tokenizer_hash() const = 0;
  virtual int64_t samples_per_epoch() const = 0;
};

// The stage `run.stage` names, built from the configuration (reads its keys).
std::unique_ptr<Stage> make_stage(const config::Config& cfg, const StageContext& ctx);
// What builds a run's stage: make_stage, or a test's own stage.
using StageFactory = std::function<std::unique_ptr<Stage>(const config::Config&, const StageContext&)>;

}  // namespace tess::train
