#pragma once
// The noise schedule of simplex diffusion, shared by training (T steps) and
// sampling (N steps, same function): the table abar[i], i = 0..T-1, and the
// forward process x_t = sqrt(abar[t]) * S + sqrt(1 - abar[t]) * k * z.
#include <cstdint>
#include <string>
#include <vector>

#include "core/util/choices.h"

namespace at {
class Tensor;
}
namespace tess::config {
class Config;
}
namespace tess::util {
class Rng;
}

namespace tess::diffusion {

enum class Schedule {
  CosineImproved,  // improved DDPM: abar[i] = f(i/T) / f(0), f(s) = cos^2(((s + 1e-4) / (1 + 1e-4)) pi/2)
  Linear,          // betas linear in [1e-4, 0.02], abar = cumprod(1 - beta)
  CosineCapped,    // GLIDE cosine: beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999), abar = cumprod(1 - beta)
};
const util::Choices<Schedule>& schedule_choices();  // diffusion.schedule
Schedule parse_schedule(const std::string& name);
const char* schedule_name(Schedule s);

class NoiseScheduler {
 public:
  NoiseScheduler(Schedule schedule, int64_t timesteps);
  // diffusion.schedule and diffusion.timesteps.
  static NoiseScheduler from_config(const config::Config& cfg);
  // The same schedule function discretised into `steps` steps (sampling).
  NoiseScheduler with_steps(int64_t steps) const { return NoiseScheduler(schedule_, steps); }

  Schedule schedule() const { return schedule_; }
  int64_t timesteps() const { return static_cast<int64_t>(abar_.size()); }
  const std::vector<double>& abar() const { return abar_; }
  double abar(int64_t t) const { return abar_.at(static_cast<size_t>(t)); }
  // abar[t - 1], and 1 at t = 0 (the end of sampling is noise-free).
  double abar_prev(int64_t t) const { return t > 0 ? abar(t - 1) : 1.0; }

  // t ~ Uniform{0..T-1}, one per sequence, from `rng`: int64 [batch].
  at::Tensor sample_timesteps(int64_t batch, util::Rng& rng) const;
  // x_t for simplex rows `simplex` [..., V] with per-row timesteps `t`
  // (int64, shape = simplex's leading shape or [rows]) and standard normal z.
  at::Tensor add_noise(const at::Tensor& simplex, const at::Tensor& t, const at::Tensor& z, double k) const;

 private:
  Schedule schedule_;
  std::vector<double> abar_;
};

}  // namespace tess::diffusion
