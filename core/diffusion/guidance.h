#pragma once
// Reward guidance (method.md 8) as a Sampler GuidanceHook. At each denoising
// step the span logits are treated as a free tensor: the reward model reads
// softmax(logits) @ E_rm on the span and the exact embedding rows of the
// prompt, and the logits take one gradient-ascent step of size `scale` on
// that reward. Everything runs in fp32 (the reference does it in bf16 and
// loses small steps to rounding).
//
// Where the reward is read: at the first position of the span whose current
// prediction (argmax) is EOS, else at the span's last position. The reward
// model is trained to score at the EOS that ends a response; the reference
// reads at the last position of the padded sequence, where its classifier
// was never trained to look.
#include <cstdint>
#include <vector>

#include "core/diffusion/sampler.h"

namespace tess::model {
class RewardModelImpl;
}

namespace tess::diffusion {

class RewardGuidance {
 public:
  // The reward model must share the diffusion model's tokenizer (the caller
  // checks; see eval::Generator). Its parameters are frozen here.
  RewardGuidance(model::RewardModelImpl& reward_model, double scale, int64_t eos_id);

  // The hook for sampling `batch` (its prompts, span and padding).
  GuidanceHook hook(const SampleBatch& batch);

  // Mean reward over the batch's rows at each step of the last sampled batch
  // (before the ascent step): how guidance moved it.
  const std::vector<double>& step_rewards() const { return step_rewards_; }

 private:
  torch::Tensor read_positions(const torch::Tensor& logits, const SpanIndex& span, int64_t rows) const;

  model::RewardModelImpl& rm_;
  double scale_;
  int64_t eos_id_;
  std::vector<double> step_rewards_;
};

}  // namespace tess::diffusion
