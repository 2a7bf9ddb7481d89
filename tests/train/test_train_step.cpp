// The optimizer step of every stage waits for the device once (train/train_step.h).
// On this CPU the waits are counted, not felt: util::HostSyncCounter sees
// each .item(), nonzero() and host read the step would make on a GPU.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/util/host_sync.h"
#include "tests/train/trainer_workspace.h"
#include "train/train_step.h"
#include "train/training.h"

using tess::test::workspace;
using tess::util::HostSyncCounter;

namespace {

std::string joined_ops(const HostSyncCounter& c) {
  std::string out;
  for (const auto& op : c.ops()) out += (out.empty() ? "" : ", ") + op;
  return out;
}

}  // namespace

TEST_CASE("the host-sync counter sees .item(), nonzero() and host reads, and skips CPU-only checks",
          "[unit][train]") {
  HostSyncCounter c;
  auto t = torch::tensor({0.0, 1.5, 2.0});
  (void)t.sum().item<double>();
  (void)t.nonzero();
  (void)tess::util::read_to_host(t);
  {
    tess::util::CpuOnlyCheck check;
    (void)t.max().item<double>();
  }
  (void)(t * 2).add_(1);  // no wait
  INFO(joined_ops(c));
  CHECK(c.count() == 3);
}

TEST_CASE("a training step of every stage waits for the device once (loss, counts and gradient norms together)",
          "[unit][train]") {
  auto& w = workspace();
  struct Case {
    std::string stage;
    std::filesystem::path data;
    std::vector<std::string> extra;
  };
  for (const auto& c : {Case{"ar", w.corpus, {}},
                        Case{"adaptation", w.corpus, {"diffusion.self_condition_prob=1"}},
                        Case{"instruction", w.chat, {"diffusion.self_condition_prob=0"}},
                        Case{"reward", w.preferences, {"data.seq_len=80", "model.max_position_embeddings=80"}}}) {
    INFO(c.stage);
    std::vector<std::string> sets = {"run.dir=" + (w.dir / ("runs/syncs_" + c.stage)).string(),
                                      "data.tokenizer=" + w.tokenizer.string(), "data.train=[" + c.data.string() + "]",
                                      "train.grad_accum=2", "train.batch_size=2", "train.grad_clip=1.0"};
    sets.insert(sets.end(), c.extra.begin(), c.extra.end());
    auto cfg = tess::config::Config::load(w.config("syncs_" + c.stage, "run:\n  stage: " + c.stage + "\n"), sets);
    tess::dist::Dist single;
    auto training = tess::train::Training::build(cfg, single);
    for (int step = 0; step < 3; ++step) {
      HostSyncCounter counter;
      auto r = training.step->compute();
      training.step->apply(r, 1e-3);
      INFO("step " << step << ": " << joined_ops(counter));
      CHECK(counter.count() == 1);
      CHECK(r.finite);
      CHECK(r.grad_norm > 0);
    }
  }
}
