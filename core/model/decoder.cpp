#include "core/model/decoder.h"

#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "core/util/autocast.h"
#include "core/util/error.h"

namespace tess::model {
namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------
KVCache::KVCache(const ModelConfig& config, int64_t batch, int64_t max_len,
                 const torch::TensorOptions& options)
    : capacity_(max_len) {
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    keys_.push_back(torch::empty({batch, config.num_key_value_heads, max_len, config.resolved_head_dim()}, options));
    values_.push_back(torch::empty_like(keys_.back()));
  }
}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int64_t layer, const torch::Tensor& k,
                                                        const torch::Tensor& v) {
  int64_t t = k.size(2);
  if (length_ + t > capacity_)
    throw Error(fmt::format("KV cache overflow: {} cached + {} new positions > capacity {}", length_, t, capacity_));
  keys_[layer].narrow(2, length_, t).copy_(k);
  values_[layer].narrow(2, length_, t).copy_(v);
  return {keys_[layer].narrow(2, 0, length_ + t), values_[layer].narrow(2, 0, length_ + t)};
}

void AttentionMemory::clear() {
  keys_.clear();
  values_.clear();
}

void AttentionMemory::keep_rows(const torch::Tensor& rows) {
  for (auto* stored : {&keys_, &values_})
    for (auto& t : *stored) t = t.index_select(0, rows.to(t.device()));
}

std::pair<torch::Tensor, torch::Tensor> AttentionMemory::attend(int64_t layer, const torch::Tensor& k,
                                                                const torch::Tensor& v,
                                                                const torch::Tensor& positions) {
  auto l = static_cast<size_t>(layer);
  if (!positions.defined()) {
    if (keys_.size() <= l) keys_.resize(l + 1), values_.resize(l + 1);
    keys_[l] = k;
    values_[l] = v;
    return {k, v};
  }
  if (keys_.size() <= l || !keys_[l].defined())
    throw Error("a partial attention pass needs a recording pass first (AttentionMemory is empty)");
  // The recomputed positions' keys/values replace the recorded ones in place:
  // the next partial pass overwrites the same positions again.
  auto index = positions.to(k.device()).view({k.size(0), 1, positions.size(1), 1}).expand_as(k);
  keys_[l].scatter_(2, index, k);
  values_[l].scatter_(2, index, v);
  return {keys_[l], values_[l]};
}

