#pragma once
// Continuous batching for the diffusion sampler (`tess serve`): rows join and
// leave at step boundaries, and every row denoises on its own clock -- its own
// step count N and time t, span length, nucleus and temperature, adaptive
// stopping rule, reward-guidance scale and random stream. One forward pass per
// step serves them all: the model reads each sequence's time t/N from its own
// row, prompts of different lengths are right-padded and masked.
//
// A row draws exactly what diffusion::Sampler draws for it (x_T = k * noise,
// then per step its token choice and its re-noising, from its own stream), so
// a row's text is the same whether it runs alone, beside others, or joins a
// batch mid-way -- and a row alone equals Sampler::sample on a batch of one
// with the same stream (tests/core/diffusion/test_continuous_sampler.cpp).
// Not here (Sampler only): the prompt cache, whose recorded keys and values
// assume every row refreshes together.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "core/diffusion/sampler.h"

namespace tess::diffusion {

struct RowSpec {
  std::vector<int64_t> prompt;  // the clean context (at least one token)
  int64_t span_length = 1;
  int64_t steps = 100;          // N
  double top_p = 0.99;          // 0 = argmax
  double temperature = 1.0;
  StopRule stop;                // adaptive stopping and freezing; end_id/pad_id cut the answer
  double guidance_scale = 0;    // reward-guidance ascent step of this row (needs the sampler's guidance)
  uint64_t seed = 0;
  std::string stream = "generate";  // the row's util::Rng is (seed, stream)
};

// What one step did to one row.
struct RowUpdate {
  int64_t id = 0;
  int64_t step = 0;               // 1-based: steps this row has run
  int64_t steps = 0;              // its N
  int64_t t = 0;                  // the time index of this step (N-1 .. 0)
  std::vector<int64_t> tokens;    // the span's tokens chosen at this step
  // When asked for (they cost a softmax): the current prediction -- the argmax
  // of this step's logits, what the answer would be if sampling ended here --
  // and its probability per span position.
  std::vector<int64_t> prediction;
  std::vector<float> confidence;
  bool finished = false;          // t reached 0, or adaptive stopping stopped it
  std::vector<int64_t> answer;    // when finished: the span's argmax tokens (not cut at EOS)
  int64_t frozen = 0;             // when finished: positions it froze (StopRule::freeze)
};

class ContinuousSampler {
 public:
  struct Options {
    double simplex_value = 5.0;  // the model's k and schedule (NoiseSettings)
    Schedule schedule = Schedule::CosineImproved;
    int64_t pad_id = 0;          // fills the padding of shorter rows
    int64_t allowed_vocab = 0;   // > 0: ids at or beyond it are never chosen (padding rows of the vocabulary)
    c10::Device device = c10::kCPU;
  };
  // Reward guidance of one row: its span logits moved by `scale` times the
  // reward gradient, given the row as a batch of one. Guided rows are guided
  // one at a time: the reward model's gradient over a padded batch differs
  // from a row's own in the last bits, which would make a request's text
  // depend on its neighbours.
  using Guidance = std::function<torch::Tensor(const torch::Tensor& logits, const SampleBatch& row,
                                               const SpanIndex& span, double scale)>;

  ContinuousSampler(DiffusionLMImpl& model, Options options, Guidance guidance = {});
  ~ContinuousSampler();

  // Adds a row (it runs from the next step on) and returns its id. Bad specs
  // (span < 1, steps outside 1..kMaxSamplingSteps, guidance without a
  // guidance function) are tess::Error.
  int64_t add(RowSpec spec);
  void remove(int64_t id);  // unknown ids are ignored (the row may have finished)
  size_t size() const { return rows_.size(); }
  bool empty() const { return rows_.empty(); }

  // One denoising step of every row; finished rows leave. `confidence(id)`
  // says which rows want per-position confidences (they cost a softmax).
  std::vector<RowUpdate> step(const std::function<bool(int64_t id)>& confidence = {});

 private:
  struct Row;
  const NoiseScheduler& schedule_for(int64_t steps);
  torch::Tensor guide(const torch::Tensor& logits);  // every guided row's span logits, one row at a time

  DiffusionLMImpl& model_;
  Options options_;
  Guidance guidance_;
  std::vector<std::unique_ptr<Row>> rows_;  // in the order they joined
  std::map<int64_t, NoiseScheduler> schedules_;
  int64_t next_id_ = 0;
};

}  // namespace tess::diffusion
