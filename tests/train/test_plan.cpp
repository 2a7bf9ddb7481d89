#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/model/decoder.h"
#include "core/util/error.h"
#include "core/util/tensor_memory.h"
#include "tests/support/test_support.h"
#include "train/flops.h"
#include "train/plan.h"

using Catch::Matchers::Contains;
using tess::test::error_of;
using tess::test::run_tess;
using tess::train::Precision;

namespace {

// A small diffusion run whose every term is worked out by hand below:
// V 100 (+1 [PAD]), H 8, I 16, 2 layers, 2 heads / 1 kv head of 4.
const char* kSmallConfig = R"(run:
  stage: adaptation
model:
  vocab_size: 100
  hidden_size: 8
  intermediate_size: 16
  num_layers: 2
  num_heads: 2
  num_kv_heads: 1
data:
  seq_len: 4
train:
  batch_size: 2
  grad_accum: 3
  max_steps: 10
dist:
  zero: 1
  bucket_mb: 0.001
)";

tess::train::MemoryPlan small_plan(const std::vector<std::string>& sets = {}, int64_t world = 2) {
  auto cfg = tess::config::Config::load_string(kSmallConfig, "small.yaml", sets);
  tess::train::PlanOptions o;
  o.world_size = world;
  return tess::train::estimate(tess::train::plan_inputs(cfg, o));
}

double term(const tess::train::MemoryPlan& p, const std::string& key) {
  auto* t = p.term(key);
  INFO(key);
  REQUIRE(t != nullptr);
  return t->value;
}

}  // namespace

TEST_CASE("plan: every term of a small fp32 diffusion run, by hand", "[unit][plan]") {
  auto p = small_plan();
  // Parameters (V = 101 after [PAD]): embedding 808, per layer q 64 + k 32 +
  // v 32 + o 64 + gate/up/down 3 x 128 + norms 2 x 8 = 592, final norm 8,
  // LM head 808, timestep_embed 8.
  CHECK(p.in.model.vocab_size == 101);
  CHECK(p.parameters == 808 + 2 * 592 + 8 + 808 + 8);
  CHECK(p.parameters == 2816);
  CHECK(term(p, "weights") == 2816 * 4);
  CHECK(term(p, "gradients") == 2816 * 4);
  CHECK(p.term("master_weights") == nullptr);
  // ZeRO-1 over 2 ranks, greedy by elements in parameter order: rank 0 takes
  // the embedding (808), rank 1 layer 0 and layer 1 up to gate (912), then
  // up1 -> r0 (936), down1 -> r1 (1040), the norms -> r0 (960), lm_head -> r0
  // (1768), timestep_embed -> r1 (1048).
  CHECK(p.owned_parameters == 1768);
  CHECK(term(p, "adamw_states") == 1768 * 8);
  CHECK(p.persistent == 2816 * 4 * 2 + 1768 * 8);

  // Per token and layer, fp32: two norms x (4H + 4 + 4H + 4H) = 200, q 32,
  // k 16, v 16, attention output 32, log-sum-exp 2 x 4, MLP 4 x 4I = 256.
  auto saved = tess::train::layer_saved_tensors(p.in.model, Precision::Fp32, false);
  int64_t per_token = 0;
  for (const auto& s : saved) per_token += s.bytes_per_token;
  CHECK(per_token == 200 + 32 + 16 + 16 + 32 + 8 + 256);
  const int64_t tokens = 2 * 4;
  CHECK(term(p, "activations") == 2 * tokens * 560);
  CHECK(term(p, "backward_working_set") == tokens * (3 * 16 * 4 + 3 * 8 * 4) + 128 * 4);
  // Final norm: fp32 input, 1/rms, x/rms (the fused LM-head loss keeps nothing of its input).
  CHECK(term(p, "final_norm_head_input") == tokens * (4 * 8 + 4 + 8 * 4));
  // Vocabulary space: N = 8 span rows x V 101 = 808. The fused loss: one
  // chunk of 8 rows of logits, the head's weight gradient (V x H, fp32) and
  // the rows' gradient (8 x H) kept for backward, the gathered rows.
  CHECK(term(p, "lm_head_loss") == 808 * 4 + (808 * 4 + 8 * 8 * 4) + 8 * 8 * 4);
  // Backward: what was kept plus the scaled copies of both gradients.
  CHECK(term(p, "lm_head_loss_backward") == (808 * 4 + 8 * 8 * 4) + 808 * 4 + 8 * 8 * 4);
  // Self-conditioning keeps the first pass's 8 predicting rows (8 x H fp32);
  // their logits are made per input chunk (8 x V fp32).
  CHECK(term(p, "self_condition_states") == 8 * 8 * 4);
  CHECK(term(p, "input_projection") == 4 * 8 * 101 * 4 + 8 * 101 * 4);
  // Optimizer step: the largest gradient (808 x 4 B) travels alone; ZeRO
  // broadcast of rank 0's 1768 elements.
  CHECK(term(p, "allreduce_bucket") == 808 * 4);
  CHECK(p.term("grad_norm_temp") == nullptr);  // the norm reduces in place
  CHECK(p.term("adamw_temp") == nullptr);  // the fused AdamW kernel updates in place
  CHECK(term(p, "zero_broadcast") == 1768 * 4);

  CHECK(p.forward_peak == 8960 + 544 + 6976 + 256);
  CHECK(p.backward_peak == 8960 + 544 + 6976);
  CHECK(p.step_peak == 1768 * 4);
  CHECK(p.forward_start_peak == 16160 + 256);
  // The forward end sets the peak; backward (16,480) and the input-projection phase (16,416) stay below.
  CHECK(p.total == 36672 + 16736);

  // FLOPs per token (train/flops.h): 6 x the layers' matmul weights (2 x (8x8 + 2 x 8x4 + 8x8 + 3 x 8x16) =
  // 1152) + 12 x layers x H x L + 6VH (LM head) + 2VH (input projection) on span rows (all of them at
  // span fraction 1) + p x the forward of those (2 x 1152 + 4 x layers x H x L + 2VH + 2VH).
  CHECK(tess::train::layer_matmul_parameters(p.in.model) == 1152);
  double expected = 6.0 * 1152 + 12.0 * 2 * 8 * 4 + 6.0 * 101 * 8 + 2.0 * 101 * 8 +
                    0.5 * (2.0 * 1152 + 4.0 * 2 * 8 * 4 + 2.0 * 101 * 8 + 2.0 * 101 * 8);
  CHECK(p.flops_per_token == Approx(expected).epsilon(1e-12));
  CHECK(p.tokens_per_step == 2 * 3 * 2 * 4);
  auto t = tess::train::throughput(p, 0.5, 1e-6);  // 1 MFLOP/s peak
  CHECK(t.tokens_per_s_per_rank == Approx(0.5e6 / expected));
  CHECK(t.step_seconds == Approx(48.0 / (2 * t.tokens_per_s_per_rank)));
  CHECK(t.total_seconds == Approx(10 * t.step_seconds));
}

