// `tess bench dist`: the trainer's step (train::Training) on 1 process
// against 2 Gloo processes under `tess launch --nproc 2`, same global batch,
// same cores.
#include <torch/torch.h>

#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/util/error.h"
#include "core/util/file.h"
#include "launch/bench/common.h"
#include "launch/bench/workspace.h"
#include "train/train_step.h"
#include "train/training.h"

namespace tess::bench {
namespace fs = std::filesystem;
using json = nlohmann::json;

void bench_dist_worker(const BenchOptions& opt, const fs::path& workspace, int64_t global_batch, int64_t steps,
                       bool overlap, const fs::path& output) {
  apply_threads(opt);
  auto env = dist::DistEnv::from_environment();
  auto d = env.world_size > 1 ? dist::Dist::create(env, "gloo", std::chrono::milliseconds(600000))
                              : std::make_shared<dist::Dist>();
  if (global_batch % d->world_size() != 0)
    throw Error(fmt::format("--global-batch {} is not divisible by {} processes", global_batch, d->world_size()));
  auto preset = train_preset("small", opt.smoke);
  preset.batch = global_batch / d->world_size();
  auto ws = BenchWorkspace::at(workspace);
  auto run_dir = workspace / fmt::format("run_{}_rank{}", d->world_size(), d->rank());
  auto cfg = config::Config::load_string(ws.config(preset, config::RunStage::Adaptation, "fp32", run_dir),
                                         "bench dist worker", {std::string("dist.overlap=") + (overlap ? "true" : "false")});
  auto training = train::Training::build(cfg, *d);
  training.stage->module().train();
  int64_t grad_bytes = 0;
  for (const auto& p : training.params) grad_bytes += static_cast<int64_t>(p.tensor.nbytes());
  double compute = 0, reduce = 0, optim = 0, total = 0;
  for (int64_t i = 0; i < steps + 1; ++i) {
    d->barrier("bench step");
    auto s0 = Clock::now();
    auto r = training.step->compute();
    training.step->apply(r, 1e-5);
    const auto& ph = training.step->phases();
    std::vector<torch::Tensor> slowest{torch::tensor({since(s0)}, torch::kFloat64)};
    d->all_reduce_max(slowest, "bench step time");
    if (i > 0) {  // the first step warms up
      compute += ph.data + ph.forward + ph.noise + ph.self_condition + ph.backward;
      reduce += ph.reduce;
      optim += ph.update;
      total += slowest[0].item<double>();
    }
  }
  double n = static_cast<double>(steps);
  if (d->is_main()) {
    json j = {{"world_size", d->world_size()}, {"backend", d->backend_name()},
              {"threads_per_process", torch::get_num_threads()}, {"global_batch", global_batch},
              {"per_rank_batch", preset.batch}, {"seq_len", preset.seq_len}, {"preset", "small"},
              {"stage", "adaptation"}, {"steps", steps}, {"step_s", total / n}, {"compute_s", compute / n},
              {"all_reduce_s", reduce / n}, {"overlap", overlap}, {"optimizer_s", optim / n},
              {"gradient_bytes", grad_bytes},
              {"tokens_per_s", static_cast<double>(global_batch * preset.seq_len) / (total / n)},
              {"measures", "the trainer's step (train::TrainStep); all_reduce_s = the gradient all-reduce, norm and "
                           "scalar sums after backward"}};
    std::ofstream f(output);
    f << j.dump(2) << "\n";
    if (!f) throw Error(fmt::format("cannot write {}", output.string()));
  }
}

json bench_dist(const BenchOptions& opt) {
  ScratchDir dir("dist");
  auto exe = quote(exe_of(opt).string());
  int64_t global_batch = opt.smoke ? 2 : 8, steps = opt.smoke ? 1 : 3;
  auto preset = train_preset("small", opt.smoke);
  BenchWorkspace::create(dir.path() / "inputs", preset.model.vocab_size, preset.seq_len,
                         (steps + 4) * global_batch * preset.seq_len * 2, 0);
  int cores = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::string smoke = opt.smoke ? " --smoke" : "";
  auto inputs = quote((dir.path() / "inputs").string());
  auto one = dir.path() / "one.json", two = dir.path() / "two.json", two_overlap = dir.path() / "two_overlap.json";
  run_child(fmt::format("env -u WORLD_SIZE -u RANK {} bench dist-worker --workspace {} --global-batch {} --steps {} "
                        "--threads {} --output {}{} >&2",
                        exe, inputs, global_batch, steps, cores, quote(one.string()), smoke),
            "bench dist (1 process)");
  for (auto [out, flag] : {std::pair{two, ""}, {two_overlap, " --overlap"}})
    run_child(fmt::format("{} launch --nproc 2 -- bench dist-worker --workspace {} --global-batch {} --steps {} "
                          "--threads {} --output {}{}{} >&2",
                          exe, inputs, global_batch, steps, std::max(1, cores / 2), quote(out.string()), smoke, flag),
              "bench dist (2 processes)");
  auto read = [](const fs::path& f) { return json::parse(util::read_file(f, "bench dist result")); };
  auto j1 = read(one), j2 = read(two), j2o = read(two_overlap);
  double step1 = j1["step_s"].get<double>();
  return {{"one_process", j1}, {"two_processes", j2}, {"two_processes_overlapped", j2o},
          {"efficiency", step1 / j2["step_s"].get<double>()},
          {"efficiency_overlapped", step1 / j2o["step_s"].get<double>()},
          {"note", "same global batch and the same cores: 1 process x all threads vs 2 Gloo processes x half"}};
}

}  // namespace tess::bench
