// What only a GPU can check (scripts/gpu_check.sh runs `ctest -L cuda`).
// Every case skips, saying why, where LibTorch sees no CUDA device: on a
// CPU-only machine these are reported as skipped, never as passed.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <chrono>

#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/noise_scheduler.h"
#include "core/dist/dist.h"
#include "core/model/decoder.h"
#include "tests/support/test_support.h"
#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using namespace tess::test;

#define REQUIRE_GPU()                                                                                   \
  do {                                                                                                  \
    if (!torch::cuda::is_available()) TESS_SKIP("no CUDA device visible to LibTorch: nothing ran on a GPU"); \
  } while (0)

namespace {

tess::model::ModelConfig small_config() {
  auto c = tess::model::ModelConfig::preset("tiny");
  c.vocab_size = 64;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.cpu().to(torch::kFloat64), y = b.cpu().to(torch::kFloat64);
  return ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item<double>();
}

const torch::Device kGpu(torch::kCUDA, 0);

// A short adaptation run of the trainer tests' workspace on `device`.
std::string adaptation(const fs::path& run, const std::string& device, int steps, const std::string& extra = "") {
  auto& w = workspace();
  auto cfg = w.config("cuda_adaptation", "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n");
  return "train " + cfg.string() + " --set run.dir=" + run.string() + " --set data.tokenizer=" + w.tokenizer.string() +
         " --set data.train=[" + w.corpus.string() + "] --set train.max_steps=" + std::to_string(steps) +
         " --set run.device=" + device + extra;
}

}  // namespace

TEST_CASE("cuda: decoder logits and the diffusion loss agree with the CPU in fp32 (1e-4)", "[cuda][model]") {
  REQUIRE_GPU();
  torch::NoGradGuard no_grad;
  for (auto attention : {tess::model::Attention::Causal, tess::model::Attention::Bidirectional}) {
    tess::model::Decoder cpu(small_config(), 7), gpu(small_config(), 7);
    gpu->to(kGpu);
    auto ids = torch::randint(0, 64, {2, 24}, torch::kInt64);
    tess::model::ForwardOptions o;
    o.attention = attention;
    auto a = cpu->forward(ids, o), b = gpu->forward(ids.to(kGpu), o);
    CHECK(max_rel_diff(b, a) < 1e-4);
  }
  tess::diffusion::DiffusionLM cpu(tess::model::Decoder(small_config(), 3), tess::diffusion::SelfCondition::LogitsMean,
                                   false, 5);
  tess::diffusion::DiffusionLM gpu(tess::model::Decoder(small_config(), 3), tess::diffusion::SelfCondition::LogitsMean,
                                   false, 5);
  gpu->to(kGpu);
  tess::diffusion::DiffusionLoss loss(tess::diffusion::NoiseScheduler(tess::diffusion::Schedule::CosineImproved, 100),
                                      {5.0, 0.0});
  auto ids = torch::randint(0, 64, {2, 16}, torch::kInt64);
  auto span = torch::zeros({2, 16}, torch::kBool);
  span.narrow(1, 6, 10).fill_(true);
  auto t = torch::tensor({10, 70}, torch::kInt64);
  auto noise = torch::randn({2, 16, 64});
  auto prev = torch::randn({2, 16, 64});
  auto a = loss.replay(*cpu, ids, span, t, noise, prev, nullptr);
  auto b = loss.replay(*gpu, ids.to(kGpu), span.to(kGpu), t.to(kGpu), noise.to(kGpu), prev.to(kGpu), nullptr);
  CHECK(b.tokens == a.tokens);
  CHECK(max_rel_diff(b.loss_sum, a.loss_sum) < 1e-4);
}

TEST_CASE("cuda: 20 AR training steps on the GPU give the CPU's losses within 1e-3 (relative)", "[cuda][train]") {
  REQUIRE_GPU();
  auto& w = workspace();
  auto cfg = w.config("cuda_ar", "run:\n  stage: ar\n");
  auto cpu = w.dir / "runs/cuda_ar_cpu", gpu = w.dir / "runs/cuda_ar_gpu";
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=20";
  train_ok(cfg, "--set run.dir=" + cpu.string() + " --set run.device=cpu" + common);
  auto r = run_tess("train " + cfg.string() + " --set run.dir=" + gpu.string() + " --set run.device=cuda" + common);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, Catch::Contains("training on cuda:0"));
  REQUIRE(metrics(gpu).size() == 20);
  auto differ = differing_steps(cpu, gpu, 1e-3);
  INFO(joined(differ));
  CHECK(differ.empty());
}

// The diffusion stages draw their noise on the GPU (another generator than
// the CPU's), so their losses match the CPU's in distribution, not step by
// step: the step itself is compared above (AR) and in the replay test.
TEST_CASE("cuda: adaptation trains on the GPU and resumes bit-exactly (device noise seeded from the stream)",
          "[cuda][train]") {
  REQUIRE_GPU();
  auto& w = workspace();
  auto full = w.dir / "runs/cuda_adapt_full", resumed = w.dir / "runs/cuda_adapt_resumed";
  auto r = run_tess(adaptation(full, "cuda", 20));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto m = metrics(full);
  REQUIRE(m.size() == 20);
  CHECK(m.back()["loss"].get<double>() < m.front()["loss"].get<double>());
  train_killed_and_resumed(tess_cmd(adaptation(resumed, "cuda", 20, " --set checkpoint.every=4")), 12, resumed);
  CHECK(loss_texts(resumed) == loss_texts(full));
}

TEST_CASE("cuda: NCCL all-reduce and barrier in a group of one", "[cuda][nccl]") {
  REQUIRE_GPU();
  tess::dist::DistEnv env;
  env.master_port = free_port();
  auto d = tess::dist::Dist::create(env, "nccl", std::chrono::milliseconds(60000), /*group_of_one=*/true);
  REQUIRE(d->backend_name() == "nccl");
  CHECK(d->device() == kGpu);
  std::vector<torch::Tensor> t{torch::tensor({1.5f, -2.0f, 3.25f}, torch::TensorOptions().device(kGpu))};
  d->all_reduce_sum(t, "cuda test all-reduce");
  CHECK(torch::equal(t[0].cpu(), torch::tensor({1.5f, -2.0f, 3.25f})));
  d->barrier("cuda test barrier");
  CHECK(d->sum(2.5, "cuda test sum") == 2.5);
}

TEST_CASE("cuda: tess generate samples on the GPU, the same answers for the same seed", "[cuda][eval]") {
  REQUIRE_GPU();
  auto& w = workspace();
  auto run = w.dir / "runs/cuda_sampler";
  auto r = run_tess(adaptation(run, "cuda", 10));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto generate = [&](const std::string& device) {
    return run_tess("generate --model " + (run / "final").string() +
                    " --prompt 'the quick brown fox' --steps 8 --length 12 --seed 3 --device " + device);
  };
  auto a = generate("cuda"), b = generate("cuda");
  INFO(a.err);
  REQUIRE(a.exit_code == 0);
  CHECK(!a.out.empty());
  CHECK(a.out == b.out);
}
