#include <catch2/catch.hpp>

#include "core/config/config.h"
#include "train/lr_schedule.h"

using tess::train::LrSchedule;

TEST_CASE("warmup rises linearly to the peak, then the shape decays to the floor", "[unit][train]") {
  LrSchedule s;
  s.lr = 1.0;
  s.warmup_steps = 4;
  s.total_steps = 14;
  CHECK(s.at(0) == Approx(0.25));
  CHECK(s.at(3) == Approx(1.0));
  CHECK(s.at(100) == Approx(1.0));  // constant

  s.shape = LrSchedule::Shape::Linear;
  CHECK(s.at(4) == Approx(1.0));
  CHECK(s.at(9) == Approx(0.5));
  CHECK(s.at(14) == Approx(0.0));

  s.shape = LrSchedule::Shape::Cosine;
  s.min_lr_ratio = 0.1;
  CHECK(s.at(4) == Approx(1.0));
  CHECK(s.at(9) == Approx(0.1 + 0.9 * 0.5));
  CHECK(s.at(14) == Approx(0.1));
}

TEST_CASE("the schedule reads its keys, and warmup_ratio wins over warmup_steps", "[unit][train]") {
  auto cfg = tess::config::Config::load_string(
      "run: {stage: instruction}\ntrain: {lr: 1.0e-5, lr_schedule: cosine, warmup_ratio: 0.03, warmup_steps: 7}\n",
      "inline");
  auto s = LrSchedule::from_config(cfg, 1000);
  CHECK(s.shape == LrSchedule::Shape::Cosine);
  CHECK(s.warmup_steps == 30);
  CHECK(s.at(29) == Approx(1e-5));
}
