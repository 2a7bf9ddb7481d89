#pragma once
// A Bradley-Terry reward model (method.md 8): a causal decoder whose final
// hidden state at one position (the last real token of a response, its EOS)
// is projected to a single score. The layout is HF's
// LlamaForSequenceClassification / MistralForSequenceClassification with
// num_labels = 1: `model.*` (the decoder body) and `score.weight` [1, H], no
// LM head, so a tess reward model opens in transformers and vice versa.
//
// It takes input embeddings as well as ids: reward guidance feeds it
// softmax(logits) @ E_rm on the generated span (a differentiable "soft"
// sequence) and exact embedding rows on the prompt.
#include <filesystem>
#include <optional>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "core/model/decoder.h"
#include "core/model/hf_checkpoint.h"

namespace tess::model {

class RewardModelImpl : public torch::nn::Module {
 public:
  // Takes the body of `decoder` (its LM head, if any, is not part of the
  // reward model); the score head is initialised as HF does from `seed`.
  RewardModelImpl(Decoder decoder, uint64_t seed = 0);

  // Scores [B] (fp32) read at `positions` [B] (int64) of each row; causal
  // attention, `key_mask` [B, L] marks padding when rows have different lengths.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& positions,
                        const torch::Tensor& key_mask = {});
  torch::Tensor forward_embeds(const torch::Tensor& embeds, const torch::Tensor& positions,
                               const torch::Tensor& key_mask = {});

  const torch::Tensor& embedding_weight() const { return decoder_->embedding_weight(); }  // E_rm [V, H]
  const ModelConfig& config() const { return decoder_->config(); }
  DecoderImpl& decoder() { return *decoder_; }
  const DecoderImpl& decoder() const { return *decoder_; }

  torch::nn::Linear score{nullptr};

 private:
  Decoder decoder_;
};
TORCH_MODULE(RewardModel);

// The index of the last non-PAD token of each row of `ids` [B, L] (where HF
// reads a sequence classifier's score); rows without PAD give L - 1.
torch::Tensor last_token_positions(const torch::Tensor& ids, int64_t pad_id);

// Loads a reward-model directory (config.json + weights with score.weight).
// A directory without score.weight (e.g. a causal LM) is a tess::Error that
// says what it holds instead.
RewardModel load_reward_model(const std::filesystem::path& dir, std::optional<std::string> dtype = {});
// The same refusal from the weights' headers alone (no tensor is read): for
// a check before a long job that loads the reward model at its end.
void require_reward_model(const std::filesystem::path& dir);
// Writes config.json (architectures *ForSequenceClassification, num_labels 1)
// and the weights `model.*` + `score.weight`.
void save_reward_model(const std::filesystem::path& dir, RewardModelImpl& model);
// What save_reward_model writes.
HfModelImage reward_model_image(RewardModelImpl& model);

}  // namespace tess::model
