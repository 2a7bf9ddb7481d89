// The training loop in-process, over a fake stage whose loss and gradient are
// known in closed form: token-count normalisation across accumulation,
// clipping, the non-finite policies, the save cadence and the resume of the
// trainer's state. Fast: no tokenizer, no model, no `tess` process.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "tests/support/test_support.h"
#include "train/checkpoint_manager.h"
#include "train/options.h"
#include "train/stage.h"
#include "train/train_step.h"
#include "train/trainer.h"
#include "train/weight_update.h"

namespace fs = std::filesystem;
using namespace tess::train;

namespace {

// One weight vector w [4]; micro-batch k of the run (k = 0, 1, ...) has
// rows(k) = 1 + k % 3 rows x_r (a fixed function of k and r) and the loss
// sum_r w . x_r over them, so d loss / d w = sum_r x_r. `poison_batch`
// makes that batch's loss NaN.
class FakeStage : public Stage {
 public:
  struct Module : torch::nn::Module {
    torch::Tensor w;
    Module() { w = register_parameter("w", torch::tensor({0.5f, -0.25f, 1.0f, 2.0f})); }
  };

  static int64_t rows(int64_t k) { return 1 + k % 3; }
  static torch::Tensor x(int64_t k) {
    auto r = torch::arange(rows(k), torch::kFloat32).unsqueeze(1);
    auto c = torch::arange(4, torch::kFloat32).unsqueeze(0);
    return torch::sin(r * 0.7 + c * 1.3 + static_cast<double>(k)) * (1.0 + static_cast<double>(k % 5));
  }

  std::string name() const override { return "ar"; }
  torch::nn::Module& module() override { return module_; }
  std::vector<NamedParameter> parameters() override { return {{"w", module_.w, true}}; }
  MicroBatch next_batch() override {
    MicroBatch mb;
    mb.ids = torch::full({rows(next_), 2}, next_, torch::kInt64);  // the batch's index travels in the ids
    mb.span_mask = torch::ones({rows(next_), 2}, torch::kBool);
    mb.tokens = rows(next_);
    mb.slot = 0;
    ++next_;
    return mb;
  }
  LossTerms loss(const MicroBatch& mb) override {
    int64_t k = mb.ids[0][0].item<int64_t>();
    auto sum = torch::matmul(x(k), module_.w).sum();
    if (k == poison_batch) sum = sum * std::numeric_limits<float>::quiet_NaN();
    return {sum, mb.tokens};
  }
  StepFlops flops(int64_t, int64_t, int64_t, double) const override { return {}; }
  std::map<std::string, std::string> state() const override { return {{"next", std::to_string(next_)}}; }
  void load_state(const std::vector<std::map<std::string, std::string>>& ranks, const std::string&) override {
    next_ = std::stoll(ranks.at(0).at("next"));
  }
  std::function<void(const fs::path&)> model_writer(tess::checkpoint::DeferredCopies*) override {
    auto w = module_.w.detach().clone();
    return [w](const fs::path& dir) {
      fs::create_directories(dir);
      tess::model::write_safetensors(dir / "model.safetensors", {{"w", w}});
    };
  }
  std::string tokenizer_hash() const override { return "fake"; }
  int64_t samples_per_epoch() const override { return 100; }

  int64_t poison_batch = -1;

