#include "train/adamw.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/util/error.h"
#include "core/util/host_sync.h"

namespace tess::train {

AdamW::AdamW(std::vector<NamedParameter> params, Options options, std::optional<std::set<std::string>> owned)
    : params_(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    if (owned && !owned->count(p.name)) continue;
    // Moments in fp32 whatever the parameter dtype (bf16 moments lose the update).
    auto opts = p.tensor.options().dtype(torch::kFloat32);
    // The step count lives on the parameter's device too: the fused CUDA
    // kernel reads it through a device pointer (torch.optim.AdamW keeps its
    // state_steps there). One per device, shared by its parameters.
    auto step = std::find_if(step_counts_.begin(), step_counts_.end(),
                             [&](const at::Tensor& t) { return t.device() == p.tensor.device(); });
    if (step == step_counts_.end()) step = step_counts_.insert(step_counts_.end(), torch::zeros({}, opts));
    slots_[p.name] = {torch::zeros(p.tensor.sizes(), opts), torch::zeros(p.tensor.sizes(), opts), *step};
  }
}

bool AdamW::default_decay(const std::string& name, bool decay_everything) {
  if (decay_everything) return true;
  bool norm = name.find("norm") != std::string::npos;
  bool bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  bool embedding = name.find("embed") != std::string::npos;
  return !(norm || bias || embedding);
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  // fp32 parameters go through ATen's fused AdamW kernel (one pass over each
  // tensor instead of ~8 elementwise ops; the arithmetic of
  // torch.optim.AdamW(fused=True)), grouped by whether they decay.
  std::vector<at::Tensor> fused_params[2], fused_grads[2], fused_avg[2], fused_avg_sq[2], fused_steps[2];
  for (auto& count : step_counts_) count.fill_(static_cast<double>(steps_));  // a host scalar: no device read
  double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  double bc2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(steps_)));
  for (auto& p : params_) {
    auto it = slots_.find(p.name);
    if (it == slots_.end() || !p.tensor.grad().defined()) continue;
    auto& s = it->second;
    bool decay = p.decay && options_.weight_decay != 0;
    if (p.tensor.scalar_type() == torch::kFloat32 && p.tensor.grad().scalar_type() == torch::kFloat32 &&
        p.tensor.is_contiguous() && p.tensor.grad().is_contiguous()) {
      fused_params[decay].push_back(p.tensor);
      fused_grads[decay].push_back(p.tensor.grad());
      fused_avg[decay].push_back(s.exp_avg);
      fused_avg_sq[decay].push_back(s.exp_avg_sq);
      fused_steps[decay].push_back(s.step);
      continue;
    }
    // Other dtypes: the same update in fp32, written back.
    auto grad = p.tensor.grad().to(torch::kFloat32);
    auto param = p.tensor.to(torch::kFloat32);
    if (decay) param.mul_(1.0 - lr * options_.weight_decay);
    s.exp_avg.lerp_(grad, 1.0 - options_.beta1);
    s.exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() / bc2_sqrt).add_(options_.eps);
    param.addcdiv_(s.exp_avg, denom, -lr / bc1);
    p.tensor.copy_(param);
  }
  for (int decay = 0; decay < 2; ++decay) {
    if (fused_params[decay].empty()) continue;
    // ATen's CPU kernel reads each step count with .item() (free on the
    // CPU); the CUDA kernel reads it on the device.
    std::optional<util::CpuOnlyCheck> cpu_reads;
    if (fused_params[decay].front().is_cpu()) cpu_reads.emplace();
    at::_fused_adamw_(fused_params[decay], fused_grads[decay], fused_avg[decay], fused_avg_sq[decay], {},
                      fused_steps[decay], lr,
                      options_.beta1, options_.beta2, decay ? options_.weight_decay : 0.0, options_.eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.tensor.grad().defined()) p.tensor.mutable_grad().zero_();
}

std::map<std::string, at::Tensor> AdamW::state() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, s] : slots_) {
    out[name + ".exp_avg"] = s.exp_avg;
    out[name + ".exp_avg_sq"] = s.exp_avg_sq;
  }
  out["__step__"] = torch::tensor({static_cast<float>(steps_)});
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::placed_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : params_) {
    auto it = slots_.find(p.name);
    if (it == slots_.end()) continue;
    out.emplace_back(p.name, it->second.exp_avg);
    out.emplace_back(p.name, it->second.exp_avg_sq);
    out.emplace_back(p.name, it->second.step);
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, at::Tensor>& state, const std::string& source) {
  torch::NoGradGuard no_grad;
  auto get = [&](const std::string& key, const at::Tensor& like) {
    auto it = state.find(key);
    if (it == state.end()) throw Error(fmt::format("{}: optimizer state '{}' is missing", source, key));
    if (it->second.sizes() != like.sizes())
      throw Error(fmt::format("{}: optimizer state '{}' has shape {}, expected {}", source, key,
                              c10::str(it->second.sizes()), c10::str(like.sizes())));
    like.copy_(it->second);
  };
  for (auto& [name, s] : slots_) {
    get(name + ".exp_avg", s.exp_avg);
    get(name + ".exp_avg_sq", s.exp_avg_sq);
  }
  auto it = state.find("__step__");
  if (it == state.end()) throw Error(fmt::format("{}: optimizer step count is missing", source));
  steps_ = static_cast<int64_t>(it->second.item<float>());
}

}  // namespace tess::train
