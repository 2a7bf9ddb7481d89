#include "train/weight_update.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/dist/dist.h"
#include "core/util/error.h"

namespace tess::train {

WeightUpdate::WeightUpdate(std::vector<NamedParameter> model_params, Options options, dist::Dist& dist)
    : model_(std::move(model_params)), options_(options), dist_(dist) {
  int world = options_.zero ? dist_.world_size() : 1;
  std::vector<int64_t> load(static_cast<size_t>(world), 0);
  std::set<std::string> owned;
  for (const auto& p : model_) {
    int r = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[static_cast<size_t>(r)] += p.tensor.numel();
    owner_.push_back(options_.zero ? r : dist_.rank());
    if (owner_.back() == dist_.rank()) owned.insert(p.name);
  }
  if (options_.master_weights) {
    torch::NoGradGuard no_grad;
    for (const auto& p : model_) {
      if (p.tensor.scalar_type() == torch::kFloat32)
        throw Error(fmt::format("train.precision bf16_master: parameter '{}' is fp32; set model.dtype: bfloat16", p.name));
      masters_.push_back({p.name, p.tensor.detach().to(torch::kFloat32).clone(), p.decay});
    }
  }
  adamw_ = std::make_unique<AdamW>(masters_.empty() ? model_ : masters_, options_.adamw, owned);
}

std::vector<NamedParameter>& WeightUpdate::gradient_params() {
  if (!masters_.empty() && !grads_moved_) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < model_.size(); ++i) {
      const auto& g = model_[i].tensor.grad();
      if (!g.defined()) continue;
      masters_[i].tensor.mutable_grad() = g.to(torch::kFloat32);
    }
    grads_moved_ = true;
  }
  return masters_.empty() ? model_ : masters_;
}

void WeightUpdate::step(double lr) {
  gradient_params();
  adamw_->step(lr);
  sync_from_owners();
}

void WeightUpdate::sync_from_owners() {
  auto& updated = masters_.empty() ? model_ : masters_;
  if (options_.zero && dist_.world_size() > 1) {
    for (int r = 0; r < dist_.world_size(); ++r) {
      std::vector<at::Tensor> group;
      for (size_t i = 0; i < updated.size(); ++i)
        if (owner_[i] == r) group.push_back(updated[i].tensor.detach());
      if (!group.empty()) dist_.broadcast(group, r, "ZeRO-1 parameter broadcast");
    }
  }
  if (!masters_.empty()) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < model_.size(); ++i) model_[i].tensor.copy_(masters_[i].tensor);
  }
}

void WeightUpdate::zero_grad() {
  for (auto* set : {&model_, &masters_})
    for (auto& p : *set)
      if (p.tensor.grad().defined()) p.tensor.mutable_grad().zero_();
  grads_moved_ = false;
}

std::map<std::string, at::Tensor> WeightUpdate::state() const {
  auto out = adamw_->state();
  for (size_t i = 0; i < masters_.size(); ++i)
    if (owner_[i] == dist_.rank()) out["master." + masters_[i].name] = masters_[i].tensor.detach();
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> WeightUpdate::placed_tensors() const {
  auto out = adamw_->placed_tensors();
  for (const auto& m : masters_) out.emplace_back(m.name, m.tensor);
  return out;
}

std::set<std::string> WeightUpdate::needed_state() const {
  std::set<std::string> out{"__step__"};
  for (size_t i = 0; i < model_.size(); ++i) {
    if (owner_[i] != dist_.rank()) continue;
    out.insert(model_[i].name + ".exp_avg");
    out.insert(model_[i].name + ".exp_avg_sq");
    if (!masters_.empty()) out.insert("master." + model_[i].name);
  }
  return out;
}

void WeightUpdate::load_state(const std::map<std::string, at::Tensor>& state, const std::string& source) {
  torch::NoGradGuard no_grad;
  adamw_->load_state(state, source);
  int64_t recreated = 0;
  for (size_t i = 0; i < masters_.size(); ++i) {
    auto it = state.find("master." + masters_[i].name);
    if (it != state.end()) {
      if (it->second.sizes() != masters_[i].tensor.sizes())
        throw Error(fmt::format("{}: master weight '{}' has shape {}, expected {}", source, masters_[i].name,
                                c10::str(it->second.sizes()), c10::str(masters_[i].tensor.sizes())));
      masters_[i].tensor.copy_(it->second);
    } else if (owner_[i] == dist_.rank()) {
      masters_[i].tensor.copy_(model_[i].tensor);  // a checkpoint without masters: start from the bf16 weights
      ++recreated;
    }
  }
  if (recreated)
    spdlog::warn("{}: {} fp32 master weight(s) were not in the checkpoint; re-created from its bf16 weights", source,
                 recreated);
  sync_from_owners();  // every rank gets the owners' masters (and the bf16 weights their rounding)
}

}  // namespace tess::train
