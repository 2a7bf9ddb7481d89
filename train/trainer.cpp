#include "train/trainer.h"

#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "core/util/cpu.h"
#include "core/util/cpu_allocator.h"
#include "core/util/format.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/tensorboard.h"
#include "core/util/test_hooks.h"
#include "train/checkpoint_saver.h"
#include "train/gradient_reducer.h"
#include "train/lr_schedule.h"
#include "train/stage.h"
#include "train/weight_update.h"

namespace tess::train {
namespace fs = std::filesystem;
namespace {

std::atomic<int> g_stop_signal{0};

void on_stop_signal(int sig) { g_stop_signal.store(sig); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Keeps the lines of metrics.jsonl up to `step` (a resumed run rewrites the rest).
void truncate_metrics(const fs::path& file, int64_t step) {
  if (!fs::exists(file)) return;
  std::ifstream in(file);
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("step", int64_t{0}) <= step) kept += line + "\n";
  }
  in.close();
  std::ofstream(file, std::ios::trunc) << kept;
}

// bf16 autocast for the forward passes of train.precision bf16_autocast
// (weights stay fp32; matmuls run in bf16). Restores the previous state.
class AutocastGuard {
 public:
  AutocastGuard(bool on, at::DeviceType device) : on_(on), device_(device) {
    if (!on_) return;
    enabled_ = at::autocast::is_autocast_enabled(device_);
    dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, enabled_);
    at::autocast::set_autocast_dtype(device_, dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool on_;
  at::DeviceType device_;
  bool enabled_ = false;
  at::ScalarType dtype_ = at::kBFloat16;
};

// run.device: auto = CUDA when LibTorch sees a GPU; each process of a node
// takes the GPU of its LOCAL_RANK.
at::Device resolve_device(const config::Config& cfg, int local_rank) {
  const auto& setting = cfg.get_string("run.device");
  bool cuda = torch::cuda::is_available();
  if (setting == "cpu" || (setting == "auto" && !cuda)) return at::kCPU;
  if (!cuda)
    throw Error(fmt::format("{}: run.device is cuda, but LibTorch sees no CUDA device (no GPU, no driver, or "
                            "CUDA_VISIBLE_DEVICES hides them)",
                            cfg.origin("run.device").where));
  auto count = static_cast<int>(torch::cuda::device_count());
  if (local_rank >= count)
    throw Error(fmt::format("LOCAL_RANK is {} but only {} CUDA device(s) are visible: start at most one process "
                            "per GPU",
                            local_rank, count));
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
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
  const config::Config& cfg;
  std::shared_ptr<dist::Dist> dist;
  fs::path run_dir;
  std::unique_ptr<Stage> stage;
  std::vector<NamedParameter> params;
  std::unique_ptr<WeightUpdate> update;  // AdamW, fp32 masters (bf16_master), ZeRO-1 ownership
  std::unique_ptr<GradientReducer> reducer;
  bool autocast = false;                  // bf16_autocast
  at::Device device{at::kCPU};            // run.device resolved
  LrSchedule schedule;
  int64_t step = 0, tokens_seen = 0, skipped = 0, rollbacks = 0, total_steps = 0;
  int64_t max_rollbacks = 0, inject_nonfinite_at = 0;
  int64_t accum = 1, log_every = 1, ckpt_every = 0, keep_last = 1, eval_every = 0, eval_batches = 1;
  double grad_clip = 0;
  bool global_norm = true, verify = true;
  std::string nonfinite, config_hash;
  std::ofstream metrics;
  std::unique_ptr<util::TensorBoardWriter> tensorboard;  // rank 0, log.tensorboard
  std::unique_ptr<CheckpointSaver> saver;

  Impl(const config::Config& c, std::shared_ptr<dist::Dist> d) : cfg(c), dist(std::move(d)) {}

  bool main() const { return dist->is_main(); }

  MicroBatch on_device(MicroBatch mb) const {
    if (device.is_cpu()) return mb;
    mb.ids = mb.ids.to(device);
    mb.span_mask = mb.span_mask.to(device);
    return mb;
  }

  void setup() {
    run_dir = cfg.get_string("run.dir");
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) throw Error(fmt::format("cannot create run.dir '{}': {}", run_dir.string(), ec.message()));
    util::LogSetup ls;
    ls.rank = dist->rank();
    ls.world_size = dist->world_size();
    ls.file = run_dir / (main() ? std::string("log.txt") : fmt::format("log_rank{}.txt", dist->rank()));
    ls.level = cfg.get_string("log.level");
    ls.console_all_ranks = cfg.get_bool("log.all_ranks");
    util::setup_logging(ls);
    if (int64_t threads = cfg.get_int("run.threads"); threads > 0) torch::set_num_threads(static_cast<int>(threads));
    if (cfg.get_string("run.cpu_allocator") == "caching") cpu_cache.emplace();
    device = resolve_device(cfg, dist->local_rank());
    if (dist->world_size() > 1 && dist->device() != device)
      throw Error(fmt::format("run.device resolves to {} but the process group ({}) works on {}: use dist.backend "
                              "nccl with CUDA and gloo on CPU",
                              device.str(), dist->backend_name(), dist->device().str()));
    config_hash = cfg.hash();

    if (const auto& mutation = util::active_test_mutation(); !mutation.empty())
      spdlog::warn("TESS_TEST_MUTATION={}: a deliberate bug is switched on (a test of the test suite); never train "
                   "like this",
                   mutation);
    StageContext ctx{dist->rank(), dist->world_size(), cfg.get_int("train.grad_accum"),
                     static_cast<uint64_t>(cfg.get_int("run.seed")), device.str()};
    spdlog::info("{} stage '{}' in {} ({} process(es), backend {}, device {})", cfg.get_string("run.name"),
                 cfg.get_string("run.stage"), run_dir.string(), dist->world_size(), dist->backend_name(),
                 device.str());
    stage = make_stage(cfg, ctx);
    stage->module().to(device);  // parameters keep their identity: the optimizer and hooks see the moved tensors

    params = stage->parameters();
    bool decay_all = cfg.get_bool("train.decay_norms_and_embeddings");
    for (auto& p : params) p.decay = AdamW::default_decay(p.name, decay_all);
    WeightUpdate::Options wo;
    wo.adamw.beta1 = cfg.get_float("train.adam_beta1");
    wo.adamw.beta2 = cfg.get_float("train.adam_beta2");
    wo.adamw.eps = cfg.get_float("train.adam_eps");
    wo.adamw.weight_decay = cfg.get_float("train.weight_decay");
    const auto& precision = cfg.get_string("train.precision");
    const auto& dtype = cfg.get_string("model.dtype");
    if (precision == "bf16_master" && dtype != "bfloat16")
      throw Error(fmt::format("train.precision: bf16_master trains bf16 weights with fp32 master copies; set "
                              "model.dtype: bfloat16 (it is {}, set at {})",
                              dtype, cfg.origin("model.dtype").where));
    if (precision != "bf16_master" && dtype != "float32")
      throw Error(fmt::format("model.dtype: bfloat16 weights need train.precision: bf16_master (fp32 master copies); "
                              "train.precision is {} (set at {})",
                              precision, cfg.origin("train.precision").where));
    autocast = precision == "bf16_autocast";
    if (precision != "fp32" && device.is_cpu() && !util::cpu_has_native_bf16())
      spdlog::warn("train.precision {} (set at {}) on a CPU without native bf16 matmuls (no AVX512_BF16 or AMX): "
                   "LibTorch emulates them, typically 10-100x slower than fp32; train.precision fp32 with "
                   "model.dtype float32 is the fast choice here",
                   precision, cfg.origin("train.precision").where);
    wo.master_weights = precision == "bf16_master";
    wo.zero = cfg.get_int("dist.zero") == 1;
    update = std::make_unique<WeightUpdate>(params, wo, *dist);

    accum = cfg.get_int("train.grad_accum");
    grad_clip = cfg.get_float("train.grad_clip");
    global_norm = cfg.get_string("diffusion.loss_normalization") == "global_tokens";
    nonfinite = cfg.get_string("train.nonfinite_policy");
    max_rollbacks = cfg.get_int("train.max_rollbacks");
    inject_nonfinite_at = cfg.get_int("train.inject_nonfinite_at");
    bool overlap = cfg.get_bool("dist.overlap");
    if (overlap && wo.master_weights && dist->world_size() > 1) {
      spdlog::info("dist.overlap: gradients are all-reduced after backward with train.precision bf16_master");
      overlap = false;
    }
    std::vector<at::Tensor> leaves;
    for (auto& p : params) leaves.push_back(p.tensor);
    reducer = std::make_unique<GradientReducer>(
        std::move(leaves), static_cast<int64_t>(cfg.get_float("dist.bucket_mb") * 1024 * 1024), overlap, *dist);
    log_every = cfg.get_int("log.every");
    ckpt_every = cfg.get_int("checkpoint.every");
    keep_last = cfg.get_int("checkpoint.keep_last");
    saver = std::make_unique<CheckpointSaver>(run_dir, *dist, static_cast<int>(keep_last),
                                              cfg.get_bool("checkpoint.async"), cfg.get_float("dist.timeout_s"));
    verify = cfg.get_bool("checkpoint.verify");
    eval_every = cfg.get_int("train.eval_every");
    eval_batches = cfg.get_int("train.eval_batches");
    bool want_tensorboard = cfg.get_bool("log.tensorboard");
    cfg.get_float("log.progress_interval_s");

    int64_t global_batch = cfg.get_int("train.batch_size") * accum * dist->world_size();
    total_steps = cfg.get_int("train.max_steps");
    double epochs = cfg.get_float("train.epochs");
    if (total_steps == 0) {
      if (epochs <= 0) throw Error("train.max_steps is 0 and train.epochs is 0: set one of them");
      total_steps = static_cast<int64_t>(std::ceil(epochs * static_cast<double>(stage->samples_per_epoch()) /
                                                   static_cast<double>(global_batch)));
    } else if (cfg.origin("train.epochs").where != "default") {
      throw Error(fmt::format("{}: train.epochs is set but train.max_steps = {} decides the length; set max_steps: 0 "
                              "to train by epochs",
                              cfg.origin("train.epochs").where, total_steps));
    }
    schedule = LrSchedule::from_config(cfg, total_steps);

    // Every rank starts from rank 0's weights.
    std::vector<at::Tensor> tensors;
    for (auto& p : params) tensors.push_back(p.tensor.detach());
    dist->broadcast(tensors, 0, "initial parameter broadcast");

    resume();
    if (auto unused = cfg.unused_user_keys(); !unused.empty()) {
      std::string list;
      for (const auto& k : unused)
        if (k.rfind("eval.", 0) != 0)  // eval.* describes how `tess eval CONFIG` evaluates this run
          list += fmt::format("\n  {} (set at {})", k, cfg.origin(k).where);
      if (!list.empty())
        throw Error(fmt::format("these keys are set but stage '{}' does not use them:{}", stage->name(), list));
    }

    if (main())
      std::ofstream(run_dir / "config.yaml") << "# Effective configuration (hash " << config_hash << ")\n"
                                             << cfg.to_yaml(true);
    reopen_metrics_at_step();
    if (main() && want_tensorboard) tensorboard = std::make_unique<util::TensorBoardWriter>(run_dir / "tensorboard");
  }