 private:
  Module module_;
  int64_t next_ = 0;
};

tess::config::Config config(const fs::path& run, const std::vector<std::string>& sets) {
  std::vector<std::string> all = {"run.dir=" + run.string(), "log.every=1", "log.tensorboard=false",
                                  "log.peak_gflops=1", "train.lr=0.1", "train.grad_clip=0",
                                  "run.cpu_allocator=system"};
  all.insert(all.end(), sets.begin(), sets.end());
  return tess::config::Config::load_string("run: {stage: ar}\n", "loop.yaml", all);
}

StageFactory fake(int64_t poison_batch = -1) {
  return [poison_batch](const tess::config::Config&, const StageContext&) {
    auto s = std::make_unique<FakeStage>();
    s->poison_batch = poison_batch;
    return std::unique_ptr<Stage>(std::move(s));
  };
}

std::vector<nlohmann::json> lines(const fs::path& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The gradient TrainStep leaves on w for the first step (micro-batches 0..accum-1).
torch::Tensor first_step_gradient(const std::vector<std::string>& sets) {
  tess::test::TempDir dir;
  auto cfg = config(dir / "run", sets);
  FakeStage stage;
  tess::dist::Dist single;
  auto options = TrainOptions::from_config(cfg);
  auto params = stage.parameters();
  WeightUpdate update(params, {options.adamw, false, false}, single);
  TrainStep step(options, stage, update, single, torch::kCPU, params);
  auto r = step.compute();
  REQUIRE(r.finite);
  return params[0].tensor.grad().clone();
}

}  // namespace

TEST_CASE("loop: global_tokens divides the step's summed loss by all its tokens, micro_batch averages the "
          "micro-batch means",
          "[unit][train]") {
  // Micro-batches 0 and 1 have 1 and 2 rows.
  auto g0 = FakeStage::x(0).sum(0), g1 = FakeStage::x(1).sum(0);
  auto global = first_step_gradient({"train.grad_accum=2"});
  CHECK(torch::allclose(global, (g0 + g1) / 3.0, 1e-6, 1e-6));
  auto per_micro = first_step_gradient({"train.grad_accum=2", "diffusion.loss_normalization=micro_batch"});
  CHECK(torch::allclose(per_micro, (g0 / 1.0 + g1 / 2.0) / 2.0, 1e-6, 1e-6));
  CHECK_FALSE(torch::allclose(global, per_micro, 1e-6, 1e-6));
}

TEST_CASE("loop: clipping scales the gradient AdamW sees to train.grad_clip", "[unit][train]") {
  tess::test::TempDir dir;
  FakeStage stage;
  tess::dist::Dist single;
  auto options = TrainOptions::from_config(config(dir / "run", {"train.grad_clip=0.5", "train.adam_beta1=0.9"}));
  auto params = stage.parameters();
  WeightUpdate update(params, {options.adamw, false, false}, single);
  TrainStep step(options, stage, update, single, torch::kCPU, params);
  auto r = step.compute();
  auto g = params[0].tensor.grad().clone();
  REQUIRE(r.grad_norm == Approx(g.norm().item<double>()));
  REQUIRE(r.grad_norm > 0.5);
  step.apply(r, 0.1);
  // AdamW's first moment after one step is (1 - beta1) x the gradient it was given.
  auto clipped = g * (0.5 / (r.grad_norm + 1e-6));
  CHECK(torch::allclose(update.state().at("w.exp_avg"), 0.1 * clipped, 1e-6, 1e-7));
}

TEST_CASE("loop: a non-finite step is skipped (counted), aborts naming the step, or rolls back past its data",
          "[unit][train]") {
  SECTION("skip") {
    tess::test::TempDir dir;
    auto cfg = config(dir / "run", {"train.max_steps=5", "train.nonfinite_policy=skip"});
    Trainer t(cfg, std::make_shared<tess::dist::Dist>(), fake(/*poison_batch=*/2));
    CHECK(t.run() == 0);
    auto m = lines(dir / "run");
    REQUIRE(m.size() == 4);  // step 3 was skipped: no line
    CHECK(m[2]["step"] == 4);
    CHECK(m.back()["skipped"] == 1);
  }
  SECTION("abort") {
    tess::test::TempDir dir;
    auto cfg = config(dir / "run", {"train.max_steps=5", "train.nonfinite_policy=abort"});
    Trainer t(cfg, std::make_shared<tess::dist::Dist>(), fake(2));
    CHECK_THAT(tess::test::error_of([&] { t.run(); }),
               Catch::Contains("non-finite loss or gradient at step 3") && Catch::Contains("nonfinite_policy is abort"));
    CHECK(fs::exists(dir / "run" / "nonfinite_step_00000003" / "model.safetensors"));
  }
  SECTION("rollback") {
    tess::test::TempDir dir;
    auto cfg = config(dir / "run", {"train.max_steps=6", "train.nonfinite_policy=rollback", "checkpoint.every=2"});
    Trainer t(cfg, std::make_shared<tess::dist::Dist>(), fake(3));
    CHECK(t.run() == 0);
    auto m = lines(dir / "run");
    // Steps 1-2, 3 (batch 2), then step 4 meets batch 3: back to step 2's
    // checkpoint, batches 2 and 3 dropped, steps 3-6 on batches 4-7.
    std::vector<int64_t> steps;
    for (const auto& j : m)
      if (j.contains("loss")) steps.push_back(j["step"]);
    CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
    int rollbacks = 0;
    for (const auto& j : m)
      if (j.contains("rollback_from_step")) {
        ++rollbacks;
        CHECK(j["step"] == 2);
        CHECK(j["rollback_from_step"] == 4);
        CHECK(j["data_skipped_steps"] == 2);
      }
    CHECK(rollbacks == 1);
  }
}

TEST_CASE("loop: checkpoints every N steps and at the end, and a resumed run continues the trainer's state",
          "[unit][train]") {
  tess::test::TempDir dir;
  auto run = dir / "run";
  std::vector<std::string> sets = {"checkpoint.every=3", "checkpoint.keep_last=5", "train.nonfinite_policy=skip"};
  auto first = sets;
  first.push_back("train.max_steps=7");
  {
    auto cfg = config(run, first);
    Trainer t(cfg, std::make_shared<tess::dist::Dist>(), fake(4));  // step 5 skipped
    REQUIRE(t.run() == 0);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run / "checkpoints"))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"step_00000003", "step_00000006", "step_00000007"});
  auto m7 = tess::checkpoint::verify_checkpoint(run / "checkpoints/step_00000007");
  // 7 steps, one skipped: the tokens of batches 0-3 and 5-6 (1 + k % 3 rows each).
  CHECK(m7.tokens_seen == 1 + 2 + 3 + 1 + 3 + 1);
  // Resume to 10 steps: the counters continue, the losses match one run of 10.
  auto resumed = sets;
  resumed.push_back("train.max_steps=10");
  for (const auto& dir_of_run : {run, dir / "whole"}) {
    auto cfg = config(dir_of_run, resumed);
    Trainer t(cfg, std::make_shared<tess::dist::Dist>(), fake(4));
    REQUIRE(t.run() == 0);
  }
  auto whole = dir / "whole";
  auto a = lines(run), b = lines(whole);
  REQUIRE(a.size() == 9);  // 10 steps, one skipped
  REQUIRE(b.size() == 9);
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("line " << i);
    CHECK(a[i]["loss"].dump() == b[i]["loss"].dump());
    CHECK(a[i]["tokens"] == b[i]["tokens"]);
    CHECK(a[i]["skipped"] == b[i]["skipped"]);
  }
  tess::model::SafetensorsFile rank0(run / "checkpoints/step_00000010" / tess::checkpoint::rank_file_name(0));
  CHECK(rank0.metadata().at("skipped") == "1");
  CHECK(rank0.metadata().at("next") == "10");  // the stage's state: 10 batches drawn
}
