#include <catch2/catch.hpp>

#include <ATen/autocast_mode.h>

#include <torch/torch.h>

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/model/decoder.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "tests/support/test_support.h"

using namespace tess::model;
using Catch::Matchers::Contains;

namespace {

ModelConfig tiny(int64_t kv_heads = 2, bool tied = false) {
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_attention_heads = 4;
  c.num_key_value_heads = kv_heads;
  c.tie_word_embeddings = tied;
  return c;
}

torch::Tensor ids_of(std::vector<int64_t> ids) { return torch::tensor(ids, torch::kInt64).unsqueeze(0); }

// Random norm weights, so that tests also see the norms.
void perturb_norms(DecoderImpl& d, uint64_t seed) {
  torch::NoGradGuard g;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : d.named_parameters())
    if (p.key().find("norm") != std::string::npos) p.value().add_(torch::randn(p.value().sizes(), gen) * 0.1);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

TEST_CASE("causal: a later token never changes earlier logits, bidirectional: it does", "[unit][model]") {
  Decoder d(tiny(), 1);
  torch::NoGradGuard g;
  auto a = ids_of({3, 7, 11, 19, 23, 29});
  auto b = a.clone();
  b[0][4] = 31;  // change position 4
  for (auto mode : {Attention::Causal, Attention::Bidirectional}) {
    ForwardOptions opt;
    opt.attention = mode;
    auto la = d->forward(a, opt), lb = d->forward(b, opt);
    double before = max_diff(la.narrow(1, 0, 4), lb.narrow(1, 0, 4));
    if (mode == Attention::Causal)
      CHECK(before == 0.0);
    else
      CHECK(before > 1e-4);
    CHECK(max_diff(la.narrow(1, 4, 2), lb.narrow(1, 4, 2)) > 1e-4);
  }
}

TEST_CASE("gradients match finite differences", "[unit][model]") {
  auto cfg = tiny(2);
  cfg.num_hidden_layers = 1;
  Decoder d(cfg, 2);
  perturb_norms(*d, 3);
  d->to(torch::kFloat64);
  auto ids = ids_of({1, 4, 9, 16, 25});
  auto weights = torch::randn({1, 5, cfg.vocab_size}, torch::kFloat64);
  auto loss_fn = [&] {
    ForwardOptions opt;
    opt.attention = Attention::Bidirectional;
    return (d->forward(ids, opt) * weights).sum();
  };
  d->zero_grad();
  loss_fn().backward();
  torch::NoGradGuard g;
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                           "model.layers.0.mlp.gate_proj.weight", "model.layers.0.input_layernorm.weight",
                           "model.norm.weight", "lm_head.weight", "model.embed_tokens.weight"}) {
    auto p = d->named_parameters()[name];
    auto flat = p.view(-1);
    for (int64_t idx : {int64_t{0}, flat.numel() / 3, flat.numel() - 1}) {
      if (std::string(name) == "model.embed_tokens.weight") idx = 4 * cfg.hidden_size + idx % cfg.hidden_size;  // a used row
      double eps = 1e-6, orig = flat[idx].item<double>();
      flat[idx] = orig + eps;
      double up = loss_fn().item<double>();
      flat[idx] = orig - eps;
      double down = loss_fn().item<double>();
      flat[idx] = orig;
      double numeric = (up - down) / (2 * eps);
      double analytic = p.grad().view(-1)[idx].item<double>();
      INFO(name << "[" << idx << "] numeric " << numeric << " analytic " << analytic);
      CHECK(analytic == Approx(numeric).margin(1e-6).epsilon(1e-5));
    }
  }
}