  void resume() {
    const auto& how = cfg.get_string("checkpoint.resume");
    checkpoint::remove_stale_staging(run_dir);
    std::optional<fs::path> dir;
    if (how == "auto") {
      dir = checkpoint::latest_checkpoint(run_dir);
    } else if (how != "none") {
      dir = fs::path(how);
      if (!fs::is_directory(*dir)) throw Error(fmt::format("checkpoint.resume: '{}' is not a directory", how));
    }
    if (dir) load_checkpoint(*dir);
  }

  // Weights, optimizer state, stage streams and counters from a checkpoint.
  void load_checkpoint(const fs::path& dir) {
    if (!verify) spdlog::warn("checkpoint.verify is false: the checkpoint's files are not checked against their sha256");
    auto m = checkpoint::verify_checkpoint(dir, verify);
    if (m.stage != stage->name())
      throw Error(fmt::format("{}: a checkpoint of stage '{}', but this run is stage '{}'", dir.string(), m.stage,
                              stage->name()));
    if (m.tokenizer_hash != stage->tokenizer_hash())
      throw Error(fmt::format("{}: written with tokenizer {}, but this run's tokenizer is {}", dir.string(),
                              m.tokenizer_hash, stage->tokenizer_hash()));
    if (m.config_hash != config_hash)
      spdlog::warn("resuming {} with a different configuration (hash {} -> {}): steps after the resume may differ "
                   "from the original run",
                   dir.string(), m.config_hash, config_hash);
    torch::NoGradGuard no_grad;
    model::SafetensorsCheckpoint weights(dir / "model");
    for (auto& p : params) {
      if (!weights.contains(p.name)) throw Error(fmt::format("{}: model weight '{}' is missing", dir.string(), p.name));
      auto t = weights.load(p.name);
      if (t.sizes() != p.tensor.sizes())
        throw Error(fmt::format("{}: weight '{}' has shape {}, the model has {}", dir.string(), p.name,
                                c10::str(t.sizes()), c10::str(p.tensor.sizes())));
      p.tensor.copy_(t);
    }
    // Optimizer state by name from the union of all rank files (so ZeRO-1
    // shards re-shard onto another world size); the stage's state from all
    // rank files' metadata (its random streams belong to micro-batch slots,
    // which may sit on other ranks now).
    auto needed = update->needed_state();
    std::map<std::string, at::Tensor> opt_state;
    std::vector<std::map<std::string, std::string>> rank_states;
    for (int r = 0; r < m.world_size; ++r) {
      model::SafetensorsFile f(dir / checkpoint::rank_file_name(r));
      for (const auto& e : f.entries())
        if (needed.count(e.name) && !opt_state.count(e.name)) opt_state[e.name] = f.load(e.name);
      rank_states.push_back(f.metadata());
    }
    update->load_state(opt_state, (dir / "rank files").string());
    stage->load_state(rank_states, (dir / "rank files").string());
    step = m.step;
    tokens_seen = m.tokens_seen;
    auto counter = [&](const char* key) {  // absent in checkpoints older than the counter
      auto it = rank_states[0].find(key);
      return it == rank_states[0].end() ? int64_t{0} : std::stoll(it->second);
    };
    skipped = counter("skipped");
    rollbacks = counter("rollbacks");
    if (m.world_size != dist->world_size())
      spdlog::info("resuming a {}-process checkpoint on {} processes", m.world_size, dist->world_size());
    spdlog::info("resumed from {} at step {} ({} tokens seen)", dir.string(), step, tokens_seen);
  }

