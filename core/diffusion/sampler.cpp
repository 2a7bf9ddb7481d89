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

namespace {

// Per row, the smallest probability inside the nucleus (the shortest prefix
// by probability whose mass reaches top_p, always including the most likely
// token: a token is in iff the mass ranked strictly before it is < top_p).
// A full sort of every row is what made the sampler slow, so look at windows
// first: a peaked row's nucleus ends among its top 256 tokens; a flat row's
// excluded tail (mass <= 1 - top_p) among its bottom 256. Only rows where
// neither window holds the boundary are sorted.
torch::Tensor nucleus_threshold(const torch::Tensor& probs, double top_p) {
  int64_t vocab = probs.size(-1), k = std::min<int64_t>(vocab, 256);
  auto total = probs.sum(-1, /*keepdim=*/true);
  // First position whose cumulative mass reaches top_p.
  auto first = [&](const torch::Tensor& cum, const torch::Tensor& sorted) {
    auto m = (cum < top_p).sum(-1, /*keepdim=*/true).clamp_max(sorted.size(-1) - 1);
    return sorted.gather(-1, m);
  };
  // k tokens of at most the row's maximum cannot reach top_p when k * max < top_p:
  // skip the top window when no row can be covered by it.
  auto top_covered = torch::zeros({probs.size(0)}, torch::kBool);
  auto tau = torch::zeros({probs.size(0), 1}, probs.options());
  if ((std::get<0>(probs.max(-1)) * static_cast<double>(k) >= top_p).any().item<bool>()) {
    auto [top, top_index] = probs.topk(k, -1, /*largest=*/true, /*sorted=*/true);
    auto top_cum = top.cumsum(-1);
    top_covered = top_cum.select(-1, k - 1) >= top_p;
    tau = first(top_cum, top);
    if (top_covered.all().item<bool>()) return tau;
  }
  // Ascending: a token is out iff the mass from the smallest up to and
  // including it is <= total - top_p; the threshold is the first one that is in.
  auto [bottom, bottom_index] = probs.topk(k, -1, /*largest=*/false, /*sorted=*/true);
  auto bottom_cum = bottom.cumsum(-1);
  auto limit = total - top_p;
  auto bottom_covered = bottom_cum.select(-1, k - 1) > limit.squeeze(-1);
  auto m = (bottom_cum <= limit).sum(-1, /*keepdim=*/true).clamp_max(k - 1);
  auto tau_bottom = bottom.gather(-1, m);
  tau = torch::where(top_covered.unsqueeze(-1), tau, tau_bottom);
  auto covered = top_covered | bottom_covered;
  if (covered.all().item<bool>()) return tau;
  auto [sorted, order] = probs.sort(-1, /*descending=*/true);
  return torch::where(covered.unsqueeze(-1), tau, first(sorted.cumsum(-1), sorted));
}

}  // namespace

torch::Tensor choose_tokens(const torch::Tensor& logits, double top_p, double temperature, util::Rng& rng) {
  if (top_p <= 0) return logits.argmax(-1);
  if (temperature <= 0) throw Error("sampling temperature must be > 0");
  auto probs = torch::softmax(logits.to(torch::kFloat32) / temperature, -1);
  if (top_p < 1) probs = probs * (probs >= nucleus_threshold(probs, top_p)).to(torch::kFloat32);
  // Inverse-CDF draw, one uniform per row: O(V) with vectorised ops, where
  // torch::multinomial draws an exponential variate for every token.
  auto cdf = probs.cumsum(-1);
  int64_t vocab = probs.size(-1);
  auto u = torch::rand({probs.size(0), 1}, rng.generator()) * cdf.narrow(-1, vocab - 1, 1);
  return torch::searchsorted(cdf, u, /*out_int32=*/false, /*right=*/true).clamp_max(vocab - 1).squeeze(-1);
}

torch::Tensor Sampler::choose_tokens(const torch::Tensor& logits, util::Rng& rng) const {
  return diffusion::choose_tokens(logits, options_.top_p, options_.temperature, rng);
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