TEST_CASE("grouped-query attention equals the same model with repeated K/V heads", "[unit][model]") {
  Decoder gqa(tiny(2), 4), mha(tiny(4), 5);
  perturb_norms(*gqa, 6);
  torch::NoGradGuard g;
  auto src = gqa->named_parameters();
  auto dst = mha->named_parameters();
  int64_t hd = tiny().resolved_head_dim(), rep = 2;
  for (auto& p : dst) {
    const auto& name = p.key();
    auto from = src[name];
    if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
      // kv head j serves query heads j*rep .. j*rep+rep-1 (HF's repeat_kv).
      auto heads = from.view({2, hd, -1});
      p.value().copy_(heads.repeat_interleave(rep, 0).reshape(p.value().sizes()));
    } else {
      p.value().copy_(from);
    }
  }
  auto ids = ids_of({2, 3, 5, 7, 11, 13, 17});
  for (auto mode : {Attention::Causal, Attention::Bidirectional}) {
    ForwardOptions opt;
    opt.attention = mode;
    CHECK(max_diff(gqa->forward(ids, opt), mha->forward(ids, opt)) < 1e-5);
  }
}

TEST_CASE("RoPE matches its closed form", "[unit][model]") {
  int64_t d = 8;
  double theta = 10000.0;
  auto inv = rope_inv_freq(d, theta);
  auto pos = torch::tensor({0, 1, 5, 37}, torch::kInt64).unsqueeze(0);
  auto [cos, sin] = rope_tables(pos, inv, torch::kFloat64);
  auto x = torch::randn({1, 1, 4, d}, torch::kFloat64);
  auto y = apply_rope(x, cos, sin);
  int64_t positions[] = {0, 1, 5, 37};
  for (int p = 0; p < 4; ++p)
    for (int64_t i = 0; i < d / 2; ++i) {
      double angle = positions[p] * std::pow(theta, -2.0 * i / d);
      double a = x[0][0][p][i].item<double>(), b = x[0][0][p][i + d / 2].item<double>();
      CHECK(y[0][0][p][i].item<double>() == Approx(a * std::cos(angle) - b * std::sin(angle)).margin(1e-6));
      CHECK(y[0][0][p][i + d / 2].item<double>() == Approx(b * std::cos(angle) + a * std::sin(angle)).margin(1e-6));
    }
}

TEST_CASE("KV-cache decoding gives the same logits as a full forward", "[unit][model]") {
  for (int64_t window : {0, 4}) {
    auto cfg = tiny(2);
    cfg.sliding_window = window;
    Decoder d(cfg, 7);
    torch::NoGradGuard g;
    auto ids = ids_of({5, 9, 2, 44, 17, 3, 8, 21, 30, 12});
    auto full = d->forward(ids);
    KVCache cache(cfg, 1, 16, torch::TensorOptions().dtype(torch::kFloat32));
    ForwardOptions opt;
    opt.cache = &cache;
    std::vector<torch::Tensor> pieces;
    pieces.push_back(d->forward(ids.narrow(1, 0, 4), opt));  // prefill
    pieces.push_back(d->forward(ids.narrow(1, 4, 3), opt));  // a chunk after cached positions
    for (int64_t t = 7; t < 10; ++t) pieces.push_back(d->forward(ids.narrow(1, t, 1), opt));  // one token at a time
    INFO("sliding window " << window);
    CHECK(cache.length() == 10);
    CHECK(max_diff(torch::cat(pieces, 1), full) < 1e-5);
  }
}

TEST_CASE("padding masked by key_mask leaves the real positions as if unpadded", "[unit][model]") {
  Decoder d(tiny(), 8);
  torch::NoGradGuard g;
  auto short_ids = ids_of({4, 8, 15});
  auto long_ids = ids_of({16, 23, 42, 7, 1});
  auto batch = torch::stack({torch::tensor({4, 8, 15, 0, 0}, torch::kInt64), long_ids[0]});
  auto key_mask = torch::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, torch::kBool).view({2, 5});
  for (auto mode : {Attention::Causal, Attention::Bidirectional}) {
    ForwardOptions opt;
    opt.attention = mode;
    auto single_short = d->forward(short_ids, opt);
    auto single_long = d->forward(long_ids, opt);
    opt.key_mask = key_mask;
    auto batched = d->forward(batch, opt);
    CHECK(max_diff(batched[0].narrow(0, 0, 3), single_short[0]) < 1e-5);
    CHECK(max_diff(batched[1], single_long[0]) < 1e-5);
    CHECK(torch::isfinite(batched).all().item<bool>());
  }
}