  // Hands this step's state to the saver (deferred host copies when it writes
  // in the background: the writer copies them before the next optimizer step);
  // `wait`: return only once the checkpoint is committed.
  void save_checkpoint(bool wait) {
    CheckpointSnapshot s;
    s.step = step;
    if (saver->asynchronous()) s.copies = std::make_shared<checkpoint::DeferredCopies>();
    s.rank_tensors = update->state();
    if (s.copies) s.copies->take_all(s.rank_tensors);
    s.rank_metadata = stage->state();
    s.rank_metadata["step"] = std::to_string(step);
    s.rank_metadata["tokens_seen"] = std::to_string(tokens_seen);
    s.rank_metadata["skipped"] = std::to_string(skipped);
    s.rank_metadata["rollbacks"] = std::to_string(rollbacks);
    if (main()) {
      s.write_model = stage->model_writer(s.copies.get());
      s.manifest.step = step;
      s.manifest.tokens_seen = tokens_seen;
      s.manifest.world_size = dist->world_size();
      s.manifest.stage = stage->name();
      s.manifest.config_hash = config_hash;
      s.manifest.tokenizer_hash = stage->tokenizer_hash();
    }
    saver->save(std::move(s));
    if (wait) saver->wait();
  }

  // Per-tensor L2 norms reduced in the gradient's own dtype (ATen's cascade
  // summation, no copy of the gradient), combined in double.
  double grad_norm() {
    double sq = 0;
    for (auto& p : update->gradient_params())
      if (p.tensor.grad().defined()) {
        double n = at::linalg_vector_norm(p.tensor.grad(), 2).item<double>();
        sq += n * n;
      }
    return std::sqrt(sq);
  }

