#include "core/diffusion/diffusion_lm.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/diffusion/noise_scheduler.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/lm_head_loss.h"
#include "core/util/error.h"

namespace tess::diffusion {

const util::Choices<SelfCondition>& self_condition_choices() {
  static const util::Choices<SelfCondition> c("self-conditioning mode (diffusion.self_condition)",
                                              {{SelfCondition::None, "none"},
                                               {SelfCondition::LogitsMean, "logits_mean"},
                                               {SelfCondition::LogitsAddition, "logits_addition"},
                                               {SelfCondition::LogitsMax, "logits_max"},
                                               {SelfCondition::LogitsMultiply, "logits_multiply"}});
  return c;
}
SelfCondition parse_self_condition(const std::string& name) { return self_condition_choices().parse(name); }
const char* self_condition_name(SelfCondition mode) { return self_condition_choices().name(mode); }

namespace {
// Vocabulary-space arithmetic runs in fp32 (fp64 stays fp64, for gradient checks).
torch::Tensor at_least_fp32(const torch::Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? t : t.to(torch::kFloat32);
}
}  // namespace

SpanIndex SpanIndex::from_mask(const torch::Tensor& span_mask) {
  TORCH_CHECK(span_mask.dim() == 2, "span_mask must be [batch, length]");
  return from_positions(span_mask.to(torch::kBool).nonzero(), span_mask.size(1));  // row-major order
}

SpanIndex SpanIndex::from_positions(const torch::Tensor& positions, int64_t length) {
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 2, "span positions must be [N, 2]");
  SpanIndex s;
  s.batch = positions.select(1, 0).contiguous();
  s.pos = positions.select(1, 1).contiguous();
  s.flat = s.batch * length + s.pos;
  s.rows = positions.size(0);
  return s;
}

PromptCache::PromptCache(const torch::Tensor& span_mask, int64_t refresh_every, const DiffusionLayout& layout)
    : refresh_every_(refresh_every) {
  if (refresh_every < 1) throw Error(fmt::format("prompt cache refresh interval must be >= 1, got {}", refresh_every));
  // Every pass a full one: at r = 1 nothing to prepare; under causal attention
  // the context never sees the span, but AttentionMemory is bidirectional only.
  if (refresh_every == 1 || layout.attention == model::Attention::Causal) return;
  auto span = span_mask.to(torch::kBool);
  int64_t b = span.size(0), l = span.size(1);
  // Active: a span position, or (shifted) one whose hidden state predicts the next span position.
  auto active = span.clone();
  if (layout.shift_labels) active.narrow(1, 0, l - 1).logical_or_(span.narrow(1, 1, l - 1));
  auto counts = active.sum(1).cpu();
  int64_t a = counts[0].item<int64_t>();
  usable_ = a > 0 && (counts == a).all().item<bool>();
  if (!usable_) return;
  positions_ = active.nonzero().select(1, 1).view({b, a}).contiguous();  // row-major: ascending per row
  column_ = torch::full({b, l}, -1, positions_.options());
  column_.scatter_(1, positions_, torch::arange(a, positions_.options()).expand({b, a}).contiguous());
}

bool PromptCache::refreshes(int64_t step) const { return !usable_ || step % refresh_every_ == 0; }

void PromptCache::keep_rows(const torch::Tensor& rows) {
  if (!usable_) return;
  auto r = rows.to(positions_.device());
  positions_ = positions_.index_select(0, r);
  column_ = column_.index_select(0, r);
  memory_.keep_rows(r);
}

DiffusionLMImpl::DiffusionLMImpl(model::Decoder dec, SelfCondition mode, bool embedding_grad, uint64_t seed)
    : mode_(mode), embedding_grad_(embedding_grad) {
  decoder = register_module("decoder", std::move(dec));
  const auto& c = decoder->config();
  timestep_embed = register_module("timestep_embed",
                                   torch::nn::Linear(torch::nn::LinearOptions(1, c.hidden_size).bias(false)));
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  timestep_embed->weight.normal_(0.0, c.initializer_range, gen);
  timestep_embed->to(decoder->embedding_weight().scalar_type());
}

