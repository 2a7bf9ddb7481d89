#include <catch2/catch.hpp>

#include <ATen/autocast_mode.h>

#include <torch/torch.h>

#include <cmath>

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
