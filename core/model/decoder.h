#pragma once
// A Mistral/Llama-family decoder: token embedding, RMSNorm, rotary positions,
// grouped-query attention through scaled_dot_product_attention, SwiGLU MLP,
// final norm and LM head (tied or not). Modules are named exactly as HF's
// (model.embed_tokens, model.layers.N.self_attn.q_proj, ..., lm_head), so
// named_parameters() is the HF state dict.
//
// The decoder knows nothing of diffusion. The diffusion head feeds it input
// embeddings (embed() is separate from hidden_states()) and picks the
// attention mode per call: causal for AR models, bidirectional for diffusion.
#include <optional>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "core/model/model_config.h"

namespace tess::model {

// Keys and values of every layer for autoregressive decoding, preallocated
// for `max_len` positions so that each new token costs one write per layer.
class KVCache {
 public:
  KVCache(const ModelConfig& config, int64_t batch, int64_t max_len, const torch::TensorOptions& options);
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  void reset() { length_ = 0; }

  // Stores this call's k/v ([B, kv_heads, T, head_dim]) of `layer` after the
  // cached positions and returns views of all positions so far.
  std::pair<torch::Tensor, torch::Tensor> append(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);
  void advance(int64_t t) { length_ += t; }  // after all layers saw the call

 private:
  std::vector<torch::Tensor> keys_, values_;
  int64_t length_ = 0;
  int64_t capacity_ = 0;
};

// Keys and values of every position of one bidirectional pass, kept so that
// later passes over a few positions attend to them instead of recomputing
// the rest: the diffusion sampler's prompt cache. Approximate by design --
// the positions not recomputed keep the keys/values of the recording pass,
// although through attention they would have moved with the others.
class AttentionMemory {
 public:
  bool recorded() const { return !keys_.empty(); }
  void clear();
  void keep_rows(const torch::Tensor& rows);  // int64 [B']: the batch rows that remain
  // A recording pass (`positions` undefined) stores this layer's k/v
  // ([B, kv_heads, L, head_dim]) and returns them; a partial pass writes its
  // k/v ([B, kv_heads, A, head_dim]) at `positions` (int64 [B, A]) into the
  // stored ones and returns all L positions.
  std::pair<torch::Tensor, torch::Tensor> attend(int64_t layer, const torch::Tensor& k, const torch::Tensor& v,
                                                 const torch::Tensor& positions);

 private:
  std::vector<torch::Tensor> keys_, values_;
};

struct ForwardOptions {
  std::optional<Attention> attention;  // default: the model's own mode
  torch::Tensor position_ids;          // [B, L] int64; default cache length + 0..L-1
  torch::Tensor key_mask;              // [B, L_keys] bool, false = never attended (padding)
  KVCache* cache = nullptr;            // causal decoding with cached keys/values
  // Bidirectional passes that reuse keys/values: without `positions` the pass
  // runs every position and records into `memory`; with `positions` (int64
  // [B, A], ascending) the embeddings are those positions' only, the pass
  // computes them alone against the recorded rest, and returns [B, A, H].
  AttentionMemory* memory = nullptr;
  torch::Tensor positions;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t size, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // statistics in fp32, as HF
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Rotary position embedding (HF's default RoPE, fp32 math).
torch::Tensor rope_inv_freq(int64_t head_dim, double theta);  // [head_dim / 2]
// The model's frequencies: the above with config.rope_theta, then scaled as
// config.rope_scaling says (llama3: HF's _compute_llama3_parameters).
torch::Tensor rope_inv_freq(const ModelConfig& config);
// cos/sin tables [B|1, 1, L, head_dim] for positions [B|1, L], cast to `dtype`.
std::pair<torch::Tensor, torch::Tensor> rope_tables(const torch::Tensor& positions, const torch::Tensor& inv_freq,
                                                    torch::ScalarType dtype);
// x [B, heads, L, head_dim] rotated: x * cos + rotate_half(x) * sin.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// What every layer of one forward pass shares: rotary tables and the mask.
struct LayerContext {
  torch::Tensor cos, sin;  // [B or 1, 1, L, head_dim]
  torch::Tensor mask;      // bool [B or 1, 1, L, L_keys], true = attend; undefined = none
  bool is_causal = false;  // let SDPA apply the causal mask itself
  KVCache* cache = nullptr;
  AttentionMemory* memory = nullptr;
  torch::Tensor positions;  // a partial pass's positions (with memory)
};

class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(const ModelConfig& config, int64_t layer_index);
  torch::Tensor forward(const torch::Tensor& x, const LayerContext& ctx);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_, layer_;
};
TORCH_MODULE(SelfAttention);

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& config, int64_t layer_index);
  torch::Tensor forward(const torch::Tensor& x, const LayerContext& ctx);
  SelfAttention self_attn{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// HF's "model." prefix: embedding, layers and final norm.
class DecoderBodyImpl : public torch::nn::Module {
 public:
  explicit DecoderBodyImpl(const ModelConfig& config);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(DecoderBody);

class DecoderImpl : public torch::nn::Module {
 public:
  // Parameters are initialised as HF does (normal(0, initializer_range),
  // norms 1) from a generator seeded with `seed`: the same seed gives the
  // same model bit for bit.
  explicit DecoderImpl(const ModelConfig& config, uint64_t seed = 0);

  torch::Tensor embed(const torch::Tensor& ids);  // [B, L] -> [B, L, H]
  // Layers and final norm over input embeddings: [B, L, H] -> [B, L, H].
  torch::Tensor hidden_states(const torch::Tensor& embeds, const ForwardOptions& options = {});
  torch::Tensor logits(const torch::Tensor& hidden);  // LM head: [..., H] -> [..., V]
  torch::Tensor forward(const torch::Tensor& ids, const ForwardOptions& options = {});

  const torch::Tensor& embedding_weight() const { return body->embed_tokens->weight; }  // E [V, H]
  const torch::Tensor& lm_head_weight() const;

  // Recompute each layer's activations in backward instead of storing them.
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  bool activation_checkpointing() const { return checkpointing_; }

  // Grows (or shrinks) the vocabulary to `new_size`. New rows of the
  // embedding and of an untied LM head are the mean of the existing rows, so
  // new tokens start as an "average" token without any random draw.
  void resize_vocab(int64_t new_size);

  const ModelConfig& config() const { return config_; }
  ModelConfig& mutable_config() { return config_; }

  DecoderBody body{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  std::pair<torch::Tensor, torch::Tensor> rotary(const torch::Tensor& position_ids, int64_t length,
                                                 int64_t offset, torch::ScalarType dtype);
  ModelConfig config_;
  bool checkpointing_ = false;
  torch::Tensor inv_freq_;  // [head_dim / 2], fp32
};
TORCH_MODULE(Decoder);

}  // namespace tess::model
