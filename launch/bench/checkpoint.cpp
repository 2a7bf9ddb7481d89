// `tess bench checkpoint`: safetensors save and load of a model's weights
// and of an optimizer-state-sized file; the asynchronous save measured inside
// the trainer's steps comes from the train case.
#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/model/decoder.h"
#include "core/model/safetensors.h"
#include "launch/bench/common.h"

namespace tess::bench {
namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- checkpoint -----------------------------------------------------------------------

json bench_checkpoint(const BenchOptions& opt, const json& train) {
  apply_threads(opt);
  ScratchDir dir("ckpt");
  std::string preset_name = opt.smoke ? "tiny" : "medium";
  auto preset = train_preset(preset_name, opt.smoke);
  model::Decoder decoder(preset.model, 0);
  std::map<std::string, torch::Tensor> weights, moments;
  for (auto& p : decoder->named_parameters()) {
    weights[p.key()] = p.value().detach();
    moments[p.key() + ".exp_avg"] = torch::zeros_like(p.value()).normal_();
    moments[p.key() + ".exp_avg_sq"] = torch::zeros_like(p.value()).uniform_();
  }
  json out = {{"preset", preset_name}, {"threads", torch::get_num_threads()},
              {"note", "load reads right after the save, so from the page cache"}};
  for (auto& [name, tensors] : {std::pair<const char*, std::map<std::string, torch::Tensor>*>{"weights", &weights},
                                {"optimizer_state", &moments}}) {
    auto path = dir.path() / (std::string(name) + ".safetensors");
    auto t0 = Clock::now();
    model::write_safetensors(path, *tensors);
    double save = since(t0);
    double bytes = static_cast<double>(fs::file_size(path));
    t0 = Clock::now();
    {
      model::SafetensorsFile f(path);
      for (const auto& e : f.entries()) f.load(e.name);
    }
    double load = since(t0);
    out[name] = {{"bytes", bytes}, {"save_s", save}, {"load_s", load}, {"save_gb_per_s", bytes / save / 1e9},
                 {"load_gb_per_s", bytes / load / 1e9}};
  }
  std::string id = preset_name + "/adaptation/fp32";
  double step = consumption_of(train, id, "step_s");
  if (step > 0) {
    // A synchronous save of weights + optimizer state blocks training this long.
    double stall = out["weights"]["save_s"].get<double>() + out["optimizer_state"]["save_s"].get<double>();
    out["trainer_case"] = id;
    out["trainer_step_s"] = step;
    out["save_stall_in_steps"] = stall / step;
    // checkpoint.async: the case's steps with a save in flight against its plain steps.
    for (const auto& c : train["cases"])
      if (c.value("case", "") == id && c.contains("save_in_flight")) {
        out["async"] = c["save_in_flight"];
        out["async_stall_in_steps"] = c["save_in_flight"]["stall_in_steps"];
      }
  }
  return out;
}

}  // namespace tess::bench