  // One optimizer step; returns {mean loss over the step's global tokens, grad norm, tokens, finite,
  // positions}: `tokens` are the loss's tokens, `positions` every position the model ran over (the
  // throughput a user compares with hardware).
  struct StepResult {
    double loss, grad_norm;
    int64_t tokens;
    bool finite;
    int64_t positions;
  };

  StepResult train_step() {
    std::vector<MicroBatch> micro;
    int64_t local_tokens = 0, local_positions = 0;
    for (int64_t i = 0; i < accum; ++i) {
      micro.push_back(on_device(stage->next_batch()));
      local_tokens += micro.back().tokens;
      local_positions += micro.back().ids.numel();
    }
    auto counts = dist->sum({static_cast<double>(local_tokens), static_cast<double>(local_positions)},
                            "token and position counts");
    double global_tokens = counts[0], global_positions = counts[1];
    double loss_sum = 0;
    for (size_t i = 0; i < micro.size(); ++i) {
      auto& mb = micro[i];
      LossTerms terms;
      {
        AutocastGuard amp(autocast, device.type());
        terms = stage->loss(mb);
      }
      // global_tokens: divide by the step's global count (= one big batch); micro_batch:
      // each micro-batch's own mean, averaged over accumulation and ranks (the reference).
      double scale = global_norm ? 1.0 / std::max(global_tokens, 1.0)
                                 : 1.0 / (std::max<double>(terms.tokens, 1.0) * static_cast<double>(accum) *
                                          static_cast<double>(dist->world_size()));
      if (i + 1 == micro.size()) reducer->arm();  // the step's last backward: reduce buckets as they fill
      (terms.sum * scale).backward();
      loss_sum += terms.sum.item<double>();
    }
    std::vector<at::Tensor> grads;
    for (auto& p : update->gradient_params()) grads.push_back(p.tensor.grad());
    reducer->reduce(grads);
    double total_loss = dist->sum(loss_sum, "loss sum");
    if (inject_nonfinite_at == step + 1 && rollbacks == 0) total_loss = std::numeric_limits<double>::quiet_NaN();
    double norm = grad_norm();
    bool finite = std::isfinite(total_loss) && std::isfinite(norm);
    finite = dist->sum(finite ? 0.0 : 1.0, "non-finite flag") == 0.0;  // decided on all ranks together
    return {total_loss / std::max(global_tokens, 1.0), norm, static_cast<int64_t>(global_tokens), finite,
            static_cast<int64_t>(global_positions)};
  }

