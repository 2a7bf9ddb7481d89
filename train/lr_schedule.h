#pragma once
// Learning-rate schedules: linear warmup, then constant, linear decay or
// cosine decay to min_lr_ratio * lr. A pure function of the step, so a
// resumed run gets exactly the rate the uninterrupted run had.
#include <cstdint>
#include <string>

#include "core/config/choices.h"

namespace tess::config {
class Config;
}  // namespace tess::config

namespace tess::train {

struct LrSchedule {
  using Shape = config::LrShape;
  double lr = 1e-5;
  Shape shape = Shape::Constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_lr_ratio = 0.0;

  // Reads train.lr, train.lr_schedule, train.warmup_steps|warmup_ratio and
  // train.min_lr_ratio; total_steps is the run's number of optimizer steps.
  static LrSchedule from_config(const config::Config& cfg, int64_t total_steps);

  // Rate for optimizer step `step` (0-based: the first update uses step 0).
  double at(int64_t step) const;
};

}  // namespace tess::train
