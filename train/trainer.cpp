#include "train/trainer.h"

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/util/cpu.h"
#include "core/util/cpu_allocator.h"
#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/format.h"
#include "core/util/log.h"
#include "core/util/peak.h"
#include "core/util/progress.h"
#include "core/util/test_hooks.h"
#include "train/checkpoint_manager.h"
#include "train/lr_schedule.h"
#include "train/metrics_log.h"
#include "train/options.h"
#include "train/stage.h"
#include "train/train_step.h"
#include "train/training.h"
#include "train/weight_update.h"

namespace tess::train {
namespace fs = std::filesystem;
namespace {

std::atomic<int> g_stop_signal{0};

void on_stop_signal(int sig) { g_stop_signal.store(sig); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void setup_run_logging(const config::Config& cfg, const dist::Dist& dist, const fs::path& run_dir) {
  util::LogSetup ls;
  ls.rank = dist.rank();
  ls.world_size = dist.world_size();
  ls.file = run_dir / (dist.is_main() ? std::string("log.txt") : fmt::format("log_rank{}.txt", dist.rank()));
  ls.level = cfg.get_string("log.level");
  ls.console_all_ranks = cfg.get_bool("log.all_ranks");
  ls.stop_on_write_error =
      config::log_write_error_choices().parse(cfg.get_string("log.on_write_error")) == config::LogWriteError::Stop;
  util::setup_logging(ls);
}

// A key the run's components never read is a mistake (eval.* is for `tess
// eval CONFIG`, which evaluates this run).
void refuse_unused_keys(const config::Config& cfg, const std::string& stage) {
  std::string list;
  for (const auto& k : cfg.unused_user_keys())
    if (k.rfind("eval.", 0) != 0) list += fmt::format("\n  {} (set at {})", k, cfg.origin(k).where);
  if (!list.empty()) throw Error(fmt::format("these keys are set but stage '{}' does not use them:{}", stage, list));
}

}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
}

struct Trainer::Impl {
  // First member, so destroyed last: everything below frees into the cache
  // before it is unmapped.
  std::optional<util::CachingCpuAllocatorScope> cpu_cache;  // run.cpu_allocator caching
  std::optional<util::FileLock> run_lock;  // rank 0: one run per run directory
  std::optional<std::string> write_error;  // this rank's failed write, until every rank has heard of it
  const config::Config& cfg;
  std::shared_ptr<dist::Dist> dist;
  fs::path run_dir;
  Training training;  // stage, weight update, step, checkpoints
  // Shorthands into `training`.
  const TrainOptions& options = training.options;
  Stage* stage = nullptr;
  TrainStep* train_step = nullptr;
  CheckpointManager* checkpoints = nullptr;
  std::unique_ptr<MetricsLog> metrics;
  LrSchedule schedule;
  TrainState state;
  int64_t total_steps = 0;
  double peak_gflops = 0;  // the denominator of each step's mfu (log.peak_gflops)
  util::Progress::Options progress_options;

  StageFactory factory;

  Impl(const config::Config& c, std::shared_ptr<dist::Dist> d, StageFactory f)
      : cfg(c), dist(std::move(d)), factory(std::move(f)) {}

  bool main() const { return dist->is_main(); }

  void setup() {
    TrainOptions::from_config(cfg);  // configuration errors before anything is created
    run_dir = cfg.get_string("run.dir");
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) throw Error(fmt::format("cannot create run.dir '{}': {}", run_dir.string(), ec.message()));
    if (main()) run_lock.emplace(run_dir / "lock", fmt::format("run.dir '{}'", run_dir.string()));
    setup_run_logging(cfg, *dist, run_dir);
    if (int64_t threads = cfg.get_int("run.threads"); threads > 0) torch::set_num_threads(static_cast<int>(threads));
    if (config::cpu_allocator_choices().parse(cfg.get_string("run.cpu_allocator")) == config::CpuAllocator::Caching)
      cpu_cache.emplace();
    if (const auto& mutation = util::active_test_mutation(); !mutation.empty())
      spdlog::warn("TESS_TEST_MUTATION={}: a deliberate bug is switched on (a test of the test suite); never train "
                   "like this",
                   mutation);
    spdlog::info("{} stage '{}' in {} ({} process(es), backend {})", cfg.get_string("run.name"),
                 cfg.get_string("run.stage"), run_dir.string(), dist->world_size(), dist->backend_name());
    training = Training::build(cfg, *dist, factory);
    spdlog::info("training on {}: {} steps", training.device.str(), training.total_steps);
    measure_peak();
    stage = training.stage.get();
    train_step = training.step.get();
    checkpoints = training.checkpoints.get();
    total_steps = training.total_steps;
    metrics = std::make_unique<MetricsLog>(run_dir, main(), cfg.get_bool("log.tensorboard"));
    progress_options.unit = "step";
    progress_options.enabled = main();
    progress_options.plain_interval_s = cfg.get_float("log.progress_interval_s");
    schedule = LrSchedule::from_config(cfg, total_steps);
    state = checkpoints->resume();
    if (state.step > total_steps)  // else the loop would do nothing and write step N as the final model
      throw Error(fmt::format("the run resumed at step {} is already past its length of {} steps ({}): raise "
                              "train.max_steps (or train.epochs) to train on, or take its final/ model as it is",
                              state.step, total_steps,
                              options.max_steps > 0
                                  ? fmt::format("train.max_steps = {}, set at {}", options.max_steps,
                                                cfg.origin("train.max_steps").where)
                                  : fmt::format("train.epochs = {}", options.epochs)));
    refuse_unused_keys(cfg, stage->name());
    if (main())
      util::write_file_atomic(run_dir / "config.yaml",
                              fmt::format("# Effective configuration (hash {})\n{}", cfg.hash(), cfg.to_yaml(true)));
    metrics->reopen_at(state.step);
  }

