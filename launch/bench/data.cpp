// `tess bench data`: the trainer's loader (data::BatchLoader over the
// adaptation stage's packed token shards and UL2 masks), synchronous and
// behind its prefetcher, against the rate a training case consumes.
#include <torch/torch.h>

#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "data/batches.h"
#include "data/tokenizer.h"
#include "launch/bench/common.h"
#include "launch/bench/workspace.h"

namespace tess::bench {
using json = nlohmann::json;

json bench_data(const BenchOptions& opt, const json& train) {
  apply_threads(opt);
  ScratchDir dir("data");
  auto preset = train_preset("small", opt.smoke);
  const int64_t B = preset.batch, L = preset.seq_len;
  int64_t tokens = opt.smoke ? (1 << 16) : (1 << 24);
  auto ws = BenchWorkspace::create(dir.path() / "inputs", preset.model.vocab_size, L, tokens, 0);
  auto cfg = config::Config::load_string(ws.config(preset, config::RunStage::Adaptation, "fp32", dir.path() / "run"),
                                         "bench data");
  auto tok = data::load_tokenizer(ws.tokenizer);
  auto examples = data::open_examples({ws.corpus.string()}, {data::DataKind::TokenShards}, "adaptation", cfg, *tok,
                                      tok->base_hash(), "train", "data.train");
  // As the adaptation stage builds its loader (train/stages/stage_base.cpp).
  auto loader = [&](int64_t prefetch) {
    data::BatchLoader::Options lo;
    lo.sampler.num_samples = examples->size();
    lo.sampler.per_rank_batch = B;
    lo.masker = std::make_shared<data::SpanMasker>(data::Ul2Options::from_config(cfg));
    lo.prefetch = prefetch;
    return std::make_unique<data::BatchLoader>(examples, lo);
  };
  int batches = opt.smoke ? 4 : 400;
  auto sync = loader(0);  // produced on this thread when asked
  for (int i = 0; i < 4; ++i) sync->next();
  auto t0 = Clock::now();
  for (int i = 0; i < batches; ++i) sync->next();
  double per_batch = since(t0) / batches;
  double loader_tps = static_cast<double>(B * L) / per_batch;

  // Behind the prefetcher, as the trainer uses it: the wait per next().
  auto ahead = loader(4);
  ahead->next();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  double wait = 0;
  for (int i = 0; i < batches; ++i) {
    auto w0 = Clock::now();
    ahead->next();
    wait += since(w0);
  }
  json j = {{"preset", "small"}, {"batch", B}, {"seq_len", L}, {"dataset_tokens", tokens},
            {"threads", torch::get_num_threads()},
            {"loader_batch_s", per_batch}, {"loader_tokens_per_s", loader_tps},
            {"prefetch_wait_per_batch_s", wait / batches},
            {"measures", "data::BatchLoader over packed token shards with UL2 masks (the adaptation stage's loader)"}};
  std::string id = "small/adaptation/fp32";
  double consumption = consumption_of(train, id, "tokens_per_s");
  if (consumption > 0) {
    double step = consumption_of(train, id, "step_s");
    j["trainer_case"] = id;
    j["trainer_tokens_per_s"] = consumption;
    j["loader_over_trainer"] = loader_tps / consumption;
    j["stall_share_without_prefetch"] = per_batch / step;
  }
  return j;
}

}  // namespace tess::bench