void DiffusionLMImpl::load_extra_tensors(std::map<std::string, torch::Tensor> extra) {
  auto it = extra.find("timestep_embed.weight");
  if (it != extra.end()) {
    auto& w = timestep_embed->weight;
    if (it->second.sizes() != w.sizes())
      throw Error(fmt::format("timestep_embed.weight has shape {}, expected {}", c10::str(it->second.sizes()),
                              c10::str(w.sizes())));
    torch::NoGradGuard no_grad;
    w.copy_(it->second);
    extra.erase(it);
    timestep_embed_loaded_ = true;
  }
  if (!extra.empty())
    throw Error(fmt::format("checkpoint tensor '{}' is neither a decoder parameter nor timestep_embed.weight",
                            extra.begin()->first));
}

std::map<std::string, torch::Tensor> DiffusionLMImpl::extra_tensors() const {
  return {{"timestep_embed.weight", timestep_embed->weight.detach()}};
}

DiffusionLMImpl::PrevSource DiffusionLMImpl::prev_from_logits(const torch::Tensor& prev) {
  if (!prev.defined()) return {};
  return [prev](int64_t start, int64_t count) { return prev.narrow(0, start, count); };
}

torch::Tensor DiffusionLMImpl::hidden(const DiffusionInputs& in, const SpanIndex& span, const RowSource& noisy_rows,
                                      const PrevSource& prev, PromptCache* cache) {
  int64_t b = in.ids.size(0), l = in.ids.size(1);
  auto embeds = decoder->embed(in.ids);  // exact word embeddings: the clean context
  int64_t h = embeds.size(2);
  if (span.rows > 0) {
    const auto& weight = decoder->embedding_weight();
    auto e = embedding_grad_ ? weight : weight.detach();
    int64_t vocab = e.size(0);
    std::vector<torch::Tensor> chunks;
    for (int64_t start = 0; start < span.rows; start += kRowChunk) {
      int64_t count = std::min(kRowChunk, span.rows - start);
      auto p = torch::softmax(at_least_fp32(noisy_rows(start, count)), -1);
      if (mode_ != SelfCondition::None) {
        // The previous prediction as probabilities; absent = uniform.
        auto q = prev ? torch::softmax(at_least_fp32(prev(start, count)), -1)
                                : torch::full_like(p, 1.0 / static_cast<double>(vocab));
        switch (mode_) {
          case SelfCondition::LogitsMean: p = (p + q) * 0.5; break;
          case SelfCondition::LogitsAddition: p = p + q; break;
          case SelfCondition::LogitsMax: p = torch::maximum(p, q); break;
          case SelfCondition::LogitsMultiply: p = p * q; break;
          case SelfCondition::None: break;
        }
      }
      chunks.push_back(torch::matmul(p.to(e.scalar_type()), e));
    }
    auto span_embeds = chunks.size() == 1 ? chunks[0] : torch::cat(chunks, 0);
    // The time embedding goes on span positions only (time 0 elsewhere).
    auto t = in.time.to(embeds.device()).index_select(0, span.batch).unsqueeze(1).to(span_embeds.scalar_type());
    span_embeds = span_embeds + timestep_embed(t);
    embeds = embeds.reshape({b * l, h}).index_copy(0, span.flat, span_embeds.to(embeds.scalar_type())).view({b, l, h});
  }
  model::ForwardOptions opt;
  opt.attention = layout.attention;
  opt.key_mask = in.key_mask;
  if (cache && cache->usable_) {
    opt.memory = &cache->memory_;
    if (cache->partial()) {
      opt.positions = cache->positions_.to(embeds.device());
      embeds = embeds.gather(1, opt.positions.unsqueeze(2).expand({b, opt.positions.size(1), h}));
      ++cache->partial_passes_;
    } else {
      cache->memory_.clear();
      ++cache->full_passes_;
    }
  } else if (cache) {
    ++cache->full_passes_;
  }
  return decoder->hidden_states(embeds, opt);
}