  // The recipe: next batches, forward and backward, all-reduce, update; log,
  // maybe validate, maybe save.
  int loop() {
    stage->module().train();
    util::Progress progress(fmt::format("{} ", stage->name()), total_steps, progress_options);
    progress.update(state.step);
    auto t_start = std::chrono::steady_clock::now();
    int64_t positions_since_start = 0;  // throughput: every position the model ran over
    while (state.step < total_steps) {
      checkpoints->check();  // a failed background save stops the run here
      auto t0 = std::chrono::steady_clock::now();
      bool poison = options.inject_nonfinite_at == state.step + 1 && state.rollbacks == 0;
      auto r = train_step->compute(poison, write_error.has_value());
      if (r.stop_requested) {
        train_step->discard();
        stop_after_write_error();
      }
      double lr = schedule.at(state.step);
      if (!r.finite) {
        train_step->discard();
        if (handle_nonfinite(r)) {  // rolled back: the clock restarts
          progress.update(state.step);
          t_start = std::chrono::steady_clock::now();
          positions_since_start = 0;
        }
        continue;
      }
      train_step->apply(r, lr, [&] { checkpoints->wait_copied(); });
      ++state.step;
      state.tokens_seen += r.tokens;
      positions_since_start += r.positions;
      progress.set_field("loss", fmt::format("{:.4f}", r.loss));
      progress.set_field("tok/s", util::human_count(static_cast<double>(positions_since_start) /
                                                    std::max(seconds_since(t_start), 1e-9)));
      progress.update(state.step);
      recording([&] {
        if (state.step % options.log_every == 0 || state.step == total_steps) {
          double seconds = seconds_since(t0);
          metrics->step(state.step, r, lr, state.tokens_seen, state.skipped, seconds, mfu(r, seconds));
        }
        if (options.eval_every > 0 && state.step % options.eval_every == 0) validate();
        if (auto failed = util::log_write_error(); !failed.empty()) throw Error(failed);
      });
      if (util::fault_armed("after_step", state.step)) {  // a test's crash: step logged, earlier saves committed
        checkpoints->wait();
        util::kill_self();
      }
      if (int sig = g_stop_signal.load(); sig != 0) {
        progress.finish();
        spdlog::warn("received signal {}: saving a checkpoint at step {} and stopping", sig, state.step);
        checkpoints->save(state, /*wait=*/true);
        return 0;
      }
      if (checkpoints->due(state.step, total_steps)) checkpoints->save(state, /*wait=*/false);
    }
    progress.finish();
    // A write that failed at the last step: the other ranks learn it here.
    if (dist->sum(write_error ? 1.0 : 0.0, "write failure flag") > 0) stop_after_write_error();
    finish();
    return 0;
  }

  // Runs `write` (the step's metrics, validation, the log's health). A
  // failed write (disk full) ends the run with its error after a last
  // checkpoint attempt. That save needs every rank, so with several the
  // error waits for the next step's count all-reduce to reach them all
  // (TrainStep::compute's request_stop): no collective of its own per step.
  template <class F>
  void recording(F&& write) {
    try {
      write();
    } catch (const Error& e) {
      write_error = e.what();
      if (dist->world_size() == 1) stop_after_write_error();
    }
  }

  // The last checkpoint (all ranks together), then the error.
  [[noreturn]] void stop_after_write_error() {
    std::string last;
    try {
      checkpoints->save(state, /*wait=*/true);
      last = fmt::format("a last checkpoint of step {} was saved", state.step);
    } catch (const std::exception& c) {
      last = fmt::format("a last checkpoint of step {} failed too ({}); the newest committed checkpoint is as it was",
                         state.step, c.what());
    }
    if (write_error) throw Error(fmt::format("{}; {}", *write_error, last));
    throw Error(fmt::format("stopping: another rank cannot write the run's files (its error says which); {}", last));
  }

  // log.peak_gflops, or this process's measured rate of the step's matmuls
  // (bf16 unless fp32; a smaller probe where bf16 is emulated on a CPU).
  void measure_peak() {
    peak_gflops = cfg.get_float("log.peak_gflops");
    if (peak_gflops > 0) return;
    auto dtype = options.precision == Precision::Fp32 ? at::kFloat : at::kBFloat16;
    bool emulated = dtype == at::kBFloat16 && training.device.is_cpu() && !util::cpu_has_native_bf16();
    int64_t n = emulated ? 256 : 1024;
    peak_gflops = util::matmul_gflops(training.device, dtype, n, 2, 5);
    spdlog::info("mfu in metrics.jsonl is against {:.1f} GFLOP/s (this process's {} matmuls of {}x{}; set "
                 "log.peak_gflops to use another figure)",
                 peak_gflops, dtype == at::kFloat ? "fp32" : "bf16", n, n);
  }

