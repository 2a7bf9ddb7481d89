// `tess bench train`: the trainer's own step (train::Training, train::TrainStep)
// per case, and the eager PyTorch step of the same shapes for comparison.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/dist/dist.h"
#include "core/util/cpu.h"
#include "core/util/cpu_allocator.h"
#include "core/util/error.h"
#include "core/util/log.h"
#include "core/util/rng.h"
#include "core/util/tensor_memory.h"
#include "launch/bench/common.h"
#include "launch/bench/workspace.h"
#include "train/checkpoint_manager.h"
#include "train/plan.h"
#include "train/stage.h"
#include "train/train_step.h"
#include "train/trainer.h"
#include "train/training.h"
#include "train/weight_update.h"

#ifndef TESS_BENCH_EAGER_SCRIPT
#define TESS_BENCH_EAGER_SCRIPT "launch/bench/reference/bench_eager.py"
#endif

namespace tess::bench {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Sums of the step phases over the timed steps.
struct PhaseTotals {
  double data = 0, noise = 0, forward = 0, self_condition = 0, backward = 0, optimizer = 0;
  void add(const train::StepPhases& p) {
    data += p.data, noise += p.noise, forward += p.forward, self_condition += p.self_condition;
    backward += p.backward;
    optimizer += p.reduce + p.update;  // one process: the norm and the scalar sums
  }
};

// The vocabulary-space input path alone (noise, softmax, self-conditioning
// mix, projection through E) on `rows` span rows, no autograd.
double input_path_seconds(diffusion::DiffusionLMImpl& lm, int64_t rows, bool bf16) {
  torch::NoGradGuard no_grad;
  int64_t vocab = lm.decoder->config().vocab_size;
  auto e = lm.decoder->embedding_weight().detach();
  auto labels = torch::randint(3, vocab, {rows}, torch::kInt64);
  auto abar = torch::full({rows}, 0.5f);
  util::Rng rng(0, "bench.input_path");
  auto t0 = Clock::now();
  for (int64_t start = 0; start < rows; start += diffusion::DiffusionLMImpl::kRowChunk) {
    int64_t count = std::min(diffusion::DiffusionLMImpl::kRowChunk, rows - start);
    auto z = diffusion::gaussian_rows(rng, count, vocab);
    auto x = diffusion::noisy_simplex_rows(labels.narrow(0, start, count), abar.narrow(0, start, count), z, 5.0);
    auto p = (torch::softmax(x, -1) + 1.0 / static_cast<double>(vocab)) * 0.5;
    auto y = torch::matmul(bf16 ? p.to(torch::kBFloat16) : p, bf16 ? e.to(torch::kBFloat16) : e);
  }
  return since(t0);
}

json allocator_json(const BenchOptions& opt, const util::CpuCacheStats& start, const util::CpuCacheStats& timed_start,
                    const util::CpuCacheStats& timed_end, int steps) {
  if (opt.cpu_allocator != "caching") return {{"kind", "system"}};
  auto cs = util::CachingCpuAllocatorScope::stats();
  return {{"kind", "caching"},
          {"hits", cs.hits - start.hits},
          {"misses", cs.misses - start.misses},
          {"released", cs.released - start.released},
          {"timed_step_hits", static_cast<double>(timed_end.hits - timed_start.hits) / steps},
          {"timed_step_misses", static_cast<double>(timed_end.misses - timed_start.misses) / steps},
          {"high_water_bytes", cs.high_water}};
}

// What a case's steps measured.
struct CaseSteps {
  PhaseTotals phases;              // over the timed steps
  std::vector<double> step_times;  // the timed steps
  int64_t span_rows = 0, self_conditioned = 0;
  double save_step_total = 0, plain_step_total = 0, copy_wait = 0, writer_after = 0;  // the comparison pairs
  int64_t training_peak_rss = 0, training_peak_tensors = 0;  // before the save buffers exist
  util::CpuCacheStats cache_timed_start, cache_timed_end;
};

// `warmup` steps, `steps` timed steps, then `compare_steps` in pairs: a plain
// step and one with a checkpoint in flight (started at its beginning).
CaseSteps time_steps(train::Training& training, int warmup, int steps, int compare_steps,
                     util::TensorMemoryScope& tensor_memory, const std::string& id) {
  CaseSteps t;
  train::TrainState state;
  for (int i = 0; i < warmup + steps + compare_steps; ++i) {
    const int j = i - warmup - steps;  // index among the comparison steps
    const bool comparing = j >= 0, saving = comparing && j % 2 == 1;
    if (j == 0) {  // before the save buffers exist
      t.training_peak_rss = peak_resident_bytes();
      t.training_peak_tensors = tensor_memory.peak();
      t.cache_timed_end = util::CachingCpuAllocatorScope::stats();
    }
    if (i == warmup) t.cache_timed_start = util::CachingCpuAllocatorScope::stats();
    auto step_start = Clock::now();
    state.step = i;
    if (saving) training.checkpoints->save(state, /*wait=*/false);
    auto r = training.step->compute();
    if (!r.finite) throw Error(fmt::format("bench case {}: the loss is not finite", id));
    double wait = 0;
    training.step->apply(r, 1e-5, [&] {
      auto w0 = Clock::now();
      training.checkpoints->wait_copied();  // as the trainer does before its optimizer step
      wait = since(w0);
    });
    // A GPU runs the update after apply() returns: the step ends when it is done.
    if (training.device.is_cuda()) torch::cuda::synchronize(training.device.index());
    double step_s = since(step_start);
    if (comparing && !saving) t.plain_step_total += step_s;
    if (saving) {
      t.save_step_total += step_s;
      t.copy_wait += wait;
      auto w0 = Clock::now();
      training.checkpoints->wait();  // the writer's remaining work: not on the training path
      t.writer_after += since(w0);
    }
    if (i >= warmup && !comparing) {
      t.step_times.push_back(step_s);
      t.phases.add(training.step->phases());
      t.span_rows += r.local_span_rows;
      t.self_conditioned += r.local_self_conditioned;
    }
  }
  if (compare_steps == 0) t.cache_timed_end = util::CachingCpuAllocatorScope::stats();
  return t;
}

// The comparison pairs: steps with a save in flight against plain ones.
json save_in_flight_json(const CaseSteps& t, int pairs, train::Training& training) {
  double with_save = t.save_step_total / pairs, without = t.plain_step_total / pairs;
  // What the save copied: the model image and this rank's optimizer state.
  int64_t snapshot_bytes = 0;
  for (const auto& [name, tensor] : training.update->state()) snapshot_bytes += static_cast<int64_t>(tensor.nbytes());
  for (const auto& p : training.params) snapshot_bytes += static_cast<int64_t>(p.tensor.nbytes());
  return {{"pairs", pairs},
          {"snapshot_bytes", snapshot_bytes},
          {"step_s", with_save},
          {"plain_step_s", without},
          {"stall_s", with_save - without},
          {"stall_in_steps", (with_save - without) / without},
          {"copy_wait_s", t.copy_wait / pairs},
          {"writer_after_step_s", t.writer_after / pairs},
          {"peak_rss_bytes", peak_resident_bytes()}};  // with the snapshot's host buffers
}

// `tess plan`'s estimate for the case's step (it counts tensors, so compare
// it with the peak above the process's resident memory before the model
// existed), and the tensors' own peak against it.
void add_plan_comparison(json& j, const config::Config& cfg, double span_fraction, int64_t baseline_rss,
                         int64_t tensor_peak) {
  train::PlanOptions po;
  po.world_size = 1;
  auto pi = train::plan_inputs(cfg, po);
  pi.span_fraction = span_fraction;
  auto plan = train::estimate(pi);
  const int64_t rss_peak = j["peak_rss_bytes"].get<int64_t>() - baseline_rss;
  j["baseline_rss_bytes"] = baseline_rss;
  j["plan_bytes"] = plan.total;
  j["rss_over_plan"] = static_cast<double>(rss_peak) / plan.total;
  // The highest sum of live tensor bytes: what the plan estimates. The rest of
  // the RSS peak is the allocator's (glibc keeping freed blocks, fragmentation)
  // and the libraries' own buffers (BLAS packing, OpenMP).
  j["peak_tensor_bytes"] = tensor_peak;
  j["tensors_over_plan"] = static_cast<double>(tensor_peak) / plan.total;
  j["rss_outside_tensors_bytes"] = rss_peak - tensor_peak;
}

}  // namespace