TEST_CASE("plan: precision, ZeRO and checkpointing change the terms they should", "[unit][plan]") {
  auto base = small_plan();
  SECTION("without ZeRO every rank holds all AdamW moments and no broadcast buffer") {
    auto p = small_plan({"dist.zero=0"});
    CHECK(term(p, "adamw_states") == 2816 * 8);
    CHECK(p.term("zero_broadcast") == nullptr);
  }
  SECTION("one rank: no all-reduce bucket") {
    auto p = small_plan({}, 1);
    CHECK(p.term("allreduce_bucket") == nullptr);
    CHECK(term(p, "adamw_states") == 2816 * 8);
  }
  SECTION("bf16_master: bf16 weights and gradients plus fp32 masters and their gradients") {
    auto p = small_plan({"train.precision=bf16_master", "model.dtype=bfloat16"});
    CHECK(term(p, "weights") == 2816 * 2);
    CHECK(term(p, "gradients") == 2816 * 2);
    CHECK(term(p, "master_weights") == 2816 * 4);
    CHECK(term(p, "master_gradients") == 2816 * 4);
    // Layer: norms 2 x (4H + 4 + 2H + 2H) = 136, q 16, k 8, v 8, out 16, lse 8, MLP 4 x 2I = 128.
    CHECK(term(p, "activations") == 2 * 8 * (136 + 16 + 8 + 8 + 16 + 8 + 128));
    // bf16 matmuls: fp32 chunk + bf16 product + bf16 gradient, bf16 weight-gradient temp, bf16 rows.
    CHECK(term(p, "lm_head_loss") == 8 * 101 * 8 + (808 * 4 + 8 * 8 * 2) + 808 * 2 + 8 * 8 * 2);
  }
  SECTION("bf16_autocast: bf16 casts of the inputs and cached bf16 weight copies") {
    auto p = small_plan({"train.precision=bf16_autocast"});
    CHECK(term(p, "weights") == 2816 * 4);
    // Norms 2 x (4H + 4 + 4H) (fp32 residual; their outputs are not kept, the
    // 3 + 2 bf16 casts of 2H are), q/k/v/out/lse 16 + 8 + 8 + 16 + 8, MLP 4 x 2I.
    CHECK(term(p, "activations") == 2 * 8 * (136 + 5 * 16 + 56 + 128));
    // Matmul weights: 2 x 576 in the layers + LM head 808 + timestep_embed 8.
    CHECK(term(p, "autocast_weight_copies") == (2 * 576 + 808 + 8) * 2);
    CHECK(term(p, "final_norm_head_input") == 8 * (4 * 8 + 4 + 8 * 4));
    // Stage ar: the fused loss casts the head itself; autocast caches only the layers' weights.
    CHECK(term(small_plan({"train.precision=bf16_autocast", "run.stage=ar"}), "autocast_weight_copies") ==
          2 * 576 * 2);
  }
  SECTION("checkpointing keeps layer inputs plus one recomputed layer") {
    auto p = small_plan({"model.activation_checkpointing=true"});
    CHECK(term(p, "activations") == 2 * 8 * 8 * 4);
    CHECK(term(p, "recomputed_layer") == 8 * 560);
    auto a = small_plan({"model.activation_checkpointing=true", "train.precision=bf16_autocast"});
    // Recomputed under the forward's autocast (model/decoder.cpp): bf16 saved
    // tensors (400 B/token, as the activations above) + the layer's 576 weights in bf16.
    CHECK(term(a, "recomputed_layer") == 8 * 400 + 576 * 2);
    // Checkpointed layers run without grad in the forward: autocast caches no copies of their weights.
    CHECK(term(a, "autocast_weight_copies") == (808 + 8) * 2);
  }
  SECTION("no self-conditioning: no prev logits and no extra forward") {
    auto p = small_plan({"diffusion.self_condition=none"});
    CHECK(p.term("self_condition_states") == nullptr);
    CHECK(term(p, "input_projection") == 4 * 8 * 101 * 4);
    CHECK(p.flops_per_token == Approx(6.0 * 1152 + 12.0 * 2 * 8 * 4 + 6.0 * 101 * 8 + 2.0 * 101 * 8));
  }
  SECTION("stage ar: logits for L - 1 positions, no timestep_embed, no input projection") {
    auto p = small_plan({"run.stage=ar"});
    CHECK(p.parameters == 2808);
    CHECK(term(p, "lm_head_loss") == 2 * 3 * 101 * 4 + (808 * 4 + 2 * 3 * 8 * 4));
    CHECK(p.term("input_projection") == nullptr);
  }
  CHECK(base.total > 0);
}

