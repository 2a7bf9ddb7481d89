#pragma once
// The run's training curves: RUN_DIR/metrics.jsonl (one JSON line per logged
// step, validation and rollback) and, with log.tensorboard, TensorBoard
// scalars under RUN_DIR/tensorboard. Written by rank 0; the other ranks'
// calls do nothing. A failed write (disk full) throws tess::Error naming the
// file: never a silently short curve.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json_fwd.hpp>

namespace tess::util {
class TensorBoardWriter;
}

namespace tess::train {

struct StepResult;

class MetricsLog {
 public:
  MetricsLog(std::filesystem::path run_dir, bool main, bool tensorboard);
  ~MetricsLog();

  // Keeps the lines up to `step` (a resume or a rollback recomputes the
  // rest) and appends from there.
  void reopen_at(int64_t step);
  // A step's line: loss, lr, grad norm, tokens seen, throughput, skipped,
  // and this rank's model FLOP utilisation.
  void step(int64_t step, const StepResult& r, double lr, int64_t tokens_seen, int64_t skipped, double seconds,
            double mfu);
  void validation(int64_t step, double loss, int64_t tokens);
  void event(const nlohmann::json& line);  // e.g. a rollback

 private:
  void write(const nlohmann::json& line);
  std::filesystem::path file_;
  bool main_;
  std::ofstream out_;
  std::unique_ptr<util::TensorBoardWriter> tensorboard_;
};

}  // namespace tess::train
