#include "train/checkpoint_manager.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "train/checkpoint_saver.h"
#include "train/stage.h"
#include "train/weight_update.h"

namespace tess::train {
namespace fs = std::filesystem;

CheckpointManager::Options CheckpointManager::Options::from_config(const config::Config& cfg) {
  Options o;
  o.every = cfg.get_int("checkpoint.every");
  o.keep_last = static_cast<int>(cfg.get_int("checkpoint.keep_last"));
  o.asynchronous = cfg.get_bool("checkpoint.async");
  o.verify = cfg.get_bool("checkpoint.verify");
  o.resume = cfg.get_string("checkpoint.resume");
  o.overwrite = cfg.get_bool("checkpoint.overwrite");
  o.timeout_s = cfg.get_float("dist.timeout_s");
  o.config_hash = cfg.hash();
  o.config = cfg.canonical_values();
  return o;
}

CheckpointManager::CheckpointManager(fs::path run_dir, Options options, dist::Dist& dist, Stage& stage,
                                     WeightUpdate& update, std::vector<NamedParameter> params)
    : run_dir_(std::move(run_dir)),
      options_(std::move(options)),
      dist_(dist),
      stage_(stage),
      update_(update),
      params_(std::move(params)),
      saver_(std::make_unique<CheckpointSaver>(run_dir_, dist_, options_.keep_last, options_.asynchronous,
                                               options_.timeout_s)) {}

CheckpointManager::~CheckpointManager() = default;

TrainState CheckpointManager::resume() {
  auto root = checkpoint::checkpoints_root(run_dir_);
  if (dist_.is_main())  // what an interrupted save left: finished or removed, `latest` repaired
    for (const auto& line : checkpoint::recover_checkpoints(run_dir_)) spdlog::warn("{}: {}", root.string(), line);
  dist_.barrier("checkpoints recovered");
  if (options_.resume == "none") refuse_or_clear_earlier_checkpoints();
  std::optional<fs::path> dir;
  if (options_.resume == "auto") {
    dir = checkpoint::latest_checkpoint(run_dir_);
  } else if (options_.resume != "none") {
    dir = fs::path(options_.resume);
    if (!fs::is_directory(*dir))
      throw Error(fmt::format("checkpoint.resume: '{}' is not a directory", options_.resume));
  }
  return dir ? load(*dir) : TrainState{};
}

// A fresh run must not lose (by retention) or be confused with an earlier
// run's checkpoints in the same directory: refuse, or delete them when told.
void CheckpointManager::refuse_or_clear_earlier_checkpoints() {
  auto earlier = checkpoint::committed_checkpoints(run_dir_);
  if (earlier.empty()) return;
  auto root = checkpoint::checkpoints_root(run_dir_);
  if (!options_.overwrite)
    throw Error(fmt::format("checkpoint.resume is none but {} holds {} checkpoint(s) of an earlier run (newest: {}, "
                            "step {}): resume it (checkpoint.resume: auto), use another run.dir, or set "
                            "checkpoint.overwrite: true to delete them",
                            root.string(), earlier.size(), earlier.back().dir.filename().string(),
                            earlier.back().manifest.step));
  dist_.barrier("earlier checkpoints counted");  // every rank decided before rank 0 deletes
  if (dist_.is_main()) {
    std::error_code ec;
    fs::remove_all(root, ec);
    if (ec) throw Error(fmt::format("checkpoint.overwrite: cannot delete {}: {}", root.string(), ec.message()));
    spdlog::warn("checkpoint.overwrite: deleted the {} checkpoint(s) of the earlier run in {}", earlier.size(),
                 root.string());
  }
  dist_.barrier("earlier checkpoints deleted");
}

std::optional<TrainState> CheckpointManager::reload_latest() {
  saver_->wait();
  dist_.barrier("rollback: newest checkpoint committed");  // rank 0 commits; everyone must see it
  auto dir = checkpoint::latest_checkpoint(run_dir_);
  if (!dir) return std::nullopt;
  return load(*dir);
}

// Names each key whose value differs from the checkpoint's run (older
// checkpoints recorded only the hash).
void CheckpointManager::warn_changed_config(const fs::path& dir, const checkpoint::Manifest& m) const {
  if (!dist_.is_main()) return;
  if (m.config.empty()) {
    spdlog::warn("resuming {} with a different configuration (hash {} -> {}; the checkpoint predates recording its "
                 "keys): steps after the resume may differ from the original run",
                 dir.string(), m.config_hash, options_.config_hash);
    return;
  }
  std::vector<std::string> changed;
  for (const auto& [key, now] : options_.config) {
    auto it = m.config.find(key);
    std::string before = it == m.config.end() ? "(not a key then)" : it->second;
    if (before != now) changed.push_back(fmt::format("{}: {} -> {}", key, before, now));
  }
  for (const auto& [key, before] : m.config)
    if (!options_.config.count(key)) changed.push_back(fmt::format("{}: {} -> (no longer a key)", key, before));
  std::string list;
  for (size_t i = 0; i < changed.size() && i < 12; ++i) list += "\n  " + changed[i];
  if (changed.size() > 12) list += fmt::format("\n  ... and {} more", changed.size() - 12);
  spdlog::warn("resuming {} with {} changed key(s); steps after the resume may differ from the original run:{}",
               dir.string(), changed.size(), list);
}

// Weights, optimizer state, stage streams and counters from a checkpoint.
TrainState CheckpointManager::load(const fs::path& dir) {
  if (!options_.verify)
    spdlog::warn("checkpoint.verify is false: the checkpoint's files are not checked against their sha256");
  auto m = checkpoint::verify_checkpoint(dir, options_.verify);
  if (m.stage != stage_.name())
    throw Error(fmt::format("{}: a checkpoint of stage '{}', but this run is stage '{}'", dir.string(), m.stage,
                            stage_.name()));
  if (m.tokenizer_hash != stage_.tokenizer_hash())
    throw Error(fmt::format("{}: written with tokenizer {}, but this run's tokenizer is {}", dir.string(),
                            m.tokenizer_hash, stage_.tokenizer_hash()));
  if (m.config_hash != options_.config_hash) warn_changed_config(dir, m);
  torch::NoGradGuard no_grad;
  model::SafetensorsCheckpoint weights(dir / "model");
  for (auto& p : params_) {
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
  auto needed = update_.needed_state();
  std::map<std::string, at::Tensor> opt_state;
  std::vector<std::map<std::string, std::string>> rank_states;
  for (int r = 0; r < m.world_size; ++r) {
    model::SafetensorsFile f(dir / checkpoint::rank_file_name(r));
    for (const auto& e : f.entries())
      if (needed.count(e.name) && !opt_state.count(e.name)) opt_state[e.name] = f.load(e.name);
    rank_states.push_back(f.metadata());
  }
  update_.load_state(opt_state, (dir / "rank files").string());
  stage_.load_state(rank_states, (dir / "rank files").string());
  auto counter = [&](const char* key) {  // absent in checkpoints older than the counter
    auto it = rank_states[0].find(key);
    return it == rank_states[0].end() ? int64_t{0} : std::stoll(it->second);
  };
  TrainState s{m.step, m.tokens_seen, counter("skipped"), counter("rollbacks")};
  if (m.world_size != dist_.world_size())
    spdlog::info("resuming a {}-process checkpoint on {} processes", m.world_size, dist_.world_size());
  spdlog::info("resumed from {} at step {} ({} tokens seen)", dir.string(), s.step, s.tokens_seen);
  return s;
}

bool CheckpointManager::due(int64_t step, int64_t total) const {
  return options_.every > 0 && step % options_.every == 0 && step < total;
}

// Hands this step's state to the saver (deferred host copies when it writes
// in the background: the writer copies them before the next optimizer step).
void CheckpointManager::save(const TrainState& state, bool wait) {
  CheckpointSnapshot s;
  s.step = state.step;
  if (saver_->asynchronous()) s.copies = std::make_shared<checkpoint::DeferredCopies>();
  s.rank_tensors = update_.state();
  if (s.copies) s.copies->take_all(s.rank_tensors);
  s.rank_metadata = stage_.state();
  s.rank_metadata["step"] = std::to_string(state.step);
  s.rank_metadata["tokens_seen"] = std::to_string(state.tokens_seen);
  s.rank_metadata["skipped"] = std::to_string(state.skipped);
  s.rank_metadata["rollbacks"] = std::to_string(state.rollbacks);
  if (dist_.is_main()) {
    s.write_model = stage_.model_writer(s.copies.get());
    s.manifest.step = state.step;
    s.manifest.tokens_seen = state.tokens_seen;
    s.manifest.world_size = dist_.world_size();
    s.manifest.stage = stage_.name();
    s.manifest.config_hash = options_.config_hash;
    s.manifest.config = options_.config;
    s.manifest.tokenizer_hash = stage_.tokenizer_hash();
  }
  saver_->save(std::move(s));
  if (wait) saver_->wait();
}

void CheckpointManager::check() { saver_->check(); }

void CheckpointManager::wait_copied() { saver_->wait_copied(); }

void CheckpointManager::wait() { saver_->wait(); }

}  // namespace tess::train