TEST_CASE("plan: the config's inconsistencies are the trainer's errors", "[unit][plan]") {
  CHECK_THAT(error_of([] { small_plan({"train.precision=bf16_master"}); }), Contains("set model.dtype: bfloat16"));
  CHECK_THAT(error_of([] { small_plan({"model.dtype=bfloat16"}); }), Contains("need train.precision: bf16_master"));
  CHECK_THAT(error_of([] { small_plan({"model.path=/nonexistent/model"}); }), Contains("--model-preset"));
  auto p = small_plan({"model.add_pad_token=false"});
  CHECK(p.in.model.vocab_size == 100);
}

TEST_CASE("plan: Mistral-7B parameter count and the documented stage-1 figures", "[unit][plan]") {
  auto mistral = tess::model::ModelConfig::preset("mistral-7b-v0.1");
  CHECK(mistral.num_parameters() == 7241732096LL);
  auto cfg = tess::config::Config::load(std::string(TESS_SOURCE_DIR) + "/configs/mistral7b/adaptation.yaml",
                                        {"train.grad_accum=16"});
  tess::train::PlanOptions o;
  o.world_size = 8;
  o.model_preset = "mistral-7b-v0.1";
  auto p = tess::train::estimate(tess::train::plan_inputs(cfg, o));
  // V 32001 ([PAD]) adds two rows of 4096 (embedding, LM head), timestep_embed one more.
  const int64_t P = 7241732096LL + 2 * 4096 + 4096;
  CHECK(p.in.model.vocab_size == 32001);
  CHECK(p.parameters == P);
  CHECK(term(p, "weights") == P * 4.0);
  CHECK(term(p, "gradients") == P * 4.0);
  // ZeRO-1 over 8 ranks by whole tensors: the fullest rank is within one tensor of P / 8.
  CHECK(p.owned_parameters >= P / 8);
  CHECK(p.owned_parameters <= P / 8 + 32001 * 4096);
  CHECK(term(p, "activations") == 32.0 * 2048 * 4096 * 4);  // checkpointed layer inputs, fp32 residual
  // Every weight but the embedding (a gather) and the 2 x 32 + 1 RMSNorm weights is a matmul weight.
  // Only the matmul weights outside the checkpointed layers are cast with grad enabled: LM head, timestep_embed.
  CHECK(term(p, "autocast_weight_copies") == 2.0 * (32001LL * 4096 + 4096));
  // FLOPs per token (train/flops.h) at span fraction 1 (every position noised, the upper bound): the
  // layers' 6,979,321,856 matmul weights, attention over L 2048, the LM head and input projection on
  // every row, half the steps self-conditioned; ~7,100 tokens/s at 40% of 989 TFLOP/s.
  const double W = 6979321856.0, VH = 32001.0 * 4096, A = 32.0 * 4096 * 2048;
  CHECK(tess::train::layer_matmul_parameters(p.in.model) == 6979321856LL);
  double flops = 6 * W + 12 * A + 6 * VH + 2 * VH + 0.5 * (2 * W + 4 * A + 2 * VH + 2 * VH);
  CHECK(p.flops_per_token == Approx(flops));
  auto t = tess::train::throughput(p, 0.4, 989);
  CHECK(t.tokens_per_s_per_rank == Approx(0.4 * 989e12 / flops));
  CHECK(p.tokens_per_step == 1 * 16 * 8 * 2048);
  // The figures of docs/plan.md's stage-1 table. 990,949,376 is the fullest
  // rank of the greedy owner assignment (replayed independently in Python).
  CHECK(p.owned_parameters == 990949376LL);
  const double tokens = 2048, V = 32001, H = 4096, I = 14336;
  double persistent = 2.0 * P * 4 + 990949376.0 * 8;
  double common = 2.0 * (V * H + H) + 32 * tokens * H * 4 + tokens * (4 * H + 4 + H * 4);
  // The fused loss under autocast: kept fp32 weight gradient and bf16 row gradients, a 512-row chunk
  // (fp32 + bf16 product + bf16 gradient), the bf16 weight-gradient temp, the bf16 casts of weight and
  // rows, the gathered fp32 rows; then the self-conditioning states (fp32 rows under autocast).
  double lm_loss = (V * H * 4 + tokens * H * 2) + 512 * V * 8 + V * H * 2 + (V * H * 2 + tokens * H * 2) + tokens * H * 4;
  CHECK(p.forward_peak == common + lm_loss + tokens * H * 4);
  // Backward: the layer recomputed under autocast (bf16 saved tensors, counted as for the small model:
  // norms 2 x (4H + 4 + 4H), five bf16 casts of 2H, q/k/v/out/lse 2H + 2 x 2 x 1024 + 2H + 32 x 4, MLP
  // 4 x 2I = 241,800 B/token, plus its 218,103,808 matmul weights in bf16) and the working set outgrow
  // the head's gradients.
  const double per_token = 2 * (4 * H + 4 + 4 * H) + 5 * 2 * H + (2 * H + 2 * 2 * 1024 + 2 * H + 32 * 4) + 4 * 2 * I;
  CHECK(per_token == 241800);
  CHECK(p.backward_peak ==
        common + tokens * per_token + 218103808.0 * 2 + tokens * (3 * I * 4 + 3 * H * 4) + I * H * 4);
  CHECK(p.step_peak == 990949376.0 * 4);  // the ZeRO-1 broadcast buffer of the fullest rank
  CHECK(p.total == persistent + p.step_peak);
  CHECK(p.total / (1024.0 * 1024 * 1024) == Approx(65.030).margin(0.0005));
}

