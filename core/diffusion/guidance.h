#pragma once
// Reward guidance (method.md 8) as a Sampler GuidanceHook. At each denoising
// step the span logits are treated as a free tensor: the reward model reads
// softmax(logits) @ E_rm on the span and the exact embedding rows of the
// prompt, and the logits take one gradient-ascent step of size `scale` on
// that reward. Everything runs in fp32 (the reference does it in bf16 and
// loses small steps to rounding).
//
// Where the reward is read (eval.guidance_read):
//   last       the row's last span position, the end of its sequence: the
//              reference's behaviour (its HF classifier, given embeddings
//              and no ids, reads the last position);
//   first_eos  the first span position whose current prediction (argmax) is
//              EOS, else the last: where the reward model was trained to
//              score a response (its EOS).
#include <cstdint>
#include <vector>

#include "core/diffusion/sampler.h"
#include "core/util/choices.h"

namespace tess::model {
class RewardModelImpl;
}

namespace tess::diffusion {

enum class RewardRead { Last, FirstEos };
const util::Choices<RewardRead>& reward_read_choices();  // eval.guidance_read

// Per row of a batch of `rows`, the span position the reward is read at
// (int64 [rows], on the logits' device) from the step's span logits.
torch::Tensor reward_read_positions(const torch::Tensor& logits, const SpanIndex& span, int64_t rows, int64_t eos_id,
                                    RewardRead read);

class RewardGuidance {
 public:
  // The reward model must share the diffusion model's tokenizer (the caller
  // checks; see eval::Generator). Its parameters are frozen here.
  RewardGuidance(model::RewardModelImpl& reward_model, double scale, int64_t eos_id, RewardRead read);

  // The hook for sampling `batch` (its prompts, span and padding).
  GuidanceHook hook(const SampleBatch& batch);

  // Mean reward over the batch's rows at each step of the last sampled batch
  // (before the ascent step): how guidance moved it.
  const std::vector<double>& step_rewards() const { return step_rewards_; }

 private:

  model::RewardModelImpl& rm_;
  double scale_;
  int64_t eos_id_;
  RewardRead read_;
  std::vector<double> step_rewards_;
};

}  // namespace tess::diffusion
