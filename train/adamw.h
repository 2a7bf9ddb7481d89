#pragma once
// AdamW with its state addressable by parameter name, so that checkpoints
// store it per name (and ZeRO-1 can own a subset of names per rank). fp32
// weights are updated by ATen's fused AdamW kernel (torch.optim.AdamW's
// fused=True arithmetic: decoupled weight decay, bias correction; one pass
// per tensor instead of separate elementwise ops); other dtypes by
// the same formula in fp32, written back.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace tess::train {

struct NamedParameter {
  std::string name;
  at::Tensor tensor;
  bool decay = true;  // false: no weight decay (norms, biases, embeddings by default)
};

class AdamW {
 public:
  struct Options {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  };
  // `owned`: names this optimizer updates (a ZeRO-1 shard, possibly empty);
  // nullopt = all parameters.
  AdamW(std::vector<NamedParameter> params, Options options, std::optional<std::set<std::string>> owned = std::nullopt);

  // One update with learning rate `lr` from the parameters' .grad().
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return steps_; }
  const std::vector<NamedParameter>& parameters() const { return params_; }

  // "NAME.exp_avg" / "NAME.exp_avg_sq" for owned parameters, plus "__step__".
  std::map<std::string, at::Tensor> state() const;
  // Restores state(); a missing or misshapen entry is a tess::Error naming `source`.
  void load_state(const std::map<std::string, at::Tensor>& state, const std::string& source);

  // Every state tensor with the name of the parameter it belongs to (which
  // must be on that parameter's device: tests/train/test_placement.cpp).
  std::vector<std::pair<std::string, at::Tensor>> placed_tensors() const;

  // Which parameters decay under the reference's rule: weight matrices of
  // linear layers do; norms, biases and embeddings do not unless
  // `decay_everything` (train.decay_norms_and_embeddings).
  static bool default_decay(const std::string& name, bool decay_everything);

 private:
  struct Slot {
    at::Tensor exp_avg, exp_avg_sq, step;  // step: the step count on the parameter's device
  };
  std::vector<NamedParameter> params_;
  Options options_;
  std::map<std::string, Slot> slots_;
  std::vector<at::Tensor> step_counts_;  // one per device; steps_ written in before each update
  int64_t steps_ = 0;
};

}  // namespace tess::train
