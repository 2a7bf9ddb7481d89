// `tess debug schedule|diffusion-forward`: the diffusion internals a user
// needs to plot a schedule or replay one training example exactly (a loss
// spike, a suspicious batch) with the noise that produced it.
#include <torch/torch.h>

#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/diffusion/diffusion_loss.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

struct ScheduleArgs {
  std::string kind = "cosine_improved";
  int64_t timesteps = 5000;
};

struct ForwardArgs {
  std::string model, ids, span_mask, noise, previous, output, self_condition, schedule = "cosine_improved";
  int64_t timestep = 0, timesteps = 5000;
  double simplex_value = 5.0;
};

int schedule(const ScheduleArgs& a) {
  diffusion::NoiseScheduler s(diffusion::parse_schedule(a.kind), a.timesteps);
  std::cout << "i,abar\n";
  for (int64_t i = 0; i < s.timesteps(); ++i) std::cout << fmt::format("{},{:.17g}\n", i, s.abar(i));
  return 0;
}

torch::Tensor load_named(const std::string& file, const char* name, torch::IntArrayRef shape) {
  model::SafetensorsFile f(file);
  if (!f.find(name)) throw Error(fmt::format("{}: expected a tensor named '{}'", file, name));
  auto t = f.load(name).to(torch::kFloat32);
  if (t.sizes() != shape)
    throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {}", file, name, c10::str(t.sizes()), c10::str(shape)));
  return t;
}

int diffusion_forward(const ForwardArgs& a) {
  std::optional<diffusion::SelfCondition> mode;
  if (!a.self_condition.empty()) mode = diffusion::parse_self_condition(a.self_condition);
  auto lm = diffusion::load_diffusion_lm(a.model, mode, false, std::string("float32"));
  lm->eval();
  int64_t vocab = lm->decoder->config().vocab_size;
  auto ids = parse_token_ids(a.ids, "--ids", vocab);
  auto mask = parse_int_list(a.span_mask, "--span-mask");
  if (mask.size() != ids.size())
    throw Error(fmt::format("--span-mask has {} entries, --ids has {}: give one 0/1 per token", mask.size(), ids.size()));
  for (auto m : mask)
    if (m != 0 && m != 1) throw Error(fmt::format("--span-mask: expected 0 or 1, got {}", m));
  if (a.timestep < 0 || a.timestep >= a.timesteps)
    throw Error(fmt::format("--timestep {} is outside [0, {})", a.timestep, a.timesteps));
  int64_t l = static_cast<int64_t>(ids.size());
  auto id_t = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto mask_t = torch::tensor(mask, torch::kInt64).to(torch::kBool).unsqueeze(0);
  auto noise = load_named(a.noise, "noise", {1, l, vocab});
  torch::Tensor prev;
  if (!a.previous.empty()) prev = load_named(a.previous, "logits", {1, l, vocab});

  diffusion::DiffusionLoss loss(diffusion::NoiseScheduler(diffusion::parse_schedule(a.schedule), a.timesteps),
                                {a.simplex_value, 0.0});
  torch::NoGradGuard no_grad;
  torch::Tensor logits;
  auto r = loss.replay(*lm, id_t, mask_t, torch::tensor({a.timestep}, torch::kInt64), noise, prev, &logits);
  double mean = r.tokens ? r.loss_sum.item<double>() / static_cast<double>(r.tokens) : 0.0;
  auto loss_t = torch::tensor(mean, torch::kFloat32);
  model::write_safetensors(a.output, {{"logits", logits.to(torch::kFloat32).contiguous()}, {"loss", loss_t}});
  std::cout << fmt::format("loss {:.9g} over {} span tokens (t = {}/{}, self-conditioning {}: {})\nwrote {}\n", mean,
                           r.tokens, a.timestep, a.timesteps, diffusion::self_condition_name(lm->self_condition()),
                           prev.defined() ? "previous logits given" : "no previous prediction", a.output);
  return 0;
}

}  // namespace

void add_debug_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("debug", "Inspect diffusion internals: noise schedules, one diffusion forward");
  cmd->require_subcommand(1);

  auto s = std::make_shared<ScheduleArgs>();
  auto* sc = cmd->add_subcommand("schedule", "Print the noise schedule as CSV i,abar (i = 0..T-1)");
  sc->add_option("--kind", s->kind, "cosine_improved, linear or cosine_capped")
      ->check(CLI::IsMember({"cosine_improved", "linear", "cosine_capped"}))->capture_default_str();
  sc->add_option("--timesteps", s->timesteps, "Number of diffusion steps T")->check(CLI::PositiveNumber)->capture_default_str();
  sc->callback([&action, s] { action = [s] { return schedule(*s); }; });

  auto f = std::make_shared<ForwardArgs>();
  auto* df = cmd->add_subcommand("diffusion-forward",
                                 "Replay one training example with given noise: write logits [1, L, V] and the loss");
  df->add_option("--model", f->model, "Diffusion (or AR) model directory")->required();
  df->add_option("--ids", f->ids, "Clean token ids, space-separated")->required();
  df->add_option("--span-mask", f->span_mask, "One 0/1 per token: 1 = noised span")->required();
  df->add_option("--timestep", f->timestep, "Diffusion step t of the example")->required();
  df->add_option("--noise", f->noise, "Safetensors file with tensor 'noise' [1, L, V] (standard normal z)")->required();
  df->add_option("--previous-logits", f->previous, "Safetensors file with tensor 'logits' [1, L, V]: self-conditioning input");
  df->add_option("--output", f->output, "Safetensors file to write (tensors 'logits' and 'loss')")->required();
  df->add_option("--timesteps", f->timesteps, "Training diffusion steps T")->capture_default_str();
  df->add_option("--schedule", f->schedule, "Noise schedule")
      ->check(CLI::IsMember({"cosine_improved", "linear", "cosine_capped"}))->capture_default_str();
  df->add_option("--simplex-value", f->simplex_value, "Simplex value k")->capture_default_str();
  df->add_option("--self-condition", f->self_condition, "Override the model's self-conditioning mode")
      ->check(CLI::IsMember({"none", "logits_mean", "logits_addition", "logits_max", "logits_multiply"}));
  df->callback([&action, f] { action = [f] { return diffusion_forward(*f); }; });
}

}  // namespace tess::cli
