// The reward model: HF's sequence-classifier layout (transformers loads it and
// scores the same), the read position, and errors for non-reward directories.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "core/model/hf_checkpoint.h"
#include "core/model/reward_model.h"
#include "core/model/safetensors.h"
#include "tests/support/test_support.h"

using namespace tess::model;
using Catch::Matchers::Contains;

namespace {

ModelConfig rm_config() {
  auto c = tess::test::small_model_config(50);
  c.pad_token_id = 0;
  return c;
}

}  // namespace

TEST_CASE("last_token_positions: the last non-PAD token of each row", "[unit][model][reward]") {
  auto ids = torch::tensor({4, 5, 6, 0, 0, 7, 8, 9, 10, 11}, torch::kInt64).view({2, 5});
  auto pos = last_token_positions(ids, 0);
  CHECK(pos[0].item<int64_t>() == 2);
  CHECK(pos[1].item<int64_t>() == 4);
}

TEST_CASE("HF transformers loads a tess reward model and gives the same scores", "[unit][model][reward][hf]") {
  tess::test::TempDir dir;
  // Llama, and Qwen2 (Qwen2ForSequenceClassification, with q/k/v biases made non-zero).
  for (const char* type : {"llama", "qwen2"}) {
    INFO(type);
    auto config = rm_config();
    config.model_type = type;
    RewardModel rm(Decoder(config, 11), 12);
    {
      torch::NoGradGuard g;
      for (auto& p : rm->named_parameters())
        if (p.key().size() > 5 && p.key().compare(p.key().size() - 5, 5, ".bias") == 0) p.value().normal_(0.0, 0.5);
    }
    auto path = dir / (std::string("rm_") + type);
    save_reward_model(path, *rm);
    auto written = nlohmann::json::parse(tess::test::read_file(path / "config.json"));
    CHECK(written["architectures"][0] == (std::string(type) == "qwen2" ? "Qwen2ForSequenceClassification"
                                                                       : "LlamaForSequenceClassification"));
    std::vector<std::vector<int64_t>> rows = {{3, 9, 17, 4}, {5, 8, 41, 2, 33, 7}};
    std::string csv;
    for (const auto& r : rows) {
      if (!csv.empty()) csv += ";";
      for (size_t i = 0; i < r.size(); ++i) csv += (i ? "," : "") + std::to_string(r[i]);
    }
    auto out = dir / "scores.safetensors";
    auto r = tess::test::run_command(std::string(TESS_PYTHON) + " " + TESS_SOURCE_DIR + "/tests/tools/hf_reference.py reward " +
                                     path.string() + " '" + csv + "' " + out.string());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    SafetensorsFile hf(out);
    auto ids = torch::zeros({2, 6}, torch::kInt64);
    ids[0].narrow(0, 0, 4).copy_(torch::tensor(rows[0]));
    ids[1].copy_(torch::tensor(rows[1]));
    torch::NoGradGuard g;
    auto loaded = load_reward_model(path);
    auto ours = loaded->forward(ids, last_token_positions(ids, 0));
    CHECK((ours - hf.load("scores")).abs().max().item<double>() < 1e-4);
    // The same as the model before saving, and not a constant.
    CHECK((ours - rm->forward(ids, last_token_positions(ids, 0))).abs().max().item<double>() < 1e-6);
    CHECK(std::abs(ours[0].item<double>() - ours[1].item<double>()) > 1e-6);
  }
}

TEST_CASE("a causal LM directory is not a reward model: the error says so", "[unit][model][reward]") {
  tess::test::TempDir dir;
  Decoder lm(rm_config(), 3);
  save_hf_model(dir / "lm", *lm);
  CHECK_THAT(tess::test::error_of([&] { load_reward_model(dir / "lm"); }), Contains("not a reward model"));
}