json bench_train_case(const TrainCase& c, const BenchOptions& opt, double peak_fp32, double peak_bf16) {
  apply_threads(opt);
  // A case run alone measures the peak of its own precision in full (the
  // other one only at smoke sizes: it is not its MFU's denominator, and
  // emulated bf16 at full sizes takes minutes).
  const c10::Device device(opt.device);
  if (peak_fp32 <= 0)
    peak_fp32 = matmul_peak(torch::kFloat32, opt.smoke || c.precision != "fp32", device)["gflops"].get<double>();
  if (peak_bf16 <= 0)
    peak_bf16 = matmul_peak(torch::kBFloat16, opt.smoke || c.precision != "bf16", device)["gflops"].get<double>();
  auto preset = train_preset(c.preset, opt.smoke);
  const auto& mc = preset.model;
  const int64_t B = preset.batch, L = preset.seq_len;
  const bool diffusion = config::is_diffusion(c.stage);
  const bool bf16 = c.precision == "bf16";

  // The generated inputs: enough packed sequences and chat records for every step.
  const int warmup = opt.smoke ? 1 : 2, steps = opt.smoke ? 2 : 8;
  // Adaptation fp32 cases then run `compare_steps` more: pairs of a plain step
  // and a step with an asynchronous checkpoint (the trainer's CheckpointManager)
  // started at its beginning. The save's cost is the difference within the
  // pairs: interleaving keeps this VM's drift (10-20% between minutes) out of it.
  const int compare_steps = c.stage == config::RunStage::Adaptation && !bf16 ? 4 * (opt.smoke ? 1 : 2) : 0;
  const int64_t total_steps = warmup + steps + compare_steps;
  ScratchDir dir("train");
  auto ws = BenchWorkspace::create(dir.path() / "inputs", mc.vocab_size, L, (total_steps + 2) * B * L * 2,
                                   (total_steps + 2) * B);
  auto cfg = config::Config::load_string(ws.config(preset, c.stage, c.precision, dir.path() / "run"),
                                         "bench case " + c.id(),
                                         {"data.prefetch=2", "checkpoint.keep_last=1", "run.device=" + opt.device});

  const int64_t baseline_rss = resident_bytes();  // LibTorch, thread pools, the peak probe
  // The trainer's CPU allocator (run.cpu_allocator), under the counting one.
  std::optional<util::CachingCpuAllocatorScope> cpu_cache;
  if (opt.cpu_allocator == "caching") cpu_cache.emplace();
  const auto cache_start = util::CachingCpuAllocatorScope::stats();
  // Every tensor of the case from here on is counted: the peak of their bytes
  // against `tess plan` tells the plan's error from the allocator's slack.
  util::TensorMemoryScope tensor_memory;
  dist::Dist single_process;
  auto training = train::Training::build(cfg, single_process);
  int64_t n_params = 0;
  for (const auto& p : training.params) n_params += p.tensor.numel();
  training.stage->module().train();

  auto t = time_steps(training, warmup, steps, compare_steps, tensor_memory, c.id());
  const auto& ph = t.phases;
  const auto& step_times = t.step_times;
  double step_s = std::accumulate(step_times.begin(), step_times.end(), 0.0) / steps;
  std::vector<double> pairs;  // consecutive timed steps
  for (size_t p = 0; p + 1 < step_times.size(); p += 2) pairs.push_back((step_times[p] + step_times[p + 1]) / 2);
  auto [pair_min, pair_max] = std::minmax_element(pairs.begin(), pairs.end());
  double rate = diffusion ? static_cast<double>(t.self_conditioned) / steps : 0.0;
  int64_t span_avg = diffusion ? t.span_rows / steps : 0;
  auto flops = training.stage->flops(B, L, span_avg, rate);
  double peak = bf16 ? peak_bf16 : peak_fp32;
  double achieved = flops.total() / step_s / 1e9;
  double input_path = 0;
  if (auto* lm = dynamic_cast<diffusion::DiffusionLMImpl*>(&training.stage->module()); lm && span_avg > 0)
    input_path = input_path_seconds(*lm, span_avg, bf16);
  auto per = [&](double v) { return v / steps; };
  json j = {
      {"case", c.id()},
      {"preset", c.preset},
      {"stage", bench_stage_choices().name(c.stage)},
      {"precision", c.precision},
      {"model", {{"hidden", mc.hidden_size}, {"layers", mc.num_hidden_layers}, {"heads", mc.num_attention_heads},
                 {"kv_heads", mc.num_key_value_heads}, {"intermediate", mc.intermediate_size},
                 {"vocab", mc.vocab_size}, {"parameters", n_params}}},
      {"batch", B},
      {"seq_len", L},
      {"span_tokens", span_avg},
      {"self_condition_rate", rate},
      {"threads", torch::get_num_threads()},
      {"device", opt.device},
      {"steps", steps},
      {"warmup", warmup},
      {"step_s", step_s},
      {"step_times_s", step_times},
      // (slowest pair - fastest pair) / mean: how much the machine moved during the case.
      {"pair_spread", (*pair_max - *pair_min) / step_s},
      {"tokens_per_s", static_cast<double>(B * L) / step_s},
      {"breakdown_s",
       {{"data", per(ph.data)}, {"noise", per(ph.noise)}, {"forward", per(ph.forward)},
        {"self_condition", per(ph.self_condition)}, {"backward", per(ph.backward)}, {"optimizer", per(ph.optimizer)}}},
      {"input_path_s", input_path},
      {"flops_per_step",
       {{"body", flops.body}, {"attention", flops.attention}, {"lm_head", flops.lm_head},
        {"input_projection", flops.input_projection}, {"self_condition", flops.self_condition}, {"total", flops.total()}}},
      {"achieved_gflops", achieved},
      {"peak_gflops", peak},
      {"peak_precision", bf16 ? "bf16" : "fp32"},
      {"mfu", achieved / peak},
      {"peak_rss_bytes", compare_steps > 0 ? t.training_peak_rss : peak_resident_bytes()},
      // fp32 weights, gradients and two AdamW moments: the floor of any estimate.
      {"state_bytes", 16 * n_params},
      {"measures", "the trainer's step: train::Training (stage, loader, TrainStep, CheckpointManager) on generated inputs"},
  };
  j["cpu_allocator"] = allocator_json(opt, cache_start, t.cache_timed_start, t.cache_timed_end, steps);
  if (compare_steps > 0) j["save_in_flight"] = save_in_flight_json(t, compare_steps / 2, training);
  add_plan_comparison(j, cfg, diffusion ? static_cast<double>(span_avg) / static_cast<double>(B * L) : 1.0,
                      baseline_rss, compare_steps > 0 ? t.training_peak_tensors : tensor_memory.peak());
  return j;
}

