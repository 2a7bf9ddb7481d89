#include "core/diffusion/sampler.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include "core/config/config.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::diffusion {

SamplerOptions SamplerOptions::from_config(const config::Config& cfg) {
  SamplerOptions o;
  o.steps = cfg.get_int("eval.steps");
  o.top_p = cfg.get_float("eval.top_p");
  o.temperature = cfg.get_float("eval.temperature");
  o.simplex_value = cfg.get_float("diffusion.simplex_value");
  o.schedule = parse_schedule(cfg.get_string("diffusion.schedule"));
  return o;
}

SampleBatch SampleBatch::from_prompts(const std::vector<std::vector<int64_t>>& prompts, int64_t span_length,
                                      int64_t pad_id) {
  if (prompts.empty()) throw Error("no prompts to sample from");
  if (span_length < 1) throw Error("the span to generate must be at least one token long");
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  int64_t b = static_cast<int64_t>(prompts.size()), l = static_cast<int64_t>(longest) + span_length;
  SampleBatch s;
  s.ids = torch::full({b, l}, pad_id, torch::kInt64);
  s.span_mask = torch::zeros({b, l}, torch::kBool);
  auto key = torch::zeros({b, l}, torch::kBool);
  bool padded = false;
  for (int64_t i = 0; i < b; ++i) {
    const auto& p = prompts[i];
    int64_t n = static_cast<int64_t>(p.size());
    if (n) s.ids[i].narrow(0, 0, n).copy_(torch::tensor(p, torch::kInt64));
    s.span_mask[i].narrow(0, n, span_length).fill_(true);
    key[i].narrow(0, 0, n + span_length).fill_(true);
    padded |= n + span_length < l;
  }
  if (padded) s.key_mask = key;
  return s;
}

Sampler::Sampler(DiffusionLMImpl& model, SamplerOptions options)
    : model_(model), options_(options), scheduler_(options.schedule, options.steps) {
  if (options.temperature <= 0) throw Error("sampling temperature must be > 0");
}

torch::Tensor Sampler::choose_tokens(const torch::Tensor& logits, util::Rng& rng) const {
  if (options_.top_p <= 0) return logits.argmax(-1);
  auto probs = torch::softmax(logits / options_.temperature, -1);
  if (options_.top_p < 1) {
    // Keep the smallest prefix of tokens (by probability) whose mass reaches
    // top_p, always including the most likely one.
    auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    auto before = sorted.cumsum(-1) - sorted;  // mass strictly before each token
    auto keep_sorted = before < options_.top_p;
    auto keep = torch::zeros_like(keep_sorted).scatter(-1, order, keep_sorted);
    probs = probs * keep.to(probs.scalar_type());
  }
  return torch::multinomial(probs, 1, /*replacement=*/false, rng.generator()).squeeze(-1);
}

torch::Tensor Sampler::sample(const SampleBatch& batch, util::Rng& rng, const StepCallback& on_step,
                              const GuidanceHook& guidance) {
  torch::NoGradGuard no_grad;
  auto span = SpanIndex::from_mask(batch.span_mask);
  int64_t vocab = model_.decoder->config().vocab_size, n = scheduler_.timesteps();
  double k = options_.simplex_value;
  auto x = torch::randn({span.rows, vocab}, rng.generator()) * k;  // x_T = k * noise on the span
  torch::Tensor prev, logits;
  RowSource rows = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
  for (int64_t step = 0; step < n; ++step) {
    int64_t t = n - 1 - step;
    DiffusionInputs in{batch.ids, batch.span_mask,
                       torch::full({batch.ids.size(0)}, static_cast<float>(t) / static_cast<float>(n)),
                       batch.key_mask};
    logits = model_.span_logits(in, span, rows, prev).to(torch::kFloat32);
    if (guidance) logits = guidance(t, logits, span);
    prev = logits;  // self-conditioning input of the next step (guided, as in the reference)
    auto tokens = choose_tokens(logits, rng);
    if (on_step) on_step(StepInfo{step, t, logits, tokens, span});
    if (t > 0) {
      auto a = torch::full({span.rows}, scheduler_.abar_prev(t), torch::kFloat32);
      x = noisy_simplex_rows(tokens, a, torch::randn({span.rows, vocab}, rng.generator()), k);
    }
  }
  auto out = batch.ids.clone();
  out.view(-1).index_copy_(0, span.flat, logits.argmax(-1));
  return out;
}

std::vector<std::vector<int64_t>> Sampler::span_outputs(const torch::Tensor& ids, const SampleBatch& batch,
                                                        int64_t eos_id, int64_t pad_id) {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(ids.size(0)));
  auto id = ids.accessor<int64_t, 2>();
  auto mask = batch.span_mask.accessor<bool, 2>();
  for (int64_t b = 0; b < ids.size(0); ++b) {
    for (int64_t j = 0; j < ids.size(1); ++j) {
      if (!mask[b][j]) continue;
      if (id[b][j] == eos_id || id[b][j] == pad_id) break;
      out[b].push_back(id[b][j]);
    }
  }
  return out;
}

}  // namespace tess::diffusion
