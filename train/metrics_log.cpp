#include "train/metrics_log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/tensorboard.h"
#include "train/train_step.h"

namespace tess::train {
namespace fs = std::filesystem;

MetricsLog::MetricsLog(fs::path run_dir, bool main, bool tensorboard)
    : file_(run_dir / "metrics.jsonl"), main_(main) {
  if (main_ && tensorboard) tensorboard_ = std::make_unique<util::TensorBoardWriter>(run_dir / "tensorboard");
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::reopen_at(int64_t step) {
  if (!main_) return;
  if (out_.is_open()) out_.close();
  if (fs::exists(file_)) {
    std::ifstream in(file_);
    std::string kept, line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("step", int64_t{0}) <= step) kept += line + "\n";
    }
    in.close();
    util::write_file_atomic(file_, kept);
  }
  out_.open(file_, std::ios::app);
  if (!out_) throw Error(fmt::format("cannot open '{}' for writing: {}", file_.string(), std::strerror(errno)));
}

void MetricsLog::write(const nlohmann::json& line) {
  errno = 0;
  out_ << line.dump() << "\n";
  out_.flush();
  if (!out_)
    throw Error(fmt::format("cannot write '{}': {}", file_.string(),
                            errno ? std::strerror(errno) : "write failed (disk full?)"));
}

void MetricsLog::step(int64_t step, const StepResult& r, double lr, int64_t tokens_seen, int64_t skipped,
                      double seconds, double mfu) {
  if (!main_) return;
  double tokens_per_s = static_cast<double>(r.positions) / std::max(seconds, 1e-9);
  write({{"step", step},
         {"loss", r.loss},
         {"lr", lr},
         {"grad_norm", r.grad_norm},
         {"tokens", tokens_seen},
         {"tokens_per_s", tokens_per_s},
         {"skipped", skipped},
         {"mfu", mfu}});
  if (tensorboard_) {
    tensorboard_->add_scalar("train/loss", r.loss, step);
    tensorboard_->add_scalar("train/lr", lr, step);
    tensorboard_->add_scalar("train/grad_norm", r.grad_norm, step);
    tensorboard_->add_scalar("train/tokens_per_s", tokens_per_s, step);
    tensorboard_->add_scalar("train/mfu", mfu, step);
    tensorboard_->flush();
  }
}

void MetricsLog::validation(int64_t step, double loss, int64_t tokens) {
  if (!main_) return;
  write({{"step", step}, {"validation_loss", loss}, {"validation_tokens", tokens}});
  if (tensorboard_) {
    tensorboard_->add_scalar("validation/loss", loss, step);
    tensorboard_->flush();
  }
}

void MetricsLog::event(const nlohmann::json& line) {
  if (main_) write(line);
}

}  // namespace tess::train
