#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/config/choices.h"
#include "core/config/config.h"

namespace tess::train {

LrSchedule LrSchedule::from_config(const config::Config& cfg, int64_t total_steps) {
  LrSchedule s;
  s.lr = cfg.get_float("train.lr");
  s.shape = config::lr_shape_choices().parse(cfg.get_string("train.lr_schedule"));
  s.total_steps = std::max<int64_t>(1, total_steps);
  double ratio = cfg.get_float("train.warmup_ratio");
  s.warmup_steps = ratio > 0 ? static_cast<int64_t>(std::ceil(ratio * static_cast<double>(s.total_steps)))
                             : cfg.get_int("train.warmup_steps");
  s.min_lr_ratio = cfg.get_float("train.min_lr_ratio");
  return s;
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (shape == Shape::Constant) return lr;
  int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  double progress = std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  double factor = shape == Shape::Linear ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor);
}

}  // namespace tess::train