namespace {

// Parameter gradients of one bidirectional cross-entropy step, with or without
// activation checkpointing, optionally under CPU bf16 autocast (backward runs
// outside it, as in the trainer).
std::vector<torch::Tensor> step_gradients(bool checkpointing, bool autocast) {
  auto ids = ids_of({3, 1, 4, 1, 5, 9, 2, 6});
  Decoder d(tiny(), 9);
  d->train();
  d->set_activation_checkpointing(checkpointing);
  ForwardOptions opt;
  opt.attention = Attention::Bidirectional;
  if (autocast) {
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::increment_nesting();
  }
  auto loss = torch::nn::functional::cross_entropy(d->forward(ids, opt).view({-1, 50}).to(torch::kFloat32), ids.view(-1));
  if (autocast) {
    at::autocast::decrement_nesting();
    at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, false);
  }
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : d->parameters()) grads.push_back(p.grad().clone());
  return grads;
}

}  // namespace

TEST_CASE("activation checkpointing gives the same gradients, also under bf16 autocast", "[unit][model]") {
  for (bool autocast : {false, true}) {
    INFO("autocast " << autocast);
    auto plain = step_gradients(false, autocast), checkpointed = step_gradients(true, autocast);
    REQUIRE(plain.size() == checkpointed.size());
    for (size_t i = 0; i < plain.size(); ++i) CHECK(max_diff(plain[i], checkpointed[i]) < 1e-6);
  }
  CHECK_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
}

TEST_CASE("a training step lowers the loss on its batch", "[unit][model]") {
  Decoder d(tiny(), 10);
  torch::optim::AdamW opt(d->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0));
  auto ids = ids_of({5, 6, 7, 8, 9, 10, 11, 12});
  auto loss_of = [&] {
    auto logits = d->forward(ids.narrow(1, 0, 7));
    return torch::nn::functional::cross_entropy(logits.view({-1, 50}), ids.narrow(1, 1, 7).reshape(-1));
  };
  double first = 0;
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    auto loss = loss_of();
    if (step == 0) first = loss.item<double>();
    loss.backward();
    opt.step();
  }
  CHECK(loss_of().item<double>() < first - 0.5);
}

TEST_CASE("save -> load gives bit-identical logits and the same seed gives the same model", "[unit][model]") {
  tess::test::TempDir dir;
  for (bool tied : {false, true}) {
    Decoder d(tiny(2, tied), 11);
    perturb_norms(*d, 12);
    save_hf_model(dir / "m", *d);
    auto loaded = load_hf_model(dir / "m");
    torch::NoGradGuard g;
    auto ids = ids_of({1, 2, 3, 4, 5});
    CHECK(torch::equal(d->forward(ids), loaded.decoder->forward(ids)));
    CHECK(loaded.extra_tensors.empty());
    CHECK(loaded.decoder->config().tie_word_embeddings == tied);
  }
  Decoder a(tiny(), 99), b(tiny(), 99), c(tiny(), 100);
  CHECK(torch::equal(a->lm_head_weight(), b->lm_head_weight()));
  CHECK_FALSE(torch::equal(a->lm_head_weight(), c->lm_head_weight()));
}

TEST_CASE("extra tensors (TESS 2's timestep_embed) survive load and save", "[unit][model]") {
  tess::test::TempDir dir;
  auto cfg = tiny();
  cfg.attention = Attention::Bidirectional;
  cfg.extra["self_condition"] = "\"logits_mean\"";
  Decoder d(cfg, 13);
  auto timestep = torch::randn({cfg.hidden_size, 1});
  save_hf_model(dir / "m", *d, {{"timestep_embed.weight", timestep}});
  auto loaded = load_hf_model(dir / "m");
  REQUIRE(loaded.extra_tensors.count("timestep_embed.weight"));
  CHECK(torch::equal(loaded.extra_tensors["timestep_embed.weight"], timestep));
  CHECK(loaded.decoder->config().attention == Attention::Bidirectional);
  CHECK(loaded.decoder->config().extra.at("self_condition") == "\"logits_mean\"");
}

