#pragma once
// Training and validation batches: fixed-length examples with a 0/1 mask per
// position, read from the three kinds of training data, and the background
// loader that turns the distributed data order into micro-batches. Knows no
// model and no trainer; a stage picks the kind of data it takes and whether
// its masks are UL2 spans (corpus text in stage 1) or the data's own
// (response tokens, preference read positions).
//
// Micro-batch slots: an optimizer step's global batch is world_size x
// grad_accum micro-batches; micro-batch k of rank r is slot k * world_size +
// r, which is also where its samples sit in the step's share of the data
// order. Every random stream of a micro-batch belongs to its slot, so a step
// computes the same thing however its slots are spread over processes and
// accumulation, and a checkpoint resumes exactly on any layout with the same
// slot count.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "data/loader.h"
#include "data/masking.h"

namespace tess::config {
class Config;
}
namespace tess::util {
class Rng;
}

namespace tess::data {

class Tokenizer;

// One micro-batch (on the CPU when the loader makes it).
struct Batch {
  at::Tensor ids;        // int64 [B, L]
  at::Tensor span_mask;  // bool [B, L]: noised/generated positions (diffusion) or target positions (AR)
  // span_mask.nonzero() (int64 [N, 2], row-major), made where the batch is
  // built so that the step on a device needs no data-dependent op.
  at::Tensor span_positions;
  int64_t tokens = 0;    // loss units: predicted span positions, or pairs of preference data
  int64_t slot = -1;     // the micro-batch slot (above); -1 for validation batches
};

// ---------------------------------------------------------------------------
// Training data kinds and the examples they give.

enum class DataKind {
  TokenShards,  // directories of `tess tokenize corpus`, packed into sequences
  Chat,         // chat JSONL (messages), Tulu template, span = the response
  Preferences,  // preference JSONL (prompt, chosen, rejected)
};
const char* data_kind_description(DataKind kind);  // "token-shard directories (tess tokenize corpus)", ...

class Examples {
 public:
  virtual ~Examples() = default;
  virtual int64_t size() const = 0;
  virtual int64_t seq_len() const = 0;
  // ids [n, L] and mask [n, L] (1 = span / target position) of `indices`.
  virtual void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const = 0;
  // What a batch's loss is averaged over: its predicted positions (position
  // 0 has no predictor), or pairs for preference data.
  virtual int64_t loss_units(const at::Tensor& span_mask) const;
};

// The examples of `inputs` (the config key `key` names them in errors), which
// must all be of one of the `accepted` kinds (the stage's), else an error
// naming the key, the input and what `stage` trains on. Token shards are
// read at `split` ("train" | "validation"); chat files have no splits.
// `text_hash`: the hash of the tokenizer's base vocabulary (shards made
// before the run added [PAD] still match).
std::shared_ptr<Examples> open_examples(const std::vector<std::string>& inputs, const std::vector<DataKind>& accepted,
                                        const std::string& stage, const config::Config& cfg, const Tokenizer& tok,
                                        const std::string& text_hash, const std::string& split, const char* key);

// How a batch's masks are made: nullptr = the examples' own masks; else the
// span masks of a [batch, length] batch (UL2 for corpus text).
using SpanMaskSource = std::function<SpanMaskBatch(int64_t batch, int64_t length)>;

// The batch of `indices` (training and validation alike).
Batch make_batch(const Examples& examples, const std::vector<int64_t>& indices, const SpanMaskSource& spans);

// Validation: the first `count` batches of `batch_size` examples in order,
// with SpanMasker::eval_batch masks when `eval_spans` (else the examples').
// With `eval_spans`, SpanMasker::eval_batch masks of that UL2 variant; without, the examples' own masks.
std::vector<Batch> validation_batches(const Examples& examples, int64_t batch_size, int64_t count,
                                      std::optional<config::Ul2Variant> eval_spans);

// ---------------------------------------------------------------------------
// Micro-batch slots and their random streams.

struct SlotLayout {
  int64_t world = 1, rank = 0, accum = 1;
  int64_t of(int64_t k) const { return k * world + rank; }  // the slot of this rank's micro-batch k
  int64_t total() const { return world * accum; }
};

// This rank's streams `name` ("noise", "span_mask", ...), one per slot it holds.
std::vector<util::Rng> slot_streams(uint64_t seed, const std::string& name, const SlotLayout& slots);

// The states of `streams` (util::Rng::state()).
std::vector<std::vector<uint8_t>> stream_states(const std::vector<util::Rng>& streams);
// This rank's stream states in its checkpoint metadata: "rng.<name>.slot<S>".
void save_slot_streams(std::map<std::string, std::string>& out, const std::string& name, const SlotLayout& slots,
                       const std::vector<std::vector<uint8_t>>& states);

// Restores this rank's streams `name` from the saved run's rank states (all
// ranks' metadata, rank order), whatever its layout was: with as many slots,
// every slot gets its own state back; with another count, slot s continues
// saved slot (s mod saved count). Checkpoints written before slots had
// streams of their own hold one "rng.<name>" per rank: rank r's is slot r's.
// Returns the saved run's slot count. Under the test mutation
// "resume_without_streams" nothing is restored.
int64_t load_slot_streams(const std::vector<std::map<std::string, std::string>>& rank_states,
                          const std::string& name, const SlotLayout& slots, const std::string& source,
                          std::vector<util::Rng>& streams);

// ---------------------------------------------------------------------------
// The background loader: data order -> examples -> (UL2 masks) -> Batch.

class BatchLoader {
 public:
  struct Options {
    DistributedSampler::Options sampler;
    SlotLayout slots;
    std::shared_ptr<const SpanMasker> masker;  // UL2 spans per slot's "span_mask" stream; null: the data's masks
    uint64_t seed = 0;
    int64_t prefetch = 2;  // batches made ahead on a background thread
  };
  BatchLoader(std::shared_ptr<const Examples> examples, Options options);
  ~BatchLoader();

  // The next micro-batch of this rank (slots in order: k = 0, 1, ... accum-1).
  Batch next();
  int64_t samples() const;

  // Loader position and span-mask streams as of the last batch handed out,
  // which must end an optimizer step; restored by load_state() from every
  // rank's saved metadata.
  std::map<std::string, std::string> state() const;
  void load_state(const std::vector<std::map<std::string, std::string>>& rank_states, const std::string& source);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tess::data