  // This rank's model FLOPs of the step over its time, against the peak.
  double mfu(const StepResult& r, double seconds) const {
    double rate = static_cast<double>(r.local_self_conditioned) / static_cast<double>(options.grad_accum);
    auto f = stage->flops(r.local_sequences, r.seq_len, r.local_span_rows, rate);
    return f.total() / std::max(seconds, 1e-9) / (peak_gflops * 1e9);
  }

  void validate() {
    auto batches = stage->validation_batches(options.eval_batches);
    if (batches.empty()) return;
    auto [sum, tokens] = train_step->evaluate(batches);
    double loss = sum / std::max(static_cast<double>(tokens), 1.0);
    spdlog::info("step {}: validation loss {:.6f} over {} tokens", state.step, loss, tokens);
    metrics->validation(state.step, loss, tokens);
  }

  // The final checkpoint and model.
  void finish() {
    checkpoints->save(state, /*wait=*/true);
    if (main()) {
      stage->save_model(run_dir / "final");
      spdlog::info("finished {} steps; model in {}", state.step, (run_dir / "final").string());
    }
    if (cpu_cache) {
      auto s = util::CachingCpuAllocatorScope::stats();
      spdlog::info("cpu allocator: {} of {} large tensors reused a cached block; highest live {}", s.hits,
                   s.hits + s.misses, util::human_bytes(static_cast<double>(s.high_water)));
    }
  }

  // train.nonfinite_policy for a step whose loss or gradient is not finite:
  // abort, skip it, or roll back (returns true then).
  bool handle_nonfinite(const StepResult& r) {
    std::string cause = fmt::format("non-finite loss or gradient at step {} (loss {}, grad norm {})", state.step + 1,
                                    r.loss, r.grad_norm);
    switch (options.nonfinite) {
      case NonfinitePolicy::Abort:
        save_diagnostics();
        throw Error(cause + "; train.nonfinite_policy is abort");
      case NonfinitePolicy::Rollback:
        rollback(state.step + 1, cause);
        return true;
      case NonfinitePolicy::Skip:
        ++state.skipped;
        ++state.step;
        spdlog::warn("step {}: non-finite loss or gradient, update skipped ({} so far)", state.step, state.skipped);
        return false;
    }
    return false;
  }

  // train.nonfinite_policy rollback: back to the newest committed checkpoint
  // (weights, optimizer, streams), then past the data of every step since,
  // the offending one included. Deterministic: a run resumed from a
  // checkpoint before the rollback meets the same step and rolls back alike.
  void rollback(int64_t bad_step, const std::string& cause) {
    if (state.rollbacks >= options.max_rollbacks) {
      save_diagnostics();
      throw Error(fmt::format("{}; the run already rolled back {} time(s) (train.max_rollbacks = {}): aborting", cause,
                              state.rollbacks, options.max_rollbacks));
    }
    int64_t count = state.rollbacks + 1;
    auto restored = checkpoints->reload_latest();
    if (!restored) {
      save_diagnostics();
      throw Error(fmt::format("{}; train.nonfinite_policy is rollback but no checkpoint has been written yet "
                              "(checkpoint.every = {})",
                              cause, cfg.get_int("checkpoint.every")));
    }
    state = *restored;
    state.rollbacks = count;
    int64_t window = bad_step - state.step;
    for (int64_t i = 0; i < window * options.grad_accum; ++i) stage->next_batch();  // drawn and dropped
    spdlog::warn("{}: rolled back to step {} and skipped the data of steps {}..{} (rollback {} of at most {})", cause,
                 state.step, state.step + 1, bad_step, state.rollbacks, options.max_rollbacks);
    metrics->reopen_at(state.step);
    metrics->event({{"step", state.step},
                    {"rollback_from_step", bad_step},
                    {"data_skipped_steps", window},
                    {"rollbacks", state.rollbacks}});
  }

  void save_diagnostics() {
    if (!main()) return;
    auto dir = run_dir / fmt::format("nonfinite_step_{:08d}", state.step + 1);
    stage->save_model(dir);
    spdlog::error("saved the model that produced the non-finite step to {}", dir.string());
  }
};

Trainer::Trainer(const config::Config& cfg, std::shared_ptr<dist::Dist> dist)
    : Trainer(cfg, std::move(dist), make_stage) {}
Trainer::Trainer(const config::Config& cfg, std::shared_ptr<dist::Dist> dist, StageFactory factory)
    : impl_(std::make_unique<Impl>(cfg, std::move(dist), std::move(factory))) {}
Trainer::~Trainer() = default;

int Trainer::run() {
  impl_->setup();
  return impl_->loop();
}

}  // namespace tess::train