TEST_CASE("loading names the file, tensor and expected shape on any mismatch", "[unit][model]") {
  tess::test::TempDir dir;
  Decoder d(tiny(), 14);
  save_hf_model(dir / "m", *d);
  // A config whose shape disagrees with the weights.
  auto cfg = ModelConfig::from_json_file(dir / "m" / "config.json");
  cfg.intermediate_size = 64;
  cfg.write_json_file(dir / "m" / "config.json");
  try {
    load_hf_model(dir / "m");
    FAIL("expected a shape error");
  } catch (const tess::Error& e) {
    CHECK_THAT(e.what(), Contains("model.safetensors"));
    CHECK_THAT(e.what(), Contains("model.layers.0.mlp.gate_proj.weight"));
    CHECK_THAT(e.what(), Contains("[64, 32]"));
  }
  // A truncated weight file.
  save_hf_model(dir / "t", *d);
  auto file = dir / "t" / "model.safetensors";
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 100);
  try {
    load_hf_model(dir / "t");
    FAIL("expected a truncation error");
  } catch (const tess::Error& e) {
    CHECK_THAT(e.what(), Contains(file.string()));
    CHECK_THAT(e.what(), Contains("truncated"));
  }
  // A missing weight.
  std::map<std::string, torch::Tensor> partial = hf_state_dict(*d);
  partial.erase("model.norm.weight");
  std::filesystem::create_directories(dir / "p");
  write_safetensors(dir / "p" / "model.safetensors", partial);
  d->config().write_json_file(dir / "p" / "config.json");
  CHECK_THROWS_WITH(load_hf_model(dir / "p"), Contains("weight 'model.norm.weight' is missing"));
}

TEST_CASE("vocabulary growth adds mean-initialised rows and keeps the old logits", "[unit][model]") {
  Decoder d(tiny(), 15);
  torch::NoGradGuard g;
  auto ids = ids_of({1, 2, 3});
  auto before = d->forward(ids);
  d->resize_vocab(51);
  CHECK(d->config().vocab_size == 51);
  CHECK(d->embedding_weight().size(0) == 51);
  CHECK(torch::allclose(d->embedding_weight()[50], d->embedding_weight().narrow(0, 0, 50).mean(0)));
  auto after = d->forward(ids);
  CHECK(after.size(2) == 51);
  CHECK(torch::equal(after.narrow(2, 0, 50), before));
}

TEST_CASE("real shapes construct from presets with the published parameter counts", "[unit][model]") {
  CHECK(ModelConfig::preset("mistral-7b-v0.1").num_parameters() == 7241732096);
  CHECK(ModelConfig::preset("llama-3-8b").num_parameters() == 8030261248);
  CHECK(ModelConfig::preset("tinyllama-1.1b").num_parameters() == 1100048384);
  auto c = ModelConfig::preset("tiny");
  Decoder d(c);
  int64_t n = 0;
  for (auto& p : d->parameters()) n += p.numel();
  CHECK(n == c.num_parameters());
}

