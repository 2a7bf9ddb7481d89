#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/util/error.h"
#include "train/adamw.h"

using tess::train::AdamW;

TEST_CASE("AdamW gives torch.optim.AdamW's bits, and its state round-trips", "[unit][train]") {
  torch::manual_seed(0);
  auto w0 = torch::randn({5, 4}), b0 = torch::randn({4});
  auto w1 = w0.clone().requires_grad_(true), b1 = b0.clone().requires_grad_(true);
  auto w2 = w0.clone().requires_grad_(true), b2 = b0.clone().requires_grad_(true);
  AdamW ours({{"w", w1, true}, {"norm.weight", b1, false}}, {0.9, 0.95, 1e-8, 0.1});
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{w2}, std::make_unique<torch::optim::AdamWOptions>(
                                                          torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{b2}, std::make_unique<torch::optim::AdamWOptions>(
                                                          torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).weight_decay(0.0)));
  torch::optim::AdamW theirs(groups);
  auto x = torch::randn({7, 5});
  for (int step = 0; step < 5; ++step) {
    ours.zero_grad();
    theirs.zero_grad();
    (x.matmul(w1) + b1).pow(2).sum().backward();
    (x.matmul(w2) + b2).pow(2).sum().backward();
    ours.step(1e-2);
    theirs.step();
  }
  CHECK(torch::allclose(w1, w2, 0, 1e-6));
  CHECK(torch::allclose(b1, b2, 0, 1e-6));
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