  void evaluate() {
    auto batches = stage->validation_batches(eval_batches);
    if (batches.empty()) return;
    torch::NoGradGuard no_grad;
    AutocastGuard amp(autocast, device.type());
    stage->module().eval();
    double sum = 0, tokens = 0;
    for (auto& mb : batches) {
      auto t = stage->loss(on_device(mb));
      sum += t.sum.item<double>();
      tokens += static_cast<double>(t.tokens);
    }
    stage->module().train();
    double loss = sum / std::max(tokens, 1.0);
    spdlog::info("step {}: validation loss {:.6f} over {} tokens", step, loss, static_cast<int64_t>(tokens));
    if (main()) {
      nlohmann::json j{{"step", step}, {"validation_loss", loss}, {"validation_tokens", static_cast<int64_t>(tokens)}};
      metrics << j.dump() << "\n";
      metrics.flush();
      if (tensorboard) {
        tensorboard->add_scalar("validation/loss", loss, step);
        tensorboard->flush();
      }
    }
  }

  int loop() {
    stage->module().train();
    util::Progress::Options po;
    po.unit = "step";
    po.enabled = main();
    po.plain_interval_s = cfg.get_float("log.progress_interval_s");
    util::Progress progress(fmt::format("{} ", stage->name()), total_steps, po);
    progress.update(step);
    auto t_start = std::chrono::steady_clock::now();
    int64_t positions_since_start = 0;  // throughput: every position the model ran over
    while (step < total_steps) {
      saver->check();  // a failed background save stops the run here
      auto t0 = std::chrono::steady_clock::now();
      auto r = train_step();
      double lr = schedule.at(step);
      if (!r.finite) {
        update->zero_grad();
        if (nonfinite == "abort") {
          if (main()) save_checkpoint_as_diagnostics();
          throw Error(fmt::format("non-finite loss or gradient at step {} (loss {}, grad norm {}); "
                                  "train.nonfinite_policy is abort",
                                  step + 1, r.loss, r.grad_norm));
        }
        if (nonfinite == "rollback") {
          rollback(step + 1, r);
          progress.update(step);
          t_start = std::chrono::steady_clock::now();
          positions_since_start = 0;
          continue;
        }
        ++skipped;
        ++step;
        spdlog::warn("step {}: non-finite loss or gradient, update skipped ({} so far)", step, skipped);
        continue;
      }
      if (grad_clip > 0 && r.grad_norm > grad_clip) {
        double factor = grad_clip / (r.grad_norm + 1e-6);
        torch::NoGradGuard g;
        for (auto& p : update->gradient_params())
          if (p.tensor.grad().defined()) p.tensor.mutable_grad().mul_(factor);
      }
      saver->wait_copied();  // a checkpoint in flight may still be copying the weights and moments
      update->step(lr);
      update->zero_grad();
      ++step;
      tokens_seen += r.tokens;
      positions_since_start += r.positions;
      double dt = seconds_since(t0);
      double tok_s = static_cast<double>(positions_since_start) / std::max(seconds_since(t_start), 1e-9);
      progress.set_field("loss", fmt::format("{:.4f}", r.loss));
      progress.set_field("tok/s", util::human_count(tok_s));
      progress.update(step);
      if (main() && (step % log_every == 0 || step == total_steps)) {
        nlohmann::json j{{"step", step},          {"loss", r.loss},
                         {"lr", lr},              {"grad_norm", r.grad_norm},
                         {"tokens", tokens_seen}, {"tokens_per_s", static_cast<double>(r.positions) / std::max(dt, 1e-9)},
                         {"skipped", skipped}};
        metrics << j.dump() << "\n";
        metrics.flush();
        if (tensorboard) {
          tensorboard->add_scalar("train/loss", r.loss, step);
          tensorboard->add_scalar("train/lr", lr, step);
          tensorboard->add_scalar("train/grad_norm", r.grad_norm, step);
          tensorboard->add_scalar("train/tokens_per_s", j["tokens_per_s"].get<double>(), step);
          tensorboard->flush();
        }
      }
      if (util::fault_armed("after_step", step)) {  // a test's crash: step logged, earlier checkpoints committed
        saver->wait();
        util::kill_self();
      }
      if (eval_every > 0 && step % eval_every == 0) evaluate();
      if (int sig = g_stop_signal.load(); sig != 0) {
        progress.finish();
        spdlog::warn("received signal {}: saving a checkpoint at step {} and stopping", sig, step);
        save_checkpoint(/*wait=*/true);
        return 0;
      }
      if (ckpt_every > 0 && step % ckpt_every == 0 && step < total_steps) save_checkpoint(/*wait=*/false);
    }
    progress.finish();
    save_checkpoint(/*wait=*/true);
    if (main()) {
      stage->save_model(run_dir / "final");
      spdlog::info("finished {} steps; model in {}", step, (run_dir / "final").string());
    }
    if (cpu_cache) {
      auto s = util::CachingCpuAllocatorScope::stats();
      spdlog::info("cpu allocator: {} of {} large tensors reused a cached block; highest live {}", s.hits,
                   s.hits + s.misses, util::human_bytes(static_cast<double>(s.high_water)));
    }
    return 0;
  }