// The same weights (rounded to bf16) in an fp32 model give the reference: the
// bf16 model's logits must match them within bf16's precision (8 bits of
// mantissa, a relative error of ~0.4% per rounding, a few roundings deep).
TEST_CASE("bf16 parameters run the same code: logits within bf16 precision of fp32 on the same weights",
          "[unit][model]") {
  auto c = tiny();
  c.torch_dtype = "bfloat16";
  Decoder d(c, 16);
  CHECK(d->embedding_weight().scalar_type() == torch::kBFloat16);
  auto c32 = tiny();
  Decoder ref(c32, 99);
  torch::NoGradGuard g;
  auto named = d->named_parameters();
  for (auto& p : ref->named_parameters()) p.value().copy_(named[p.key()].to(torch::kFloat32));
  auto ids = ids_of({1, 2, 3, 7, 11, 5, 9, 4});
  auto logits = d->forward(ids);
  CHECK(logits.scalar_type() == torch::kBFloat16);
  auto want = ref->forward(ids);
  auto err = (logits.to(torch::kFloat32) - want).norm().item<double>() / want.norm().item<double>();
  INFO("relative error " << err);
  CHECK(err < 0.03);
  CHECK(err > 0);  // bf16 arithmetic really ran
}

TEST_CASE("config.json errors name the file and the field", "[unit][model]") {
  CHECK_THROWS_WITH(ModelConfig::from_json_text("{\"model_type\": \"gpt2\"}", "x/config.json"),
                    Contains("x/config.json: model_type 'gpt2' is not supported"));
  CHECK_THROWS_WITH(ModelConfig::from_json_text("{\"model_type\": \"llama\", \"vocab_size\": 10}", "c.json"),
                    Contains("c.json: missing required field 'hidden_size'"));
  auto ok = ModelConfig::preset("tiny").to_json_text();
  auto bad_heads = ok;
  bad_heads.replace(bad_heads.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
  CHECK_THROWS_WITH(ModelConfig::from_json_text(bad_heads, "h.json"), Contains("not a multiple of num_key_value_heads 3"));
  // Used to: 2.9 truncated to 2 layers.
  auto fractional = ok;
  auto layers = fractional.find("\"num_hidden_layers\": ");
  REQUIRE(layers != std::string::npos);
  fractional.insert(fractional.find_first_of(",\n}", layers), ".9");
  CHECK_THROWS_WITH(ModelConfig::from_json_text(fractional, "f.json"),
                    Contains("f.json: field 'num_hidden_layers' must be an integer, got 2.9"));
  auto huge_eps = ok;
  auto eps = huge_eps.find("\"rms_norm_eps\": ");
  REQUIRE(eps != std::string::npos);
  huge_eps.replace(eps, huge_eps.find_first_of(",\n}", eps) - eps, "\"rms_norm_eps\": 1e309");
  CHECK_THROWS_WITH(ModelConfig::from_json_text(huge_eps, "e.json"),
                    Contains("e.json: not valid JSON") && Contains("1e309"));  // used to escape as a json exception
  auto round = ModelConfig::from_json_text(ok, "ok");
  CHECK(round.to_json_text() == ok);
}

namespace {

// Parameters of a decoder counted from its shapes, written out independently
// of ModelConfig::num_parameters().
int64_t count_by_hand(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv_heads,
                      int64_t head_dim, bool tied, bool qkv_bias) {
  int64_t q = hidden * heads * head_dim, k = hidden * kv_heads * head_dim, v = k, o = heads * head_dim * hidden;
  int64_t bias = qkv_bias ? heads * head_dim + 2 * kv_heads * head_dim : 0;
  int64_t mlp = hidden * inter * 2 + inter * hidden;  // gate, up, down
  int64_t norms = 2 * hidden;
  return vocab * hidden + layers * (q + k + v + o + bias + mlp + norms) + hidden + (tied ? 0 : vocab * hidden);
}

// The public config.json files (transformers 4.x spelling) of the two models.
const char* kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";
const char* kQwen25_05B = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2",
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1", "use_cache": true, "use_mrope": false, "use_sliding_window": false,
  "vocab_size": 151936})";

