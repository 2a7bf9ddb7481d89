#pragma once
// The diffusion head around a decoder (docs/diffusion.md, method.md 3-4).
//
// Input: at span positions (span_mask = 1) the model sees
//   softmax(x_t) [mixed with softmax(prev) by the self-conditioning mode]
//   @ E + W_t * (t / T)
// and at context positions the exact word embedding E[id]. Attention is
// bidirectional. Output is shifted: the logits of position j come from the
// hidden state at j - 1 (row 0 is zero), so the pretrained LM head is reused.
// Both are the reference's; the paper's ablations (causal attention,
// unshifted labels) are a DiffusionLayout, saved with the model.
//
// Everything in vocabulary space happens only on span rows and in chunks of
// rows: the noisy simplex rows are produced by a RowSource when they are
// consumed, turned into probabilities and projected through E, so no
// [B, L, V] tensor exists beyond one chunk. With E used without gradient on
// this path (the reference's behaviour, diffusion.embedding_grad = false)
// nothing of it is kept for backward either.
#include <filesystem>
#include <functional>
#include <optional>
#include <map>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "core/model/decoder.h"
#include "core/model/hf_checkpoint.h"
#include "core/util/choices.h"

namespace tess::diffusion {

enum class SelfCondition { None, LogitsMean, LogitsAddition, LogitsMax, LogitsMultiply };
const util::Choices<SelfCondition>& self_condition_choices();  // diffusion.self_condition
SelfCondition parse_self_condition(const std::string& name);
const char* self_condition_name(SelfCondition mode);

// Where the span rows are: row r of every [N, ...] span tensor is position
// (batch[r], pos[r]); rows are in row-major order of span_mask.
struct SpanIndex {
  torch::Tensor batch, pos, flat;  // int64 [N]; flat = batch * L + pos
  int64_t rows = 0;
  static SpanIndex from_mask(const torch::Tensor& span_mask);  // bool [B, L]
  // From the mask's nonzero() (int64 [N, 2]) and the row length: no data-dependent op.
  static SpanIndex from_positions(const torch::Tensor& positions, int64_t length);
};

// Produces noisy simplex logits x_t for span rows [start, start + count),
// fp32 [count, V]. Called with increasing, contiguous ranges.
using RowSource = std::function<torch::Tensor(int64_t start, int64_t count)>;

struct DiffusionInputs {
  torch::Tensor ids;        // int64 [B, L]: context ids are used as is; span ids are ignored
  torch::Tensor span_mask;  // bool [B, L]
  torch::Tensor time;       // fp32 [B]: t / T of each sequence
  torch::Tensor key_mask;   // optional bool [B, L]: false = padding nobody attends to
};

// The paper's ablations of the recipe (model.attention: causal and
// diffusion.shift_labels: false in a diffusion stage). Unshifted, the hidden
// state at j predicts the token at j itself (position 0 too).
struct DiffusionLayout {
  model::Attention attention = model::Attention::Bidirectional;
  bool shift_labels = true;
  bool operator==(const DiffusionLayout& o) const { return attention == o.attention && shift_labels == o.shift_labels; }
};

// The span tokens (at positions `pos`) a prediction exists for, as fp32 0/1
// weights: shifted labels leave a token at position 0 unpredicted (nothing
// precedes it); unshifted, every position predicts its own token.
torch::Tensor predicted_weights(const torch::Tensor& pos, bool shift_labels);

// The noise a diffusion model was trained with: sampling and likelihood
// scoring must use the same simplex value k and schedule, so they travel with
// the weights (config.json keys "simplex_value", "noise_schedule",
// "diffusion_timesteps"). A directory without them (the released TESS 2
// checkpoints) gets the reference's values, the defaults here.
struct NoiseSettings {
  double simplex_value = 5.0;
  std::string schedule = "cosine_improved";  // a diffusion.schedule name
  int64_t timesteps = 5000;                  // training T
  bool operator==(const NoiseSettings& o) const {
    return simplex_value == o.simplex_value && schedule == o.schedule && timesteps == o.timesteps;
  }
};

// From an HF config's extra keys (ModelConfig::extra); `source` names the file in errors.
// "diffusion_attention" ("causal"; absent = bidirectional) and "shift_labels" (absent = true).
DiffusionLayout read_layout(const std::map<std::string, std::string>& config_extra, const std::string& source);
NoiseSettings read_noise_settings(const std::map<std::string, std::string>& config_extra, const std::string& source);

// The sampler's approximate prompt cache (sample.cache_refresh = r). Context
// positions enter with clean embeddings that never change; only through
// bidirectional attention do their deeper states drift as the span changes.
// A refresh pass runs the whole sequence and records every layer's keys and
// values; the passes between refreshes run the layers over the "active"
// positions only -- the span and the positions whose hidden states predict
// it (the shift: the last context position) -- attending to the recorded
// keys/values of the rest. The first pass and every r-th one refresh, so
// r = 1 is today's sampler exactly. Batches whose rows have different
// numbers of active positions run full passes only (usable() is false).
class PromptCache {
 public:
  // Causal attention (an ablation) makes every pass a full one.
  PromptCache(const torch::Tensor& span_mask, int64_t refresh_every, const DiffusionLayout& layout = {});
  bool usable() const { return usable_; }
  // Before step `step`'s pass: whether that pass recomputes everything.
  bool refreshes(int64_t step) const;
  void begin_step(int64_t step) { refresh_ = refreshes(step); }
  void keep_rows(const torch::Tensor& rows);  // int64: the batch rows that remain (adaptive stopping)
  int64_t full_passes() const { return full_passes_; }
  int64_t partial_passes() const { return partial_passes_; }

