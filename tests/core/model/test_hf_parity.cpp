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

// Llama 3.1+ RoPE scaling (rope_type llama3, every branch of HF's frequency
// function: kept, smoothed and divided frequencies) and Qwen2 (biases on
// q/k/v, tied embeddings, theta 1e6, eps 1e-6), saved by HF's own classes.
TEST_CASE("logits and rotary frequencies match HF transformers for Llama 3.1 RoPE scaling and Qwen2",
          "[unit][model][hf]") {
  for (const char* kind : {"llama3", "qwen2"}) {
    INFO(kind);
    auto loaded = load_hf_model(kGolden + kind);
    CHECK(loaded.extra_tensors.empty());
    const auto& c = loaded.decoder->config();
    SafetensorsFile golden(kGolden + kind + "/golden.safetensors");
    // Same fp32 operations as HF's _compute_llama3_parameters: the same bits.
    auto inv_freq = rope_inv_freq(c);
    auto hf_inv_freq = golden.load("inv_freq");
    INFO("inv_freq tess " << inv_freq << " HF " << hf_inv_freq);
    CHECK(torch::equal(inv_freq, hf_inv_freq));
    auto ids = golden_ids(golden);
    torch::NoGradGuard g;
    ForwardOptions causal, bidir;
    causal.attention = Attention::Causal;
    bidir.attention = Attention::Bidirectional;
    auto got_causal = loaded.decoder->forward(ids, causal), got_bidir = loaded.decoder->forward(ids, bidir);
    INFO("max |tess - HF| causal " << max_diff(got_causal, golden.load("logits_causal")) << ", bidirectional "
                                   << max_diff(got_bidir, golden.load("logits_bidirectional")));
    CHECK(max_diff(got_causal, golden.load("logits_causal")) < 1e-4);
    CHECK(max_diff(got_bidir, golden.load("logits_bidirectional")) < 1e-4);
  }
  auto llama3 = load_hf_model(kGolden + "llama3").decoder->config();
  CHECK(llama3.rope_scaling.type == "llama3");
  CHECK(llama3.rope_scaling.factor == 8.0);
  CHECK(llama3.rope_scaling.original_max_position_embeddings == 256);
  auto qwen2 = load_hf_model(kGolden + "qwen2");
  CHECK(qwen2.decoder->config().tie_word_embeddings);
  CHECK(qwen2.decoder->config().sliding_window == 0);
  auto params = qwen2.decoder->named_parameters();
  CHECK(params.contains("model.layers.1.self_attn.q_proj.bias"));
  CHECK(params.contains("model.layers.1.self_attn.k_proj.bias"));
  CHECK(params.contains("model.layers.1.self_attn.v_proj.bias"));
  CHECK_FALSE(params.contains("model.layers.1.self_attn.o_proj.bias"));
  CHECK_FALSE(params.contains("lm_head.weight"));
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
  // Mistral single and sharded; Llama 3.1 RoPE scaling and Qwen2 (q/k/v biases, tied) single.
  for (auto [kind, sharded] : {std::pair{"mistral", false}, std::pair{"mistral", true}, std::pair{"llama3", false},
                               std::pair{"qwen2", false}}) {
    INFO(kind << " sharded " << sharded);
    auto loaded = load_hf_model(kGolden + kind);
    auto model_dir = dir / (std::string(kind) + (sharded ? "_sharded" : "_single"));
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

TEST_CASE("tess model info names Llama 3.1 RoPE scaling and Qwen2's q/k/v biases", "[unit][model][cli]") {
  auto llama3 = tess::test::run_tess("model info --model " + kGolden + "llama3");
  INFO(llama3.err);
  CHECK(llama3.exit_code == 0);
  CHECK_THAT(llama3.out, Catch::Matchers::Contains("rope_theta 10000 (scaling llama3: factor 8, low_freq_factor 1, "
                                                   "high_freq_factor 4, original max 256)"));
  CHECK_THAT(llama3.out, !Catch::Matchers::Contains("biases"));
  auto qwen2 = tess::test::run_tess("model info --model " + kGolden + "qwen2");
  INFO(qwen2.err);
  CHECK(qwen2.exit_code == 0);
  CHECK_THAT(qwen2.out, Catch::Matchers::Contains("type       qwen2"));
  CHECK_THAT(qwen2.out, Catch::Matchers::Contains("biases     q/k/v projections"));
  CHECK_THAT(qwen2.out, Catch::Matchers::Contains("tied embeddings: yes"));
  // 92480 without biases + 2 layers x head_dim 16 x (4 + 2 + 2) q/k/v bias values
  CHECK_THAT(qwen2.out, Catch::Matchers::Contains("parameters 92736 "));
}