void check_same_shape(const ModelConfig& a, const ModelConfig& b) {
  CHECK(a.model_type == b.model_type);
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.num_hidden_layers == b.num_hidden_layers);
  CHECK(a.num_attention_heads == b.num_attention_heads);
  CHECK(a.num_key_value_heads == b.num_key_value_heads);
  CHECK(a.resolved_head_dim() == b.resolved_head_dim());
  CHECK(a.rms_norm_eps == b.rms_norm_eps);
  CHECK(a.rope_theta == b.rope_theta);
  CHECK(a.rope_scaling.type == b.rope_scaling.type);
  CHECK(a.rope_scaling.factor == b.rope_scaling.factor);
  CHECK(a.rope_scaling.low_freq_factor == b.rope_scaling.low_freq_factor);
  CHECK(a.rope_scaling.high_freq_factor == b.rope_scaling.high_freq_factor);
  CHECK(a.rope_scaling.original_max_position_embeddings == b.rope_scaling.original_max_position_embeddings);
  CHECK(a.max_position_embeddings == b.max_position_embeddings);
  CHECK(a.sliding_window == b.sliding_window);
  CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
  CHECK(a.qkv_bias() == b.qkv_bias());
  CHECK(a.bos_token_id == b.bos_token_id);
  CHECK(a.eos_token_id == b.eos_token_id);
  CHECK(a.num_parameters() == b.num_parameters());
}

}  // namespace

TEST_CASE("Llama-3.2-1B and Qwen2.5-0.5B presets have the public configs' shapes and parameter counts",
          "[unit][model]") {
  auto llama = ModelConfig::preset("llama-3.2-1b");
  int64_t llama_count = count_by_hand(128256, 2048, 8192, 16, 32, 8, 64, /*tied=*/true, /*qkv_bias=*/false);
  CHECK(llama_count == 1235814400);  // published: 1.24B
  CHECK(llama.num_parameters() == llama_count);
  CHECK(llama.rope_scaling.type == "llama3");
  CHECK_FALSE(llama.qkv_bias());

  auto qwen = ModelConfig::preset("qwen2.5-0.5b");
  int64_t qwen_count = count_by_hand(151936, 896, 4864, 24, 14, 2, 64, /*tied=*/true, /*qkv_bias=*/true);
  CHECK(qwen_count == 494032768);  // published: 0.49B
  CHECK(qwen.num_parameters() == qwen_count);
  CHECK(qwen.qkv_bias());
  CHECK(qwen.rope_theta == 1e6);
  CHECK(qwen.rms_norm_eps == 1e-6);

  // The public config.json files parse to the presets, and a written preset parses back to itself.
  check_same_shape(ModelConfig::from_json_text(kLlama32_1B, "Llama-3.2-1B/config.json"), llama);
  check_same_shape(ModelConfig::from_json_text(kQwen25_05B, "Qwen2.5-0.5B/config.json"), qwen);
  for (const auto& name : ModelConfig::preset_names()) {
    INFO(name);
    auto c = ModelConfig::preset(name);
    check_same_shape(ModelConfig::from_json_text(c.to_json_text(), name), c);
  }

  // num_parameters() is what the modules hold, biases included (tiny shapes
  // of both families: no 1B model is allocated).
  for (const char* type : {"llama", "qwen2"}) {
    INFO(type);
    auto c = tiny(2, /*tied=*/true);
    c.model_type = type;
    Decoder d(c);
    int64_t n = 0;
    for (auto& p : d->parameters()) n += p.numel();
    CHECK(n == c.num_parameters());
    CHECK(n == count_by_hand(c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers,
                             c.num_attention_heads, c.num_key_value_heads, c.resolved_head_dim(), true,
                             std::string(type) == "qwen2"));
    auto names = d->named_parameters();
    CHECK(names.contains("model.layers.0.self_attn.q_proj.bias") == (std::string(type) == "qwen2"));
    CHECK_FALSE(names.contains("model.layers.0.self_attn.o_proj.bias"));
    if (std::string(type) == "qwen2")  // HF initialises Linear biases to zero
      CHECK(names["model.layers.0.self_attn.k_proj.bias"].abs().max().item<double>() == 0.0);
  }
  CHECK_THROWS_WITH(ModelConfig::preset("qwen-0.5b"), Contains("unknown model preset 'qwen-0.5b'") &&
                                                          Contains("llama-3.2-1b") && Contains("qwen2.5-0.5b"));
}