// ---------------------------------------------------------------------------
// The activation model against what LibTorch really keeps: count every CPU
// allocation while a decoder runs forward with autograd, and compare the bytes
// still alive afterwards (the saved tensors and the output) with the plan.

namespace {

// Bytes alive after hidden_states() that were allocated during it; with
// autocast also before its weight-copy cache is cleared (`with_cache`).
struct Measured {
  int64_t bytes = 0, with_cache = 0;
};

Measured measured_forward_bytes(tess::model::Decoder& decoder, const torch::Tensor& embeds, bool autocast) {
  tess::util::TensorMemoryScope counting;
  int64_t before = counting.live();
  Measured m;
  torch::Tensor out;
  if (autocast) {
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::increment_nesting();
  }
  tess::model::ForwardOptions opt;
  opt.attention = tess::model::Attention::Bidirectional;
  out = decoder->hidden_states(embeds, opt);
  m.with_cache = counting.live() - before;
  if (autocast) {
    at::autocast::decrement_nesting();
    at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, false);
  }
  m.bytes = counting.live() - before;
  REQUIRE(out.requires_grad());
  return m;
}

}  // namespace

TEST_CASE("plan: the per-layer activation count matches what autograd keeps", "[unit][plan]") {
  torch::manual_seed(0);
  auto mc = tess::model::ModelConfig::preset("tiny");  // H 64, I 176, 2 layers, 4 heads / 2 kv heads
  const int64_t b = 2, l = 16, t = b * l, h = mc.hidden_size, hd = mc.resolved_head_dim();
  auto expected = [&](Precision p, bool autocast, bool ckpt) {
    int64_t per = 0;
    for (const auto& s : tess::train::layer_saved_tensors(mc, p, autocast)) per += s.bytes_per_token;
    int64_t r = p == Precision::Bf16Master ? 2 : 4;
    int64_t layers = ckpt ? mc.num_hidden_layers * t * r * h : mc.num_hidden_layers * t * per;
    // Layer 0's input (the embeddings) exists before the call; the final norm
    // keeps its fp32 input, 1/rms and x/rms and returns its output; the
    // rotary cos/sin tables [L, head_dim] are saved once.
    // (With bf16 weights and no checkpointing, layer 0 keeps a fresh fp32 copy of it instead.)
    int64_t preexisting = ckpt ? r * h * t : (p == Precision::Bf16Master ? 0 : 4 * h * t);
    return layers - preexisting + t * (4 * h + 4 + 2 * r * h) + 2 * l * hd * r;
  };
  SECTION("fp32") {
    tess::model::Decoder dec(mc, 1);
    auto embeds = torch::randn({b, l, h}, torch::requires_grad());
    CHECK(measured_forward_bytes(dec, embeds, false).bytes == expected(Precision::Fp32, false, false));
  }
  SECTION("fp32 with activation checkpointing") {
    tess::model::Decoder dec(mc, 1);
    dec->set_activation_checkpointing(true);
    auto embeds = torch::randn({b, l, h}, torch::requires_grad());
    CHECK(measured_forward_bytes(dec, embeds, false).bytes == expected(Precision::Fp32, false, true));
  }
  SECTION("bf16 weights") {
    auto bf = mc;
    bf.torch_dtype = "bfloat16";
    tess::model::Decoder dec(bf, 1);
    auto embeds = torch::randn({b, l, h}, torch::TensorOptions().dtype(torch::kBFloat16).requires_grad(true));
    CHECK(measured_forward_bytes(dec, embeds, false).bytes == expected(Precision::Bf16Master, false, false));
  }
  int64_t layer_linear = 0;
  {
    tess::model::Decoder dec(mc, 1);
    for (auto& p : dec->named_parameters())
      if (p.key().find("layers.") != std::string::npos && p.key().find("norm") == std::string::npos)
        layer_linear += p.value().numel();
  }
  SECTION("bf16 autocast: the graph also keeps the bf16 copies of the layers' weights") {
    tess::model::Decoder dec(mc, 1);
    auto embeds = torch::randn({b, l, h}, torch::requires_grad());
    auto m = measured_forward_bytes(dec, embeds, true);
    CHECK(m.bytes == expected(Precision::Bf16Autocast, true, false) + 2 * layer_linear);
  }
  SECTION("bf16 autocast with checkpointing: layer inputs only, no cached weight copies") {
    tess::model::Decoder dec(mc, 1);
    dec->set_activation_checkpointing(true);
    auto embeds = torch::randn({b, l, h}, torch::requires_grad());
    auto m = measured_forward_bytes(dec, embeds, true);
    CHECK(m.with_cache == expected(Precision::Bf16Autocast, true, true));  // nothing cached without grad
    CHECK(m.bytes == expected(Precision::Bf16Autocast, true, true));
  }
}

