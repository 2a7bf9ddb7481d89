// train/flops.h: the FLOP counting rules on shapes small enough to count by hand.
#include <catch2/catch.hpp>

#include "train/flops.h"

using namespace tess::train;

namespace {

tess::model::ModelConfig hand_shape() {
  tess::model::ModelConfig c;
  c.vocab_size = 10;
  c.hidden_size = 4;
  c.intermediate_size = 6;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;  // head_dim 2: q 4x4, k and v 4x2, o 4x4
  return c;
}

}  // namespace

TEST_CASE("flops: the layers' matmul weights are counted by hand", "[unit][train]") {
  // attention 16 + 8 + 8 + 16, SwiGLU 3 * 4 * 6
  CHECK(layer_matmul_parameters(hand_shape()) == 120);
}

TEST_CASE("flops of an ar step: 6N per predicted token plus attention and LM head", "[unit][train]") {
  // B 2, L 5: 8 predicted tokens.
  auto f = step_flops(hand_shape(), tess::config::RunStage::Ar, 2, 5, 0, 0.5);
  CHECK(f.body == 6.0 * 120 * 8);
  CHECK(f.attention == 12.0 * 1 * 4 * 4 * 8);  // layers * heads*head_dim * (L - 1) per token
  CHECK(f.lm_head == 6.0 * 40 * 8);
  CHECK(f.input_projection == 0);
  CHECK(f.self_condition == 0);
  CHECK(f.total() == 9216.0);
}

TEST_CASE("flops of a diffusion step count the input projection and the self-conditioning pass",
          "[unit][train]") {
  // B 2, L 5 (10 tokens), 6 span tokens, self-conditioning on half the steps.
  auto f = step_flops(hand_shape(), tess::config::RunStage::Adaptation, 2, 5, 6, 0.5);
  CHECK(f.body == 7200.0);
  CHECK(f.attention == 12.0 * 4 * 5 * 10);
  CHECK(f.lm_head == 6.0 * 40 * 6);
  CHECK(f.input_projection == 2.0 * 40 * 6);
  // forward of the pass: 2 * 120 * 10 + 4 * 4 * 5 * 10 + input 480 + LM head 480 = 4160, half the time
  CHECK(f.self_condition == 2080.0);
  CHECK(f.total() == 13600.0);
  CHECK(step_flops(hand_shape(), tess::config::RunStage::Instruction, 2, 5, 6, 0.0).self_condition == 0);
}


TEST_CASE("flops of a reward step: the body on every position of both sequences, no LM head, and a sliding window "
          "shortens causal attention",
          "[unit][train]") {
  // 2 pairs = 4 sequences of L 5.
  auto r = step_flops(hand_shape(), tess::config::RunStage::Reward, 4, 5, 0, 0);
  CHECK(r.body == 6.0 * 120 * 20);
  CHECK(r.attention == 12.0 * 4 * 5 * 20);
  CHECK(r.lm_head == 0);
  auto window = hand_shape();
  window.sliding_window = 2;
  auto a = step_flops(window, tess::config::RunStage::Ar, 2, 5, 0, 0);
  CHECK(a.attention == 12.0 * 4 * 2 * 8);  // each of the 8 positions attends to at most 2
}
