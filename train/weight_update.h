#pragma once
// From summed gradients to new weights, for every precision and sharding
// mode the trainer offers:
//  - train.precision bf16_master: the model holds bf16 weights; an fp32
//    master copy of each is what AdamW updates, and the bf16 weights are
//    rounded from it after every step (small updates accumulate in fp32
//    instead of rounding away). Gradients are reduced, clipped and applied in
//    fp32.
//  - dist.zero 1 (ZeRO-1): every parameter has one owner rank (greedy
//    balance of element counts, in parameter order); a rank keeps AdamW state
//    (and masters' updates) only for what it owns, updates that, and
//    broadcasts it to the others. AdamW's arithmetic is per element, so the
//    weights are bit-identical to replicated AdamW.
// Checkpoint state is by name ("NAME.exp_avg", "master.NAME", ...) for the
// owned names of each rank, so a checkpoint can be resumed on another world
// size (or with ZeRO on/off): each rank picks what it now owns from the union
// of all rank files.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "train/adamw.h"

namespace tess::dist {
class Dist;
}

namespace tess::train {

class WeightUpdate {
 public:
  struct Options {
    AdamW::Options adamw;
    bool master_weights = false;  // bf16_master
    bool zero = false;            // ZeRO-1
  };
  WeightUpdate(std::vector<NamedParameter> model_params, Options options, dist::Dist& dist);

  // The tensors whose gradients are reduced, measured and clipped: the fp32
  // masters (bf16_master) or the model parameters. Call after backward:
  // it moves the model's gradients onto the masters first.
  std::vector<NamedParameter>& gradient_params();
  void step(double lr);
  void zero_grad();

  std::map<std::string, at::Tensor> state() const;
  // Names of the state entries this rank needs from a checkpoint.
  std::set<std::string> needed_state() const;
  // Every tensor the update holds (moments, step counts, fp32 masters) with
  // its parameter's name: each lives on that parameter's device.
  std::vector<std::pair<std::string, at::Tensor>> placed_tensors() const;
  // `state` holds at least needed_state() minus masters (missing masters are
  // re-created from the loaded weights, with a warning); errors name `source`.
  void load_state(const std::map<std::string, at::Tensor>& state, const std::string& source);

 private:
  void sync_from_owners();

  std::vector<NamedParameter> model_;
  std::vector<NamedParameter> masters_;  // empty unless master_weights
  std::vector<int> owner_;               // per parameter
  Options options_;
  dist::Dist& dist_;
  std::unique_ptr<AdamW> adamw_;
  bool grads_moved_ = false;
};

}  // namespace tess::train