// ---------------------------------------------------------------------------
TEST_CASE("tess plan prints the table, the fit verdict and suggestions", "[unit][plan][cli]") {
  tess::test::TempDir dir;
  auto file = dir.write("small.yaml", kSmallConfig);
  auto r = run_tess("plan " + file.string() + " --world-size 2 --gpu-memory-gb 1");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("AdamW moments"));
  CHECK_THAT(r.out, Contains("fits in 1.0 GiB"));
  CHECK_THAT(r.out, Contains("assumed to have 100 tokens and no PAD"));
  auto over = run_tess("plan " + file.string() + " --world-size 2 --gpu-memory-gb 0.00004 --set dist.zero=0");
  REQUIRE(over.exit_code == 0);
  CHECK_THAT(over.out, Contains("DOES NOT FIT in 0.0 GiB"));
  CHECK_THAT(over.out, Contains("dist.zero: 1 (ZeRO-1"));
  CHECK_THAT(over.out, Contains("model.activation_checkpointing: true"));
  CHECK_THAT(over.out, Contains("train.batch_size: 1 with train.grad_accum: 6"));
}

TEST_CASE("tess plan --json is the plan as JSON", "[unit][plan][cli]") {
  tess::test::TempDir dir;
  auto file = dir.write("small.yaml", kSmallConfig);
  auto r = run_tess("plan " + file.string() + " --world-size 2 --gpu-memory-gb 1 --json --mfu 0.5 --peak-tflops 1");
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out);
  auto p = small_plan();
  CHECK(j["model"]["parameters"] == 2816);
  CHECK(j["memory"]["total_bytes"].get<double>() == p.total);
  CHECK(j["memory"]["fits"] == true);
  CHECK(j["compute"]["flops_per_token"].get<double>() == Approx(p.flops_per_token));
  CHECK(j["compute"]["tokens_per_s_per_rank"].get<double>() == Approx(0.5e12 / p.flops_per_token));
  bool has_adam = false;
  for (const auto& t : j["memory"]["terms"])
    if (t["key"] == "adamw_states") has_adam = t["bytes"].get<double>() == 1768 * 8;
  CHECK(has_adam);
}