  // train.nonfinite_policy rollback: back to the newest committed checkpoint
  // (weights, optimizer, streams), then past the data of every step since,
  // the offending one included. Deterministic: a run resumed from a
  // checkpoint before the rollback meets the same step and rolls back alike.
  void rollback(int64_t bad_step, const StepResult& r) {
    saver->wait();
    dist->barrier("rollback: newest checkpoint committed");  // rank 0 commits; everyone must see it
    auto dir = checkpoint::latest_checkpoint(run_dir);
    std::string cause = fmt::format("non-finite loss or gradient at step {} (loss {}, grad norm {})", bad_step,
                                    r.loss, r.grad_norm);
    if (!dir || rollbacks >= max_rollbacks) {
      if (main()) save_checkpoint_as_diagnostics();
      if (!dir)
        throw Error(fmt::format("{}; train.nonfinite_policy is rollback but no checkpoint has been written yet "
                                "(checkpoint.every = {})",
                                cause, ckpt_every));
      throw Error(fmt::format("{}; the run already rolled back {} time(s) (train.max_rollbacks = {}): aborting",
                              cause, rollbacks, max_rollbacks));
    }
    int64_t count = rollbacks + 1;
    load_checkpoint(*dir);
    rollbacks = count;
    int64_t window = bad_step - step;
    for (int64_t i = 0; i < window * accum; ++i) stage->next_batch();  // drawn and dropped
    spdlog::warn("{}: rolled back to {} (step {}) and skipped the data of steps {}..{} (rollback {} of at most {})",
                 cause, dir->string(), step, step + 1, bad_step, rollbacks, max_rollbacks);
    reopen_metrics_at_step();
    if (main()) {
      nlohmann::json j{{"step", step},
                       {"rollback_from_step", bad_step},
                       {"data_skipped_steps", window},
                       {"rollbacks", rollbacks}};
      metrics << j.dump() << "\n";
      metrics.flush();
    }
  }

  // Rank 0: metrics.jsonl keeps the lines up to `step` (a resume or a
  // rollback recomputes the rest) and is open for appending.
  void reopen_metrics_at_step() {
    if (!main()) return;
    if (metrics.is_open()) metrics.close();
    truncate_metrics(run_dir / "metrics.jsonl", step);
    metrics.open(run_dir / "metrics.jsonl", std::ios::app);
  }

  void save_checkpoint_as_diagnostics() {
    auto dir = run_dir / fmt::format("nonfinite_step_{:08d}", step + 1);
    stage->save_model(dir);
    spdlog::error("saved the model that produced the non-finite step to {}", dir.string());
  }
};

Trainer::Trainer(const config::Config& cfg, std::shared_ptr<dist::Dist> dist)
    : impl_(std::make_unique<Impl>(cfg, std::move(dist))) {}
Trainer::~Trainer() = default;

int Trainer::run() {
  impl_->setup();
  return impl_->loop();
}

}  // namespace tess::train