// HF-independent statement of the llama3 rule on Llama-3.2-1B's numbers:
// wavelengths below 8192 / 4 = 2048 keep their frequency, those above 8192
// are divided by 32, and those between interpolate between the two.
TEST_CASE("Llama 3.1 RoPE scaling keeps high, divides low and smooths the middle frequencies", "[unit][model]") {
  auto c = ModelConfig::preset("llama-3.2-1b");
  auto plain = rope_inv_freq(c.resolved_head_dim(), c.rope_theta);
  auto scaled = rope_inv_freq(c);
  REQUIRE(scaled.sizes() == plain.sizes());
  int kept = 0, divided = 0, smoothed = 0;
  for (int64_t i = 0; i < plain.size(0); ++i) {
    double f = plain[i].item<double>(), got = scaled[i].item<double>();
    double wavelen = 2 * M_PI / f;
    INFO("i " << i << " wavelen " << wavelen);
    if (wavelen < 2048) {
      CHECK(got == f);
      ++kept;
    } else if (wavelen > 8192) {
      CHECK(got == Approx(f / 32).epsilon(1e-6));
      ++divided;
    } else {
      double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
      CHECK(got == Approx((1 - smooth) * f / 32 + smooth * f).epsilon(1e-5));
      CHECK(got < f);
      CHECK(got > f / 32);
      ++smoothed;
    }
  }
  CHECK(kept > 0);
  CHECK(divided > 0);
  CHECK(smoothed > 0);
  // The default type leaves the frequencies alone.
  c.rope_scaling = RopeScaling{};
  CHECK(torch::equal(rope_inv_freq(c), plain));
}

