#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "tests/support/test_support.h"
#include "train/adamw.h"

using tess::train::AdamW;

// The reference is PyTorch's own torch.optim.AdamW(fused=True), run by
// tests/tools/adamw_reference.py on the same weights and gradients.
TEST_CASE("AdamW gives torch.optim.AdamW(fused=True)'s bits, and its state round-trips", "[unit][train]") {
  tess::test::TempDir dir;
  torch::manual_seed(0);
  auto w0 = torch::randn({5, 4}), b0 = torch::randn({4});
  auto w1 = w0.clone().requires_grad_(true), b1 = b0.clone().requires_grad_(true);
  AdamW ours({{"w", w1, true}, {"norm.weight", b1, false}}, {0.9, 0.95, 1e-8, 0.1});
  std::map<std::string, torch::Tensor> inputs{{"w0", w0}, {"b0", b0}};
  for (int step = 0; step < 5; ++step) {
    auto gw = torch::randn({5, 4}), gb = torch::randn({4});
    inputs["grad_w." + std::to_string(step)] = gw;
    inputs["grad_b." + std::to_string(step)] = gb;
    w1.mutable_grad() = gw.clone();
    b1.mutable_grad() = gb.clone();
    ours.step(1e-2);
  }
  tess::model::write_safetensors(dir / "in.safetensors", inputs);
  auto r = tess::test::run_command(tess::test::shell_quote(TESS_PYTHON) + " " + TESS_SOURCE_DIR +
                                   "/tests/tools/adamw_reference.py " + (dir / "in.safetensors").string() + " " +
                                   (dir / "out.safetensors").string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  tess::model::SafetensorsFile theirs(dir / "out.safetensors");
  CHECK(torch::equal(w1, theirs.load("w")));
  CHECK(torch::equal(b1, theirs.load("b")));
  CHECK(torch::equal(ours.state().at("w.exp_avg"), theirs.load("w.exp_avg")));
  CHECK(torch::equal(ours.state().at("w.exp_avg_sq"), theirs.load("w.exp_avg_sq")));
  CHECK(ours.steps() == 5);

  auto saved = ours.state();
  AdamW restored({{"w", w1, true}, {"norm.weight", b1, false}}, {0.9, 0.95, 1e-8, 0.1});
  restored.load_state(saved, "test");
  CHECK(restored.steps() == 5);
  CHECK(torch::equal(restored.state().at("w.exp_avg"), saved.at("w.exp_avg")));
  saved.erase("w.exp_avg_sq");
  CHECK_THROWS_AS(restored.load_state(saved, "ckpt/rank_00000.safetensors"), tess::Error);
}

TEST_CASE("no weight decay on norms, biases and embeddings by default", "[unit][train]") {
  CHECK(AdamW::default_decay("model.layers.0.self_attn.q_proj.weight", false));
  CHECK_FALSE(AdamW::default_decay("model.layers.0.input_layernorm.weight", false));
  CHECK_FALSE(AdamW::default_decay("model.embed_tokens.weight", false));
  CHECK_FALSE(AdamW::default_decay("timestep_embed.weight", false));
  CHECK(AdamW::default_decay("model.norm.weight", true));
}