 private:
  friend class DiffusionLMImpl;
  bool partial() const { return usable_ && !refresh_ && memory_.recorded(); }
  model::AttentionMemory memory_;
  torch::Tensor positions_;  // int64 [B, A]: the active positions of each row, ascending
  torch::Tensor column_;     // int64 [B, L]: a position's column in positions_, -1 if not active
  int64_t refresh_every_;
  bool usable_ = false, refresh_ = true;
  int64_t full_passes_ = 0, partial_passes_ = 0;
};

class DiffusionLMImpl : public torch::nn::Module {
 public:
  DiffusionLMImpl(model::Decoder decoder, SelfCondition mode, bool embedding_grad, uint64_t seed = 0);

  // Logits of every span token, [N, V] in span-row order (the row of a token
  // at position 0 is zero: nothing predicts it). `prev` holds the previous
  // prediction for the same rows ([N, V] logits) or is undefined (= zeros,
  // i.e. uniform probabilities). With a prompt cache the pass records into
  // it or reuses it, as the cache says.
  torch::Tensor span_logits(const DiffusionInputs& in, const SpanIndex& span, const RowSource& noisy_rows,
                            const torch::Tensor& prev = {}, PromptCache* cache = nullptr);

  // Summed cross-entropy of the span tokens against `labels` [N] (a token at
  // position 0 is not counted: nothing predicts it), through the fused,
  // chunked LM-head loss (model/lm_head_loss.h): the training loss, without
  // the [N, V] logits ever existing. The previous prediction comes as the
  // self-conditioning pass's predictor_states [N, H] (or undefined): its
  // logits are computed chunk by chunk where the input path consumes them,
  // so no [N, V] tensor lives through the graded pass either. Same value as
  // span_cross_entropy(span_logits(..., prev logits of those states)).
  torch::Tensor span_loss(const DiffusionInputs& in, const SpanIndex& span, const RowSource& noisy_rows,
                          const torch::Tensor& labels, const torch::Tensor& prev_states = {});

  // The hidden state that predicts each span token, [N, H] (the shift: that
  // of position pos - 1; a token at position 0 gets position 0's, and its
  // logits are zeroed wherever they are used).
  torch::Tensor predictor_states(const DiffusionInputs& in, const SpanIndex& span, const RowSource& noisy_rows,
                                 const torch::Tensor& prev = {});

