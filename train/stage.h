#pragma once
// A training stage is what differs between `run.stage`s: the model it
// trains, the data it reads and the loss of one micro-batch. The Trainer owns
// everything else (optimizer, schedule, accumulation, data parallelism,
// checkpoints, metrics). The two diffusion stages are one class over two
// data sources: they share the DiffusionLoss and the NoiseScheduler.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "train/adamw.h"

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

// One micro-batch, already on the training device.
struct MicroBatch {
  at::Tensor ids;        // int64 [B, L]
  at::Tensor span_mask;  // bool [B, L]: noised/generated positions (diffusion) or target positions (AR)
  int64_t tokens = 0;    // tokens this micro-batch's loss is summed over
  // Its place in the optimizer step's global batch: micro-batch k of rank r
  // is slot k * world_size + r, which is also where its samples sit in the
  // step's share of the data order. Each slot draws from random streams of
  // its own, so a step computes the same thing however its slots are spread
  // over processes and accumulation (2 processes x 1 = 1 process x 2
  // micro-batches). -1: a validation batch (streams of its own, the same at
  // every evaluation).
  int64_t slot = -1;
};

struct LossTerms {
  at::Tensor sum;      // scalar: summed per-token loss
  int64_t tokens = 0;  // its token count
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
  // Optional validation batches (empty when no validation data).
  virtual std::vector<MicroBatch> validation_batches(int64_t count) { return {}; }

  // Everything random or positional the stage owns (stream states of this
  // rank's slots, loader position), as of the last batch handed out, which
  // must end an optimizer step; restored exactly on resume from
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

}  // namespace tess::train