TEST_CASE("tess plan rejects a typo'd key and a missing model directory", "[unit][plan][cli]") {
  tess::test::TempDir dir;
  auto bad = dir.write("bad.yaml", "run:\n  stage: adaptation\ntrain:\n  batch_sise: 4\n");
  auto r = run_tess("plan " + bad.string());
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("unknown key 'train.batch_sise' (did you mean 'train.batch_size'?)"));
  auto s = run_tess("plan " + dir.write("ok.yaml", kSmallConfig).string() + " --set train.lr_shedule=cosine");
  CHECK(s.exit_code == 1);
  CHECK_THAT(s.err, Contains("train.lr_schedule"));
  auto m = run_tess("plan " + dir.write("ok2.yaml", kSmallConfig).string() + " --set model.path=/nonexistent");
  CHECK(m.exit_code == 1);
  CHECK_THAT(m.err, Contains("--model-preset"));
}

// docs/plan.md carries `tess plan` outputs verbatim; they must stay current.
TEST_CASE("docs/plan.md's worked tables are what tess plan prints", "[unit][plan][cli]") {
  std::string root = TESS_SOURCE_DIR;
  std::ifstream in(root + "/docs/plan.md");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = ss.str();
  // Blocks: a line "$ tess plan ARGS" opens a ``` block holding its output.
  size_t pos = 0;
  int checked = 0;
  while ((pos = doc.find("```\n$ tess plan ", pos)) != std::string::npos) {
    size_t args_start = pos + 4 + 12, args_end = doc.find('\n', args_start);
    size_t end = doc.find("```", args_end);
    REQUIRE(end != std::string::npos);
    auto args = doc.substr(args_start, args_end - args_start);
    auto body = doc.substr(args_end + 1, end - args_end - 1);
    auto r = tess::test::run_command("cd '" + root + "' && '" + TESS_BINARY + "' plan " + args);
    INFO(args);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == body);
    ++checked;
    pos = end;
  }
  CHECK(checked >= 3);
}
