#include "core/diffusion/noise_scheduler.h"

#include <torch/torch.h>

#include <cmath>

#include <fmt/format.h>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::diffusion {
namespace {

double cosine_f(double s) {
  double c = std::cos((s + 1e-4) / (1.0 + 1e-4) * M_PI / 2.0);
  return c * c;
}

}  // namespace

const util::Choices<Schedule>& schedule_choices() {
  static const util::Choices<Schedule> c("noise schedule", {{Schedule::CosineImproved, "cosine_improved"},
                                                            {Schedule::Linear, "linear"},
                                                            {Schedule::CosineCapped, "cosine_capped"}});
  return c;
}
Schedule parse_schedule(const std::string& name) { return schedule_choices().parse(name); }
const char* schedule_name(Schedule s) { return schedule_choices().name(s); }

NoiseScheduler::NoiseScheduler(Schedule schedule, int64_t T) : schedule_(schedule) {
  if (T < 1) throw Error(fmt::format("the number of diffusion steps must be >= 1, got {}", T));
  abar_.resize(static_cast<size_t>(T));
  double cumprod = 1.0;
  for (int64_t i = 0; i < T; ++i) {
    double s1 = static_cast<double>(i) / static_cast<double>(T);
    double s2 = static_cast<double>(i + 1) / static_cast<double>(T);
    switch (schedule) {
      case Schedule::CosineImproved:
        abar_[i] = cosine_f(s1) / cosine_f(0.0);
        continue;
      case Schedule::Linear: {
        double beta = T == 1 ? 1e-4 : 1e-4 + (0.02 - 1e-4) * static_cast<double>(i) / static_cast<double>(T - 1);
        cumprod *= 1.0 - beta;
        break;
      }
      case Schedule::CosineCapped:
        cumprod *= 1.0 - std::min(1.0 - cosine_f(s2) / cosine_f(s1), 0.999);
        break;
    }
    abar_[i] = cumprod;
  }
}

NoiseScheduler NoiseScheduler::from_config(const config::Config& cfg) {
  return NoiseScheduler(parse_schedule(cfg.get_string("diffusion.schedule")), cfg.get_int("diffusion.timesteps"));
}

at::Tensor NoiseScheduler::sample_timesteps(int64_t batch, util::Rng& rng) const {
  auto t = torch::empty({batch}, torch::kInt64);
  auto acc = t.accessor<int64_t, 1>();
  for (int64_t b = 0; b < batch; ++b) acc[b] = rng.uniform_int(0, timesteps() - 1);
  return t;
}

at::Tensor NoiseScheduler::add_noise(const at::Tensor& simplex, const at::Tensor& t, const at::Tensor& z,
                                     double k) const {
  auto table = torch::tensor(abar_, torch::kFloat64).to(simplex.device());
  auto a = table.index_select(0, t.reshape(-1).to(torch::kInt64)).reshape(t.sizes()).to(simplex.scalar_type());
  while (a.dim() < simplex.dim()) a = a.unsqueeze(-1);
  return a.sqrt() * simplex + (1.0 - a).sqrt() * k * z;
}

}  // namespace tess::diffusion