  // The same forward, returning the full shifted logits [B, L, V] (row 0 of
  // every sequence zero), as the reference's model returns them.
  torch::Tensor full_logits(const DiffusionInputs& in, const SpanIndex& span, const RowSource& noisy_rows,
                            const torch::Tensor& prev = {});

  // Which span tokens (at positions `pos`) a prediction exists for, as fp32
  // 0/1 weights: shifted, not one at position 0 (the stages' data never puts
  // position 0 in a span, so their token counts agree either way).
  torch::Tensor predicted(const torch::Tensor& pos) const;

  // Rows of vocabulary-space work per chunk (memory vs. kernel efficiency).
  static constexpr int64_t kRowChunk = 512;

  model::Decoder decoder{nullptr};
  torch::nn::Linear timestep_embed{nullptr};  // Linear(1 -> hidden, no bias), HF name "timestep_embed"
  NoiseSettings noise;  // what training used; saved with the model
  DiffusionLayout layout;  // the reference's unless an ablation; saved with the model
  SelfCondition self_condition() const { return mode_; }
  bool embedding_grad() const { return embedding_grad_; }

  // Loads a TESS 2 style checkpoint (or an AR one: timestep_embed is then
  // initialised as HF would, normal(0, initializer_range) from `seed`).
  // Extra tensors other than timestep_embed.weight are an error.
  void load_extra_tensors(std::map<std::string, torch::Tensor> extra);
  // Whether timestep_embed came from a checkpoint (a diffusion model) rather
  // than a fresh initialisation (an AR checkpoint about to be adapted).
  bool timestep_embed_loaded() const { return timestep_embed_loaded_; }
  std::map<std::string, torch::Tensor> extra_tensors() const;  // {"timestep_embed.weight": ...}

 private:
  // The previous prediction's logits of span rows [start, start + count);
  // empty = none (uniform probabilities).
  using PrevSource = std::function<torch::Tensor(int64_t start, int64_t count)>;
  static PrevSource prev_from_logits(const torch::Tensor& prev);
  // Hidden states [B, L, H], or [B, A, H] of the active positions on a
  // prompt cache's partial pass.
  torch::Tensor hidden(const DiffusionInputs& in, const SpanIndex& span, const RowSource& noisy_rows,
                       const PrevSource& prev, PromptCache* cache = nullptr);
  torch::Tensor predictor_rows(const torch::Tensor& hidden, const SpanIndex& span);
  // The position whose hidden state predicts the token at `pos`: pos - 1 (clamped at 0) when shifted, else pos.
  torch::Tensor predictor_pos(const torch::Tensor& pos) const;
  // The LM head on predicting rows at positions `pos`; shifted, zero where pos = 0.
  torch::Tensor head(const torch::Tensor& states, const torch::Tensor& pos);

  SelfCondition mode_;
  bool embedding_grad_;
  bool timestep_embed_loaded_ = false;
};
TORCH_MODULE(DiffusionLM);

// A diffusion model directory is an HF model directory whose config.json says
// "is_causal": false and "self_condition": MODE and whose weights include
// timestep_embed.weight (the layout of the released TESS 2 checkpoints).
// Loading an AR directory works too (stage 1 starts there): the mode then
// comes from `mode_override` (default logits_mean) and timestep_embed is
// freshly initialised from `seed`.
DiffusionLM load_diffusion_lm(const std::filesystem::path& dir, std::optional<SelfCondition> mode_override = {},
                              bool embedding_grad = false, std::optional<std::string> dtype = {}, uint64_t seed = 0);
void save_diffusion_lm(const std::filesystem::path& dir, DiffusionLMImpl& model, uint64_t max_shard_bytes = 0);
// What save_diffusion_lm writes.
model::HfModelImage diffusion_lm_image(DiffusionLMImpl& model);

}  // namespace tess::diffusion