torch::Tensor DiffusionLMImpl::predictor_pos(const torch::Tensor& pos) const {
  return layout.shift_labels ? (pos - 1).clamp_min(0) : pos;
}

torch::Tensor predicted_weights(const torch::Tensor& pos, bool shift_labels) {
  return shift_labels ? (pos > 0).to(torch::kFloat32) : torch::ones(pos.sizes(), pos.options().dtype(torch::kFloat32));
}

torch::Tensor DiffusionLMImpl::predicted(const torch::Tensor& pos) const {
  return predicted_weights(pos, layout.shift_labels);
}

torch::Tensor DiffusionLMImpl::predictor_rows(const torch::Tensor& hs, const SpanIndex& span) {
  int64_t b = hs.size(0), l = hs.size(1);
  // Shifted labels: the hidden state at j - 1 predicts the token at j.
  auto source = span.batch * l + predictor_pos(span.pos);
  return hs.reshape({b * l, hs.size(2)}).index_select(0, source);
}

torch::Tensor DiffusionLMImpl::predictor_states(const DiffusionInputs& in, const SpanIndex& span,
                                                const RowSource& noisy_rows, const torch::Tensor& prev) {
  return predictor_rows(hidden(in, span, noisy_rows, prev_from_logits(prev)), span);
}

torch::Tensor DiffusionLMImpl::head(const torch::Tensor& states, const torch::Tensor& pos) {
  auto logits = decoder->logits(states);
  if (!layout.shift_labels) return logits;
  return logits * predicted(pos).to(logits.scalar_type()).unsqueeze(1);  // nothing predicts position 0
}

torch::Tensor DiffusionLMImpl::span_logits(const DiffusionInputs& in, const SpanIndex& span,
                                           const RowSource& noisy_rows, const torch::Tensor& prev,
                                           PromptCache* cache) {
  bool partial = cache && cache->partial();
  auto states = hidden(in, span, noisy_rows, prev_from_logits(prev), cache);  // partial: [B, A, H]
  if (!partial) return head(predictor_rows(states, span), span.pos);
  // The predicting position of each span token, as a column of the active positions.
  auto column = cache->column_.to(span.pos.device()).index({span.batch, predictor_pos(span.pos)});
  auto rows = states.reshape({-1, states.size(2)}).index_select(0, span.batch * states.size(1) + column);
  return head(rows, span.pos);
}

torch::Tensor DiffusionLMImpl::span_loss(const DiffusionInputs& in, const SpanIndex& span,
                                         const RowSource& noisy_rows, const torch::Tensor& labels,
                                         const torch::Tensor& prev_states) {
  PrevSource prev;
  if (prev_states.defined()) {
    // span_logits of the previous pass, one chunk at a time, without a graph.
    prev = [this, &span, states = prev_states.detach()](int64_t start, int64_t count) {
      torch::NoGradGuard no_grad;
      return head(states.narrow(0, start, count), span.pos.narrow(0, start, count));
    };
  }
  auto states = predictor_rows(hidden(in, span, noisy_rows, prev), span);
  auto counted = predicted(span.pos);
  return model::lm_head_cross_entropy(states, decoder->lm_head_weight(), labels, counted);
}

torch::Tensor DiffusionLMImpl::full_logits(const DiffusionInputs& in, const SpanIndex& span,
                                           const RowSource& noisy_rows, const torch::Tensor& prev) {
  auto logits = decoder->logits(hidden(in, span, noisy_rows, prev_from_logits(prev)));
  if (!layout.shift_labels) return logits;
  auto zero = torch::zeros_like(logits.narrow(1, 0, 1));
  return torch::cat({zero, logits.narrow(1, 0, logits.size(1) - 1)}, 1);
}

