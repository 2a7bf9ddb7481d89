#include "core/diffusion/guidance.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include "core/model/reward_model.h"
#include "core/util/error.h"

namespace tess::diffusion {

RewardGuidance::RewardGuidance(model::RewardModelImpl& reward_model, double scale, int64_t eos_id, RewardRead read)
    : rm_(reward_model), scale_(scale), eos_id_(eos_id), read_(read) {
  if (scale < 0) throw Error(fmt::format("guidance scale must be >= 0, got {}", scale));
  if (rm_.embedding_weight().scalar_type() != torch::kFloat32)
    throw Error("reward guidance runs in fp32: load the reward model as float32");
  for (auto& p : rm_.parameters()) p.requires_grad_(false);
  rm_.eval();
}

const util::Choices<RewardRead>& reward_read_choices() {
  static const util::Choices<RewardRead> c("reward read position",
                                           {{RewardRead::Last, "last"}, {RewardRead::FirstEos, "first_eos"}});
  return c;
}

torch::Tensor reward_read_positions(const torch::Tensor& logits, const SpanIndex& span, int64_t rows, int64_t eos_id,
                                    RewardRead read) {
  auto choice = logits.argmax(-1).cpu().contiguous();
  auto batch = span.batch.cpu().contiguous(), pos = span.pos.cpu().contiguous();
  const int64_t* c = choice.data_ptr<int64_t>();
  const int64_t* b = batch.data_ptr<int64_t>();
  const int64_t* p = pos.data_ptr<int64_t>();
  std::vector<int64_t> at(static_cast<size_t>(rows), -1);
  std::vector<bool> found(static_cast<size_t>(rows), false);
  for (int64_t i = 0; i < span.rows; ++i) {
    auto r = static_cast<size_t>(b[i]);
    if (found[r]) continue;
    at[r] = p[i];  // the span's positions come in increasing order per row
    if (read == RewardRead::FirstEos && c[i] == eos_id) found[r] = true;
  }
  for (size_t r = 0; r < at.size(); ++r)
    if (at[r] < 0) throw Error(fmt::format("reward guidance: row {} has no span position", r));
  return torch::tensor(at, torch::kInt64).to(logits.device());
}

GuidanceHook RewardGuidance::hook(const SampleBatch& batch) {
  step_rewards_.clear();
  auto ids = batch.ids, key_mask = batch.key_mask;
  return [this, ids, key_mask](int64_t, const torch::Tensor& logits, const SpanIndex& span) {
    torch::AutoGradMode grad_mode(true);
    const auto& e = rm_.embedding_weight();  // E_rm [V, H], fp32
    if (logits.size(-1) != e.size(0))
      throw Error(fmt::format("reward guidance: the model's vocabulary ({}) differs from the reward model's ({})",
                              logits.size(-1), e.size(0)));
    auto free = logits.detach().to(torch::kFloat32).requires_grad_(true);
    auto soft = torch::softmax(free, -1).matmul(e);  // [rows, H]
    int64_t b = ids.size(0), l = ids.size(1), h = e.size(1);
    auto exact = torch::embedding(e, ids).reshape({b * l, h});  // the prompt as exact one-hots
    auto embeds = exact.index_copy(0, span.flat, soft).view({b, l, h});
    auto reward = rm_.forward_embeds(embeds, reward_read_positions(free.detach(), span, b, eos_id_, read_), key_mask);
    step_rewards_.push_back(reward.detach().mean().item<double>());
    auto grad = torch::autograd::grad({reward.sum()}, {free})[0];
    return (logits.to(torch::kFloat32) + scale_ * grad).detach();
  };
}

}  // namespace tess::diffusion