TEST_CASE("config.json: supported RoPE types and Qwen2 windows are read, the others refused by key", "[unit][model]") {
  auto with = [](const std::string& extra, const char* type = "llama") {
    return fmt::format(R"({{"model_type": "{}", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
      "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096{}}})",
                       type, extra);
  };
  const char* llama3 = R"("factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 512)";
  // 4.x (rope_scaling with rope_type or type) and 5.x (rope_parameters) spellings.
  for (const auto& spelling :
       {fmt::format(R"(, "rope_theta": 5e5, "rope_scaling": {{"rope_type": "llama3", {}}})", llama3),
        fmt::format(R"(, "rope_theta": 5e5, "rope_scaling": {{"type": "llama3", {}}})", llama3),
        fmt::format(R"(, "rope_parameters": {{"rope_type": "llama3", "rope_theta": 5e5, {}}})", llama3)}) {
    INFO(spelling);
    auto c = ModelConfig::from_json_text(with(spelling), "c.json");
    CHECK(c.rope_theta == 5e5);
    CHECK(c.rope_scaling.type == "llama3");
    CHECK(c.rope_scaling.factor == 8);
    CHECK(c.rope_scaling.original_max_position_embeddings == 512);
    auto round = ModelConfig::from_json_text(c.to_json_text(), "round");
    CHECK(round.rope_scaling.type == "llama3");
    CHECK(round.to_json_text() == c.to_json_text());
  }
  // As HF: original_max_position_embeddings defaults to max_position_embeddings.
  auto defaulted = ModelConfig::from_json_text(
      with(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4})"),
      "d.json");
  CHECK(defaulted.rope_scaling.original_max_position_embeddings == 4096);
  CHECK(ModelConfig::from_json_text(with(R"(, "rope_scaling": null, "rope_parameters": {"rope_type": "default"})"), "n")
            .rope_scaling.type == "default");

  CHECK_THROWS_WITH(ModelConfig::from_json_text(with(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4})"), "y.json"),
                    Contains("y.json: rope_scaling.rope_type 'yarn' is not supported (supported: default, llama3)"));
  CHECK_THROWS_WITH(ModelConfig::from_json_text(with(R"(, "rope_scaling": {"type": "linear", "factor": 2})"), "l.json"),
                    Contains("l.json: rope_scaling.type 'linear' is not supported (supported: default, llama3)"));
  CHECK_THROWS_WITH(
      ModelConfig::from_json_text(with(R"(, "rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4})"), "p.json"),
      Contains("p.json: rope_parameters.rope_type 'dynamic' is not supported (supported: default, llama3)"));
  CHECK_THROWS_WITH(
      ModelConfig::from_json_text(with(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1})"),
                                  "m.json"),
      Contains("m.json: rope_scaling: missing required field 'high_freq_factor'"));
  CHECK_THROWS_WITH(ModelConfig::from_json_text(
                        with(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 1})"),
                        "o.json"),
                    Contains("o.json: rope scaling 'llama3' needs 0 < low_freq_factor < high_freq_factor"));
  CHECK_THROWS_WITH(
      ModelConfig::from_json_text(with(R"(, "rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5})"),
                                  "r.json"),
      Contains("r.json: rope_parameters: partial_rotary_factor 0.5 is not supported"));
  CHECK_THROWS_WITH(ModelConfig::from_json_text(with(R"(, "attention_bias": true)"), "b.json"),
                    Contains("b.json: attention_bias true (biases on q/k/v/o of a llama model) is not supported"));
  CHECK_THROWS_WITH(ModelConfig::from_json_text(with(R"(, "mlp_bias": true)", "qwen2"), "mb.json"),
                    Contains("mb.json: mlp_bias true is not supported"));

  // Qwen2: windows only with use_sliding_window, and only in layers >= max_window_layers.
  auto qwen = [&](const std::string& extra) { return ModelConfig::from_json_text(with(extra, "qwen2"), "q.json"); };
  CHECK(qwen(R"(, "sliding_window": 16, "use_sliding_window": false, "max_window_layers": 2)").sliding_window == 0);
  CHECK(qwen(R"(, "sliding_window": 16)").sliding_window == 0);  // use_sliding_window defaults to false
  CHECK(qwen(R"(, "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 4)").sliding_window == 0);
  CHECK(qwen(R"(, "sliding_window": 16, "use_sliding_window": true,
               "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention"])")
            .sliding_window == 0);
  CHECK_THROWS_WITH(qwen(R"(, "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 3)"),
                    Contains("q.json: use_sliding_window is true and 1 of 4 layers slide") &&
                        Contains("not supported"));
  CHECK_THROWS_WITH(qwen(R"(, "sliding_window": 16, "use_sliding_window": true, "max_window_layers": 4,
                            "layer_types": ["full_attention", "sliding_attention", "full_attention", "full_attention"])"),
                    Contains("1 of 4 layers slide"));
  auto q = qwen(R"(, "use_mrope": false)");
  CHECK(q.qkv_bias());
  CHECK(q.extra.count("use_mrope"));
  auto written = nlohmann::json::parse(q.to_json_text());
  CHECK(written["architectures"][0] == "Qwen2ForCausalLM");
  CHECK(written["use_sliding_window"] == false);
  CHECK_FALSE(written.contains("attention_bias"));
}

TEST_CASE("a model may carry padding rows beyond its tokenizer up to the next multiple of 1024, no more",
          "[unit][model]") {
  using tess::model::ModelConfig;
  CHECK(ModelConfig::vocab_padding_ok(32000, 32000));
  CHECK(ModelConfig::vocab_padding_ok(151936, 151665));  // Qwen2.5
  CHECK(ModelConfig::vocab_padding_ok(1024, 1000));
  CHECK_FALSE(ModelConfig::vocab_padding_ok(1025, 1000));
  CHECK_FALSE(ModelConfig::vocab_padding_ok(151936, 32000));  // another tokenizer
  CHECK_FALSE(ModelConfig::vocab_padding_ok(999, 1000));       // too few rows: the trainer grows them instead
}