NoiseSettings read_noise_settings(const std::map<std::string, std::string>& extra, const std::string& source) {
  NoiseSettings n;
  auto where = [&](const char* key) { return fmt::format("{}: {}", source, key); };
  if (auto it = extra.find("simplex_value"); it != extra.end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_number() || j.get<double>() <= 0)
      throw Error(fmt::format("{} must be a positive number, got {}", where("simplex_value"), it->second));
    n.simplex_value = j.get<double>();
  }
  if (auto it = extra.find("noise_schedule"); it != extra.end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_string()) throw Error(fmt::format("{} must be a string, got {}", where("noise_schedule"), it->second));
    n.schedule = j.get<std::string>();
    try {
      parse_schedule(n.schedule);
    } catch (const Error& e) {
      throw Error(fmt::format("{}: {}", where("noise_schedule"), e.what()));
    }
  }
  if (auto it = extra.find("diffusion_timesteps"); it != extra.end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_number_integer() || j.get<int64_t>() < 1)
      throw Error(fmt::format("{} must be a positive integer, got {}", where("diffusion_timesteps"), it->second));
    n.timesteps = j.get<int64_t>();
  }
  return n;
}

DiffusionLayout read_layout(const std::map<std::string, std::string>& extra, const std::string& source) {
  DiffusionLayout layout;
  if (auto it = extra.find("diffusion_attention"); it != extra.end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_string() || (j != "causal" && j != "bidirectional"))
      throw Error(fmt::format("{}: diffusion_attention must be \"causal\" or \"bidirectional\", got {}", source,
                              it->second));
    layout.attention = model::parse_attention(j.get<std::string>());
  }
  if (auto it = extra.find("shift_labels"); it != extra.end()) {
    auto j = nlohmann::json::parse(it->second, nullptr, false);
    if (!j.is_boolean()) throw Error(fmt::format("{}: shift_labels must be true or false, got {}", source, it->second));
    layout.shift_labels = j.get<bool>();
  }
  return layout;
}

DiffusionLM load_diffusion_lm(const std::filesystem::path& dir, std::optional<SelfCondition> mode_override,
                              bool embedding_grad, std::optional<std::string> dtype, uint64_t seed) {
  model::LoadOptions lo;
  lo.dtype = dtype;
  auto loaded = model::load_hf_model(dir, lo);
  SelfCondition mode = SelfCondition::LogitsMean;
  const auto& extra = loaded.decoder->config().extra;
  if (auto it = extra.find("self_condition"); it != extra.end() && it->second != "null") {
    auto text = it->second;
    if (text.size() < 2 || text.front() != '"')
      throw Error(fmt::format("{}/config.json: self_condition must be a string, got {}", dir.string(), text));
    mode = parse_self_condition(text.substr(1, text.size() - 2));
  }
  if (mode_override) mode = *mode_override;
  DiffusionLM lm(loaded.decoder, mode, embedding_grad, seed);
  lm->load_extra_tensors(std::move(loaded.extra_tensors));
  lm->noise = read_noise_settings(extra, (dir / "config.json").string());
  lm->layout = read_layout(extra, (dir / "config.json").string());
  return lm;
}

model::HfModelImage diffusion_lm_image(DiffusionLMImpl& model) {
  auto image = model::hf_model_image(*model.decoder, model.extra_tensors());
  auto& config = image.config;
  config.attention = model.layout.attention;
  // Written only for an ablation, so that the reference's layout leaves config.json as before.
  if (model.layout.attention == model::Attention::Causal) config.extra["diffusion_attention"] = "\"causal\"";
  else config.extra.erase("diffusion_attention");
  if (!model.layout.shift_labels) config.extra["shift_labels"] = "false";
  else config.extra.erase("shift_labels");
  config.extra["self_condition"] = fmt::format("\"{}\"", self_condition_name(model.self_condition()));
  config.extra["simplex_value"] = nlohmann::json(model.noise.simplex_value).dump();
  config.extra["noise_schedule"] = nlohmann::json(model.noise.schedule).dump();
  config.extra["diffusion_timesteps"] = std::to_string(model.noise.timesteps);
  return image;
}

void save_diffusion_lm(const std::filesystem::path& dir, DiffusionLMImpl& model, uint64_t max_shard_bytes) {
  auto image = diffusion_lm_image(model);
  image.max_shard_bytes = max_shard_bytes;
  image.write(dir);
}

}  // namespace tess::diffusion
