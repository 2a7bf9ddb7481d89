#include "core/model/reward_model.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/model/hf_checkpoint.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::model {
namespace fs = std::filesystem;

RewardModelImpl::RewardModelImpl(Decoder decoder, uint64_t seed) : decoder_(std::move(decoder)) {
  register_module("model", decoder_->body);
  const auto& c = decoder_->config();
  score = register_module("score", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, 1).bias(false)));
  torch::NoGradGuard no_grad;
  util::Rng init(seed, "reward_score_init");
  score->weight.normal_(0.0, c.initializer_range, init.generator());
  score->to(decoder_->embedding_weight().scalar_type());
}

torch::Tensor RewardModelImpl::forward(const torch::Tensor& ids, const torch::Tensor& positions,
                                       const torch::Tensor& key_mask) {
  return forward_embeds(decoder_->embed(ids), positions, key_mask);
}

torch::Tensor RewardModelImpl::forward_embeds(const torch::Tensor& embeds, const torch::Tensor& positions,
                                              const torch::Tensor& key_mask) {
  if (positions.dim() != 1 || positions.size(0) != embeds.size(0))
    throw Error(fmt::format("reward model: expected one read position per row ({}), got shape {}", embeds.size(0),
                            c10::str(positions.sizes())));
  ForwardOptions opt;
  opt.attention = Attention::Causal;
  opt.key_mask = key_mask;
  auto hidden = decoder_->hidden_states(embeds, opt);  // [B, L, H]
  auto rows = torch::arange(embeds.size(0), positions.options().dtype(torch::kInt64));
  auto last = hidden.index({rows, positions.to(torch::kInt64)});  // [B, H]
  return score(last).squeeze(-1).to(torch::kFloat32);
}

torch::Tensor last_token_positions(const torch::Tensor& ids, int64_t pad_id) {
  auto real = (ids != pad_id).to(torch::kInt64);
  auto index = torch::arange(ids.size(1), ids.options().dtype(torch::kInt64));
  auto last = (real * index).argmax(1);  // rightmost non-PAD (0 for an all-PAD row)
  auto any_pad = (real == 0).any(1);
  return torch::where(any_pad, last, torch::full_like(last, ids.size(1) - 1));
}

namespace {
Error not_a_reward_model(const fs::path& dir) {
  return Error(fmt::format("{}: not a reward model (no score.weight; train one with run.stage: reward)", dir.string()));
}
}  // namespace

void require_reward_model(const fs::path& dir) {
  if (!SafetensorsCheckpoint(dir).contains("score.weight")) throw not_a_reward_model(dir);
}

RewardModel load_reward_model(const fs::path& dir, std::optional<std::string> dtype) {
  LoadOptions lo;
  lo.dtype = std::move(dtype);
  lo.body_only = true;
  auto loaded = load_hf_model(dir, lo);
  auto it = loaded.extra_tensors.find("score.weight");
  if (it == loaded.extra_tensors.end()) throw not_a_reward_model(dir);
  RewardModel rm(loaded.decoder);
  const auto& w = it->second;
  if (w.dim() != 2 || w.size(0) != 1 || w.size(1) != rm->config().hidden_size)
    throw Error(fmt::format("{}: score.weight has shape {}, expected [1, {}] (one score per sequence)", dir.string(),
                            c10::str(w.sizes()), rm->config().hidden_size));
  torch::NoGradGuard no_grad;
  rm->score->weight.copy_(w);
  loaded.extra_tensors.erase(it);
  loaded.extra_tensors.erase("lm_head.weight");  // a classifier saved with its LM head
  if (!loaded.extra_tensors.empty())
    throw Error(fmt::format("{}: unexpected tensor '{}' in a reward model", dir.string(),
                            loaded.extra_tensors.begin()->first));
  return rm;
}

HfModelImage reward_model_image(RewardModelImpl& model) {
  HfModelImage image;
  for (auto& p : model.named_parameters()) image.tensors[p.key()] = p.value().detach();
  auto& config = image.config = model.config();
  config.tie_word_embeddings = true;  // no LM head
  config.attention = Attention::Causal;
  auto dtype = model.embedding_weight().scalar_type();
  config.torch_dtype = dtype == torch::kBFloat16 ? "bfloat16" : dtype == torch::kFloat16 ? "float16" : "float32";
  std::string arch = config.hf_class_prefix() + "ForSequenceClassification";
  config.extra["architectures"] = nlohmann::json::array({arch}).dump();
  config.extra["id2label"] = R"({"0": "LABEL_0"})";
  config.extra["label2id"] = R"({"LABEL_0": 0})";
  return image;
}

void save_reward_model(const fs::path& dir, RewardModelImpl& model) { reward_model_image(model).write(dir); }

}  // namespace tess::model