// ---------------------------------------------------------------------------
RMSNormImpl::RMSNormImpl(int64_t size, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({size}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // At least fp32 (HF upcasts bf16/fp16); fp64 stays fp64 for gradient checks.
  auto h = x.scalar_type() == torch::kFloat64 ? x : x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return weight * h.to(x.scalar_type());
}

torch::Tensor rope_inv_freq(int64_t head_dim, double theta) {
  auto exponents = torch::arange(0, head_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(head_dim);
  return 1.0 / torch::pow(theta, exponents);
}

torch::Tensor rope_inv_freq(const ModelConfig& config) {
  auto inv_freq = rope_inv_freq(config.resolved_head_dim(), config.rope_theta);
  const RopeScaling& s = config.rope_scaling;
  if (s.type == "default") return inv_freq;
  if (s.type != "llama3") throw Error(fmt::format("rope scaling '{}' is not supported", s.type));
  // HF's _compute_llama3_parameters, operation for operation in fp32 (Python's
  // `scalar / tensor` is reciprocal(tensor) * scalar): wavelengths shorter
  // than original / high_freq_factor keep their frequency, longer than
  // original / low_freq_factor are divided by `factor`, and those between are
  // interpolated smoothly.
  auto old_context_len = static_cast<double>(s.original_max_position_embeddings);
  double low_freq_wavelen = old_context_len / s.low_freq_factor;
  double high_freq_wavelen = old_context_len / s.high_freq_factor;
  auto wavelen = torch::reciprocal(inv_freq) * (2 * M_PI);
  auto inv_freq_llama = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  auto smooth_factor =
      (torch::reciprocal(wavelen) * old_context_len - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  auto smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / s.factor + smooth_factor * inv_freq_llama;
  auto is_medium_freq = (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
  return torch::where(is_medium_freq, smoothed_inv_freq, inv_freq_llama);
}

std::pair<torch::Tensor, torch::Tensor> rope_tables(const torch::Tensor& positions, const torch::Tensor& inv_freq,
                                                    torch::ScalarType dtype) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq;  // [B|1, L, dim/2]
  auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  int64_t half = x.size(-1) / 2;
  auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

namespace {

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

// Reentrant activation checkpointing: forward without a graph, backward
// recomputes the layer with grad enabled (and the forward's autocast state)
// and back-propagates through it (parameter gradients accumulate as usual).
// The layers have no dropout, so the recomputation is exact.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               DecoderLayerImpl* layer, const LayerContext* lc) {
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = lc->cos;
    ctx->saved_data["sin"] = lc->sin;
    ctx->saved_data["mask"] = lc->mask;
    ctx->saved_data["is_causal"] = lc->is_causal;
    auto amp = util::AutocastState::current();
    ctx->saved_data["amp_cpu"] = amp.cpu;
    ctx->saved_data["amp_cuda"] = amp.cuda;
    ctx->saved_data["amp_cpu_dtype"] = static_cast<int64_t>(amp.cpu_dtype);
    ctx->saved_data["amp_cuda_dtype"] = static_cast<int64_t>(amp.cuda_dtype);
    // The layer outlives the graph (it is owned by the model being trained).
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    return layer->forward(x, *lc);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    LayerContext lc;
    lc.cos = ctx->saved_data["cos"].toTensor();
    lc.sin = ctx->saved_data["sin"].toTensor();
    lc.mask = ctx->saved_data["mask"].toTensor();
    lc.is_causal = ctx->saved_data["is_causal"].toBool();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    util::AutocastState forward_amp{ctx->saved_data["amp_cpu"].toBool(), ctx->saved_data["amp_cuda"].toBool(),
                              static_cast<at::ScalarType>(ctx->saved_data["amp_cpu_dtype"].toInt()),
                              static_cast<at::ScalarType>(ctx->saved_data["amp_cuda_dtype"].toInt())};
    auto outer = util::AutocastState::current();
    torch::Tensor out;
    {
      torch::AutoGradMode enable(true);
      forward_amp.apply();
      if (forward_amp.cpu || forward_amp.cuda) at::autocast::increment_nesting();
      try {
        out = layer->forward(x, lc);
      } catch (...) {
        if ((forward_amp.cpu || forward_amp.cuda) && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        outer.apply();
        throw;
      }
      if ((forward_amp.cpu || forward_amp.cuda) && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      outer.apply();
    }
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor()};
  }
};

// Which keys each query may see, as a bool mask [B|1, 1, Lq, Lk] (true =
// attend), or undefined when SDPA's is_causal (or nothing) says it all.
struct MaskPlan {
  torch::Tensor mask;
  bool is_causal = false;
};

MaskPlan plan_mask(bool causal, int64_t lq, int64_t lk, int64_t offset, int64_t window,
                   const torch::Tensor& key_mask, torch::Device device) {
  // The sliding window restricts causal attention only: bidirectional
  // attention is full, as HF (and the TESS 2 reference) run it.
  bool window_bites = causal && window > 0 && window < lk;
  bool explicit_mask = window_bites || key_mask.defined() || (causal && offset > 0 && lq > 1);
  if (!explicit_mask) return {torch::Tensor(), causal && lq > 1};
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  auto q = torch::arange(offset, offset + lq, opts).unsqueeze(1);
  auto k = torch::arange(0, lk, opts).unsqueeze(0);
  auto allowed = torch::ones({lq, lk}, torch::TensorOptions().dtype(torch::kBool).device(device));
  if (causal) allowed = allowed & (k <= q);
  if (window_bites) allowed = allowed & ((q - k) < window);
  auto mask = allowed.view({1, 1, lq, lk});
  if (key_mask.defined()) {
    if (key_mask.dim() != 2 || key_mask.size(1) != lk)
      throw Error(fmt::format("key_mask must be [batch, {}], got {}", lk, c10::str(key_mask.sizes())));
    mask = mask & key_mask.to(torch::kBool).view({key_mask.size(0), 1, 1, lk});
    // A query whose keys are all padding still sees itself: no all-masked
    // row, so no NaN that could leak through 0 * NaN into real positions.
    mask = mask | (k == q).view({1, 1, lq, lk});
  }
  return {mask, false};
}

}  // namespace

// ---------------------------------------------------------------------------
SelfAttentionImpl::SelfAttentionImpl(const ModelConfig& c, int64_t layer_index)
    : heads_(c.num_attention_heads),
      kv_heads_(c.num_key_value_heads),
      head_dim_(c.resolved_head_dim()),
      layer_(layer_index) {
  // Qwen2 has biases on q/k/v (not on o_proj); Llama and Mistral have none.
  auto qkv = [&](int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, out).bias(c.qkv_bias()));
  };
  q_proj = register_module("q_proj", qkv(heads_ * head_dim_));
  k_proj = register_module("k_proj", qkv(kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", qkv(kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", linear(heads_ * head_dim_, c.hidden_size));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const LayerContext& ctx) {
  int64_t b = x.size(0), l = x.size(1);
  auto q = q_proj(x).view({b, l, heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({b, l, kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({b, l, kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, ctx.cos, ctx.sin);
  k = apply_rope(k, ctx.cos, ctx.sin);
  if (ctx.cache) std::tie(k, v) = ctx.cache->append(layer_, k, v);
  if (ctx.memory) std::tie(k, v) = ctx.memory->attend(layer_, k, v, ctx.positions);
  std::optional<torch::Tensor> mask;
  if (ctx.mask.defined()) mask = ctx.mask;
  auto out = at::scaled_dot_product_attention(q, k, v, mask, 0.0, ctx.is_causal, std::nullopt,
                                              /*enable_gqa=*/kv_heads_ != heads_);
  return o_proj(out.transpose(1, 2).reshape({b, l, heads_ * head_dim_}));
}

MLPImpl::MLPImpl(const ModelConfig& c) {
  gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  return down_proj(F::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, int64_t layer_index) {
  self_attn = register_module("self_attn", SelfAttention(c, layer_index));
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const LayerContext& ctx) {
  auto h = x + self_attn->forward(input_layernorm(x), ctx);
  return h + mlp(post_attention_layernorm(h));
}

DecoderBodyImpl::DecoderBodyImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c, i));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

// ---------------------------------------------------------------------------
DecoderImpl::DecoderImpl(const ModelConfig& config, uint64_t seed) : config_(config) {
  config_.validate("model config");
  body = register_module("model", DecoderBody(config_));
  if (!config_.tie_word_embeddings)
    lm_head = register_module("lm_head", linear(config_.hidden_size, config_.vocab_size));

  inv_freq_ = rope_inv_freq(config_);

  // HF's initialisation, from one seeded generator in registration order.
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : named_parameters()) {
    if (p.key().find("norm") != std::string::npos) continue;  // RMSNorm weights stay 1
    if (p.key().size() > 5 && p.key().compare(p.key().size() - 5, 5, ".bias") == 0) {
      p.value().zero_();  // HF zeroes Linear biases (Qwen2's q/k/v)
      continue;
    }
    p.value().normal_(0.0, config_.initializer_range, gen);
  }
  if (config_.pad_token_id >= 0) body->embed_tokens->weight[config_.pad_token_id].zero_();
  auto dtype = config_.torch_dtype == "bfloat16" ? torch::kBFloat16
               : config_.torch_dtype == "float16" ? torch::kFloat16 : torch::kFloat32;
  if (dtype != torch::kFloat32) to(dtype);
}

const torch::Tensor& DecoderImpl::lm_head_weight() const {
  return lm_head ? lm_head->weight : body->embed_tokens->weight;
}

torch::Tensor DecoderImpl::embed(const torch::Tensor& ids) { return body->embed_tokens(ids); }

std::pair<torch::Tensor, torch::Tensor> DecoderImpl::rotary(const torch::Tensor& position_ids, int64_t length,
                                                            int64_t offset, torch::ScalarType dtype) {
  auto device = body->embed_tokens->weight.device();
  if (inv_freq_.device() != device) inv_freq_ = inv_freq_.to(device);
  auto pos = position_ids.defined()
                 ? position_ids.to(device)
                 : torch::arange(offset, offset + length, torch::TensorOptions().dtype(torch::kInt64).device(device))
                       .unsqueeze(0);
  return rope_tables(pos, inv_freq_, dtype);
}

torch::Tensor DecoderImpl::hidden_states(const torch::Tensor& embeds, const ForwardOptions& opt) {
  TORCH_CHECK(embeds.dim() == 3, "hidden_states expects [batch, length, hidden] embeddings");
  int64_t l = embeds.size(1);
  bool causal = opt.attention.value_or(config_.attention) == Attention::Causal;
  if (opt.cache && !causal) throw Error("a KV cache needs causal attention (bidirectional attention sees the future)");
  if (opt.memory && causal) throw Error("an attention memory is for bidirectional passes (causal decoding has KVCache)");
  bool partial = opt.memory && opt.positions.defined();
  if (opt.positions.defined() && (!opt.memory || opt.positions.dim() != 2 || opt.positions.size(1) != l))
    throw Error(fmt::format("positions must be [batch, {}] and come with an attention memory", l));
  int64_t offset = opt.cache ? opt.cache->length() : 0;
  if (opt.position_ids.defined() && (opt.position_ids.dim() != 2 || opt.position_ids.size(1) != l))
    throw Error(fmt::format("position_ids must be [batch, {}]", l));

  LayerContext ctx;
  const auto& rope_positions = opt.position_ids.defined() || !partial ? opt.position_ids : opt.positions;
  std::tie(ctx.cos, ctx.sin) = rotary(rope_positions, l, offset, embeds.scalar_type());
  if (partial) {
    // Queries at `positions` see every key that is not padding (they are never padding themselves).
    if (opt.key_mask.defined())
      ctx.mask = opt.key_mask.to(torch::kBool).view({opt.key_mask.size(0), 1, 1, opt.key_mask.size(1)});
  } else {
    auto plan = plan_mask(causal, l, offset + l, offset, config_.sliding_window, opt.key_mask, embeds.device());
    ctx.mask = plan.mask;
    ctx.is_causal = plan.is_causal;
  }
  ctx.cache = opt.cache;
  ctx.memory = opt.memory;
  ctx.positions = opt.positions;

  bool checkpoint = checkpointing_ && is_training() && torch::GradMode::is_enabled() && !opt.cache && !opt.memory;
  auto x = embeds;
  for (const auto& module : *body->layers) {
    auto* layer = module->as<DecoderLayerImpl>();
    x = checkpoint ? CheckpointedLayer::apply(x, layer, &ctx) : layer->forward(x, ctx);
  }
  if (opt.cache) opt.cache->advance(l);
  return body->norm(x);
}

torch::Tensor DecoderImpl::logits(const torch::Tensor& hidden) {
  return lm_head ? lm_head(hidden) : F::linear(hidden, body->embed_tokens->weight);
}

torch::Tensor DecoderImpl::forward(const torch::Tensor& ids, const ForwardOptions& options) {
  return logits(hidden_states(embed(ids), options));
}

void DecoderImpl::resize_vocab(int64_t new_size) {
  if (new_size <= 0) throw Error(fmt::format("vocabulary size must be positive, got {}", new_size));
  int64_t old_size = config_.vocab_size;
  if (new_size == old_size) return;
  torch::NoGradGuard no_grad;
  auto grow = [&](torch::Tensor& weight) {
    auto resized = torch::empty({new_size, weight.size(1)}, weight.options());
    int64_t keep = std::min(old_size, new_size);
    resized.narrow(0, 0, keep).copy_(weight.narrow(0, 0, keep));
    if (new_size > old_size)
      resized.narrow(0, old_size, new_size - old_size)
          .copy_(weight.to(torch::kFloat32).mean(0, true).expand({new_size - old_size, weight.size(1)}));
    weight.set_data(resized);
  };
  grow(body->embed_tokens->weight);
  if (lm_head) grow(lm_head->weight);
  config_.vocab_size = new_size;
}

}  // namespace tess::model
