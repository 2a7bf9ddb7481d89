// Every tensor the weight update holds lives on its parameter's device. This machine has no GPU, so the parameters go to LibTorch's `meta`
// device (shapes without memory): a state tensor made on the CPU by default
// shows up as the one CPU tensor among meta ones.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/dist/dist.h"
#include "tests/train/trainer_workspace.h"
#include "train/weight_update.h"

using namespace tess::train;

namespace {

std::vector<std::string> misplaced(const WeightUpdate& update, const std::vector<NamedParameter>& params) {
  std::map<std::string, c10::Device> device;
  for (const auto& p : params) device.emplace(p.name, p.tensor.device());
  std::vector<std::string> out;
  for (const auto& [name, t] : update.placed_tensors())
    if (t.device() != device.at(name)) out.push_back(name + " on " + t.device().str());
  return out;
}

}  // namespace

TEST_CASE("the weight update keeps moments, step counts and fp32 masters on each parameter's device "
          "(plain and ZeRO-1, fp32 and bf16 masters)",
          "[unit][train]") {
  tess::dist::Dist single;
  for (bool masters : {false, true})
    for (bool zero : {false, true}) {
      INFO("masters " << masters << ", zero " << zero);
      auto dtype = masters ? torch::kBFloat16 : torch::kFloat32;
      auto on = torch::TensorOptions().dtype(dtype);
      std::vector<NamedParameter> params = {{"w", torch::zeros({4, 3}, on.device(torch::kMeta)), true},
                                            {"b", torch::zeros({3}, on.device(torch::kMeta)), false},
                                            {"cpu", torch::zeros({2}, on), true}};
      WeightUpdate update(params, {AdamW::Options{}, masters, zero}, single);
      auto placed = update.placed_tensors();
      CHECK(placed.size() == (masters ? 12u : 9u));  // 2 moments + 1 step count (+ 1 master) each
      auto wrong = misplaced(update, params);
      INFO(tess::test::joined(wrong));
      CHECK(wrong.empty());
    }
}
