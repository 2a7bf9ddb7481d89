// tess's decoder against HF transformers: golden logits recorded by
// tests/tools/hf_reference.py from HF's own models and safetensors files, and
// HF loading a checkpoint that tess wrote.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/model/hf_checkpoint.h"
#include "core/model/safetensors.h"
#include "tests/support/test_support.h"

using namespace tess::model;

namespace {

const std::string kGolden = std::string(TESS_TEST_DATA) + "/hf_tiny/";

torch::Tensor golden_ids(const SafetensorsFile& g) { return g.load("ids").to(torch::kInt64); }

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

TEST_CASE("logits match HF transformers for Llama, Mistral (sliding window) and tied models", "[unit][model][hf]") {
  for (const char* kind : {"llama", "mistral", "llama_tied"}) {
    INFO(kind);
    auto loaded = load_hf_model(kGolden + kind);
    CHECK(loaded.extra_tensors.empty());
    SafetensorsFile golden(kGolden + kind + "/golden.safetensors");
    auto ids = golden_ids(golden);
    torch::NoGradGuard g;
    ForwardOptions causal, bidir;
    causal.attention = Attention::Causal;
    bidir.attention = Attention::Bidirectional;
    CHECK(max_diff(loaded.decoder->forward(ids, causal), golden.load("logits_causal")) < 1e-4);
    CHECK(max_diff(loaded.decoder->forward(ids, bidir), golden.load("logits_bidirectional")) < 1e-4);
  }
  CHECK(load_hf_model(kGolden + "mistral").decoder->config().sliding_window == 5);
}

TEST_CASE("a sharded HF checkpoint loads to the same model as the single file", "[unit][model][hf]") {
  auto single = load_hf_model(kGolden + "llama");
  auto sharded = load_hf_model(kGolden + "llama_sharded");
  auto a = hf_state_dict(*single.decoder), b = hf_state_dict(*sharded.decoder);
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO(name);
    CHECK(torch::equal(t, b.at(name)));
  }
}

TEST_CASE("HF transformers loads a tess checkpoint and computes the same logits", "[unit][model][hf]") {
  tess::test::TempDir dir;
  for (bool sharded : {false, true}) {
    INFO("sharded " << sharded);
    auto loaded = load_hf_model(kGolden + "mistral");
    auto model_dir = dir / (sharded ? "sharded" : "single");
    // Grow the vocabulary as stage 1 does ([PAD]) so the written shapes differ from the input.
    loaded.decoder->resize_vocab(97);
    save_hf_model(model_dir, *loaded.decoder, {}, sharded ? 60000 : 0);
    std::vector<int64_t> ids{5, 17, 96, 3, 88, 61, 9};
    auto out = dir / "hf_logits.safetensors";
    std::string csv;
    for (auto id : ids) csv += (csv.empty() ? "" : ",") + std::to_string(id);
    auto r = tess::test::run_command(std::string(TESS_PYTHON) + " " + TESS_SOURCE_DIR + "/tests/tools/hf_reference.py logits " +
                                     model_dir.string() + " " + csv + " " + out.string());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    SafetensorsFile hf(out);
    torch::NoGradGuard g;
    auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
    ForwardOptions causal, bidir;
    causal.attention = Attention::Causal;
    bidir.attention = Attention::Bidirectional;
    CHECK(max_diff(loaded.decoder->forward(input, causal), hf.load("logits_causal")) < 1e-4);
    CHECK(max_diff(loaded.decoder->forward(input, bidir), hf.load("logits_bidirectional")) < 1e-4);
  }
}

TEST_CASE("tess model forward writes HF's logits and tess model info describes the model", "[unit][model][cli]") {
  tess::test::TempDir dir;
  SafetensorsFile golden(kGolden + "llama/golden.safetensors");
  auto ids = golden_ids(golden)[0];
  std::string text;
  for (int64_t i = 0; i < ids.size(0); ++i) text += (i ? " " : "") + std::to_string(ids[i].item<int64_t>());
  for (const char* mode : {"causal", "bidirectional"}) {
    auto out = dir / (std::string(mode) + ".safetensors");
    auto r = tess::test::run_tess("model forward --model " + kGolden + "llama --ids \"" + text + "\" --attention " + mode +
                                  " --output " + out.string());
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    SafetensorsFile got(out);
    auto logits = got.load("logits");
    CHECK(logits.sizes() == torch::IntArrayRef({1, 12, 96}));
    CHECK(max_diff(logits, golden.load(std::string("logits_") + mode)) < 1e-4);
  }
  auto info = tess::test::run_tess("model info --model " + kGolden + "mistral");
  CHECK(info.exit_code == 0);
  CHECK_THAT(info.out, Catch::Matchers::Contains("2 layers, hidden 64"));
  CHECK_THAT(info.out, Catch::Matchers::Contains("sliding window 5"));
  auto bad = tess::test::run_tess("model forward --model " + kGolden + "llama --ids \"1 x\" --output " + (dir / "x").string());
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Catch::Matchers::Contains("--ids: 'x' is not an integer"));
}