std::string trainer_precision_error(const std::string& precision) {
  ScratchDir dir("precision");
  TrainPreset probe{"probe", model::ModelConfig::preset("tiny"), 2, 16};
  probe.model.hidden_size = 32;
  probe.model.intermediate_size = 64;
  probe.model.num_hidden_layers = 1;
  probe.model.num_attention_heads = 2;
  probe.model.num_key_value_heads = 2;
  probe.model.max_position_embeddings = 64;
  probe.model.vocab_size = 512;
  auto ws = BenchWorkspace::create(dir.path() / "inputs", probe.model.vocab_size, 16, 8192, 0);
  auto yaml = ws.config(probe, config::RunStage::Ar, "fp32", dir.path() / "run");
  try {
    auto cfg = config::Config::load_string(yaml, "bench precision probe",
                                           {"train.max_steps=1", "train.precision=" + precision});
    train::Trainer trainer(cfg, std::make_shared<dist::Dist>());
    int rc = trainer.run();
    util::setup_logging({});
    return rc == 0 ? "" : fmt::format("the one-step probe run exited {}", rc);
  } catch (const std::exception& e) {
    util::setup_logging({});
    return e.what();
  }
}

json bench_train(const BenchOptions& opt, const json& peak, const std::vector<std::string>& presets) {
  double p32 = peak["fp32"]["gflops"].get<double>(), pbf = peak["bf16"]["gflops"].get<double>();
  auto exe = exe_of(opt);
  std::string bf16_error = trainer_precision_error("bf16_autocast");
  // Without native bf16 matmuls bf16 is emulated at ~1% of the fp32 rate: a
  // medium case would take hours and say nothing about the code. Smoke runs
  // still go through the bf16 path.
  std::string bf16_slow;
  if (!opt.smoke && !util::cpu_has_native_bf16())
    bf16_slow = fmt::format("this CPU has no native bf16 matmul: measured bf16 peak {:.1f} GF/s against fp32 {:.1f} "
                            "GF/s (bf16 runs emulated; time it on a CPU with AVX512_BF16/AMX or a GPU)",
                            pbf, p32);
  json cases = json::array();
  for (const auto& preset : presets) {
    for (auto stage : {config::RunStage::Ar, config::RunStage::Adaptation, config::RunStage::Instruction}) {
      for (const char* precision : {"fp32", "bf16"}) {
        TrainCase c{preset, stage, precision};
        if (std::string(precision) == "bf16" && !bf16_error.empty()) {
          cases.push_back({{"case", c.id()}, {"skipped", "not supported by the trainer: " + bf16_error}});
          continue;
        }
        if (std::string(precision) == "bf16" && !bf16_slow.empty()) {
          cases.push_back({{"case", c.id()}, {"skipped", bf16_slow}});
          continue;
        }
        std::fprintf(stderr, "bench train %s ...\n", c.id().c_str());
        auto cmd = fmt::format("{} bench train --case {} --json --peak-fp32 {} --peak-bf16 {}{}", quote(exe.string()),
                               c.id(), p32, pbf, common_flags(opt));
        auto r = parse_child_json(run_child(cmd, "bench case " + c.id()), "bench case " + c.id());
        json j = r["train"]["cases"][0];
        if (opt.eager) {
          auto pr = train_preset(preset, opt.smoke);
          json shape = {{"hidden", pr.model.hidden_size}, {"layers", pr.model.num_hidden_layers},
                        {"heads", pr.model.num_attention_heads}, {"kv_heads", pr.model.num_key_value_heads},
                        {"intermediate", pr.model.intermediate_size}, {"vocab", pr.model.vocab_size},
                        {"batch", pr.batch}, {"seq_len", pr.seq_len}};
          auto py = fmt::format("{} {} --shape {} --stage {} --precision {} --span-tokens {} --threads {} --warmup {} "
                                "--steps {}",
                                quote(opt.python.empty() ? "python3" : opt.python.string()),
                                quote(opt.eager_script.empty() ? std::string(TESS_BENCH_EAGER_SCRIPT)
                                                               : opt.eager_script.string()),
                                quote(shape.dump()), bench_stage_choices().name(stage), precision,
                                j["span_tokens"].get<int64_t>(), j["threads"].get<int>(), j["warmup"].get<int>(),
                                j["steps"].get<int>());
          try {
            auto e = parse_child_json(run_child(py, "eager step"), "eager step");
            j["eager"] = e;
            j["eager_over_tess"] = e["step_s"].get<double>() / j["step_s"].get<double>();
          } catch (const Error& e) {
            j["eager"] = {{"error", e.what()}};
          }
        }
        cases.push_back(j);
      }
    }
  }
  std::string support = !bf16_error.empty() ? "not supported by the trainer: " + bf16_error
                        : !bf16_slow.empty()  ? "supported by the trainer; not timed: " + bf16_slow
                                              : "supported";
  return {{"cases", cases}, {"bf16_support", support}};
}

}  // namespace tess::bench
