#include "core/diffusion/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <cstdint>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
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
  o.stop = StopRule::from_config(cfg);
  o.cache_refresh = cfg.get_int("sample.cache_refresh");
  return o;
}

StopRule StopRule::from_config(const config::Config& cfg) {
  StopRule r{cfg.get_bool("sample.adaptive"), cfg.get_int("sample.stable_steps"), cfg.get_float("sample.margin")};
  r.freeze = cfg.get_bool("sample.freeze");
  return r;
}

SampleBatch SampleBatch::to(c10::Device device) const {
  return {ids.to(device), span_mask.to(device), key_mask.defined() ? key_mask.to(device) : key_mask};
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

[[noreturn]] void throw_not_probabilities() {
  throw Error("token choice: a row of probabilities holds NaN or a value that is not a finite probability "
              "(non-finite logits)");
}

// The smallest probability inside a row's nucleus: the shortest prefix by
// probability whose mass reaches top_p, always including the most likely
// token (a token is in iff the mass ranked strictly before it is < top_p).
// Equivalently the smallest value v of the row with mass(p > v) < top_p.
// Found without sorting by a radix select on the float bits (non-negative
// floats order like their bit patterns): a histogram of mass over the top 12
// bits locates the bucket where the mass from the top reaches top_p, then the
// next 12 and the last 8 bits inside it; the final bucket holds one value.
// Masses are summed in double. O(V) and branch-light; sorting every row (or
// taking top-k windows of it) was most of a denoising step's token choice.
class NucleusSelect {
 public:
  float threshold(const float* p, int64_t vocab, double top_p) {
    const float* src = p;  // level 0 reads the row, later levels the kept candidates
    size_t n = static_cast<size_t>(vocab);
    candidates_.resize(n);
    double above = 0;  // mass of the values above the current bucket
    uint32_t prefix = 0;
    const int shifts[] = {20, 8, 0}, widths[] = {12, 12, 8};
    for (int level = 0; level < 3; ++level) {
      const int shift = shifts[level];
      const uint32_t mask = (1u << widths[level]) - 1;
      mass_.assign(size_t(mask) + 1, 0.0);
      bool zero = false;  // exact zeros: the one value whose bucket can be non-empty with mass 0
      for (size_t i = 0; i < n; ++i) {
        mass_[(bits(src[i]) >> shift) & mask] += src[i];
        zero |= src[i] == 0.0f;
      }
      // From the top: the bucket where the mass reaches top_p (or the lowest
      // non-empty one when rounding leaves the row short of top_p).
      int64_t pick = -1;
      double pick_above = above;
      for (int64_t b = mask; b >= 0; --b) {
        if (mass_[b] == 0 && !(b == 0 && zero)) continue;
        pick = b;
        pick_above = above;
        if (above + mass_[b] >= top_p) break;
        above += mass_[b];
      }
      above = pick_above;
      prefix |= static_cast<uint32_t>(pick) << shift;
      size_t kept = 0;
      for (size_t i = 0; i < n; ++i)
        if (((bits(src[i]) >> shift) & mask) == static_cast<uint32_t>(pick)) candidates_[kept++] = src[i];
      src = candidates_.data();
      n = kept;
    }
    float tau;
    std::memcpy(&tau, &prefix, sizeof tau);
    return tau;
  }

 private:
  static uint32_t bits(float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    if (u >= 0x7f800000u) throw_not_probabilities();  // NaN, inf or negative
    return u;
  }
  std::vector<float> candidates_;
  std::vector<double> mass_;
};

// Inverse-CDF draw of one token from the row restricted to p >= tau (vocabulary
// order, masses summed in double): the first token whose cumulative mass
// exceeds u times the nucleus mass.
int64_t draw_from_nucleus(const float* p, int64_t vocab, float tau, double u) {
  double mass = 0;
  int64_t last_in = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (p[i] >= tau) mass += p[i], last_in = i;
  if (!(mass > 0) || !std::isfinite(mass)) throw_not_probabilities();  // a NaN row (top_p >= 1 has no threshold)
  double target = u * mass, cum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (p[i] < tau) continue;
    cum += p[i];
    if (cum > target) return i;
  }
  return last_in;  // rounding: u * mass at the very top
}

}  // namespace

torch::Tensor choose_tokens(const torch::Tensor& logits, double top_p, double temperature, util::Rng& rng) {
  if (top_p <= 0) return logits.argmax(-1);
  if (temperature <= 0) throw Error("sampling temperature must be > 0");
  auto probs = torch::softmax(logits.to(torch::kFloat32) / temperature, -1).to(torch::kCPU).contiguous();
  const int64_t rows = probs.size(0), vocab = probs.size(-1);
  auto u = torch::rand({rows}, rng.generator());  // one uniform per row
  auto out = torch::empty({rows}, torch::kInt64);
  const float* pp = probs.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  int64_t* op = out.data_ptr<int64_t>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    NucleusSelect select;
    for (int64_t r = begin; r < end; ++r) {
      const float* row = pp + r * vocab;
      float tau = top_p < 1 ? select.threshold(row, vocab, top_p) : -1.0f;
      op[r] = draw_from_nucleus(row, vocab, tau, up[r]);
    }
  });
  return out.to(logits.device());
}

torch::Tensor Sampler::choose_tokens(const torch::Tensor& logits, util::Rng& rng) const {
  return diffusion::choose_tokens(logits, options_.top_p, options_.temperature, rng);
}

std::optional<PromptCache> Sampler::make_cache(const SampleBatch& batch) const {
  if (options_.cache_refresh <= 0) return std::nullopt;
  return PromptCache(batch.span_mask, options_.cache_refresh, model_.layout);
}

void Sampler::count_passes(const std::optional<PromptCache>& cache, int64_t uncached_passes) {
  passes_ += cache ? PassCount{cache->full_passes(), cache->partial_passes()} : PassCount{uncached_passes, 0};
}

torch::Tensor Sampler::step_logits(const SampleBatch& batch, const SpanIndex& span, const torch::Tensor& x,
                                   const torch::Tensor& prev, int64_t t, const GuidanceHook& guidance,
                                   PromptCache* cache) {
  const int64_t n = scheduler_.timesteps();
  RowSource rows = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
  DiffusionInputs in{batch.ids, batch.span_mask,
                     torch::full({batch.ids.size(0)}, static_cast<float>(t) / static_cast<float>(n),
                                 torch::TensorOptions().dtype(torch::kFloat32).device(batch.ids.device())),
                     batch.key_mask};
  auto logits = model_.span_logits(in, span, rows, prev, cache).to(torch::kFloat32);
  return guidance ? guidance(t, logits, span) : logits;
}

void FrozenPositions::update(const torch::Tensor& argmax, const torch::Tensor& last, const torch::Tensor& gap,
                             const StopRule& rule) {
  if (!active()) {
    held = torch::zeros_like(argmax);
    frozen = torch::zeros_like(argmax, torch::kBool);
    token = argmax.clone();
  } else {
    held = torch::where(argmax == last, held + 1, torch::zeros_like(held));
  }
  auto settle = frozen.logical_not() & (held >= rule.stable_steps) & (gap >= rule.margin);
  token = torch::where(settle, argmax, token);
  frozen = frozen | settle;
}

torch::Tensor FrozenPositions::apply(const torch::Tensor& tokens) const {
  return active() ? torch::where(frozen, token, tokens) : tokens;
}

torch::Tensor FrozenPositions::enter_clean(const torch::Tensor& x, double simplex_value) const {
  if (!active()) return x;
  auto clean = noisy_simplex_rows(token, torch::ones({token.size(0)}, x.options()), torch::zeros_like(x), simplex_value);
  return torch::where(frozen.unsqueeze(1), clean, x);
}

torch::Tensor Sampler::renoise(const torch::Tensor& tokens, int64_t t, const torch::Tensor& z) const {
  auto a = torch::full({z.size(0)}, scheduler_.abar_prev(t), z.options());
  return noisy_simplex_rows(tokens, a, z, options_.simplex_value);
}

torch::Tensor Sampler::sample(const SampleBatch& batch, util::Rng& rng, const StepCallback& on_step,
                              const GuidanceHook& guidance) {
  torch::NoGradGuard no_grad;
  auto span = SpanIndex::from_mask(batch.span_mask);
  int64_t vocab = model_.decoder->config().vocab_size, n = scheduler_.timesteps();
  double k = options_.simplex_value;
  auto on = torch::TensorOptions().dtype(torch::kFloat32).device(batch.ids.device());
  std::vector<int64_t> all_rows(static_cast<size_t>(batch.ids.size(0)));
  std::iota(all_rows.begin(), all_rows.end(), 0);
  auto x = gaussian_rows(rng, span.rows, vocab, on.device()) * k;  // x_T = k * noise on the span
  auto cache = make_cache(batch);
  torch::Tensor prev, logits;
  for (int64_t step = 0; step < n; ++step) {
    int64_t t = n - 1 - step;
    if (cache) cache->begin_step(step);
    logits = step_logits(batch, span, x, prev, t, guidance, cache ? &*cache : nullptr);
    prev = logits;  // self-conditioning input of the next step (guided, as in the reference)
    auto tokens = choose_tokens(logits, rng);
    if (on_step) on_step(StepInfo{step, t, logits, tokens, span, all_rows});
    if (t > 0) x = renoise(tokens, t, gaussian_rows(rng, span.rows, vocab, on.device()));
  }
  count_passes(cache, n);
  auto out = batch.ids.clone();
  out.view(-1).index_copy_(0, span.flat, logits.argmax(-1));
  return out;
}

AnswerCheck check_answer(const torch::Tensor& now, const torch::Tensor& before, const torch::Tensor& gap,
                         const StopRule& rule) {
  auto answer_length = [&](const torch::Tensor& row) {
    auto r = row.contiguous();
    const int64_t* p = r.data_ptr<int64_t>();
    for (int64_t j = 0; j < r.numel(); ++j)
      if (p[j] == rule.end_id || p[j] == rule.pad_id) return j + 1;
    return r.numel();
  };
  int64_t m = answer_length(now);
  bool same = before.defined() && answer_length(before) == m && torch::equal(now.narrow(0, 0, m), before.narrow(0, 0, m));
  return {same, gap.narrow(0, 0, m).min().item<float>()};
}

namespace {

// The rows still sampled by sample_rows, each with its own stream: the batch
// (rows in the input's order), its span index, where each row's span rows
// start and how many it has, and per row the consecutive steps its argmax held.
struct ActiveRows {
  SampleBatch batch;
  SpanIndex span;
  std::vector<int64_t> input_row, span_start, span_rows, stable;

  explicit ActiveRows(const SampleBatch& b)
      : batch(b), span(SpanIndex::from_mask(b.span_mask)), input_row(static_cast<size_t>(b.ids.size(0))),
        stable(input_row.size(), 0) {
    std::iota(input_row.begin(), input_row.end(), 0);
    count_span_rows();
  }
  void count_span_rows() {
    auto c = batch.span_mask.sum(1).cpu();
    span_rows.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
    span_start.assign(span_rows.size(), 0);
    std::partial_sum(span_rows.begin(), span_rows.end() - 1, span_start.begin() + 1);
  }
  // Row i's span rows in [N, ...] span tensors.
  torch::Tensor of(const torch::Tensor& t, size_t i) const { return t.narrow(0, span_start[i], span_rows[i]); }
  // Keeps the rows `keep` (ascending); span tensors in `span_tensors` and the prompt cache follow.
  void keep_only(const std::vector<size_t>& keep, std::vector<torch::Tensor*> span_tensors, PromptCache* cache) {
    std::vector<int64_t> rows_kept, span_kept;
    for (size_t i : keep) {
      rows_kept.push_back(static_cast<int64_t>(i));
      for (int64_t r = 0; r < span_rows[i]; ++r) span_kept.push_back(span_start[i] + r);
    }
    auto device = batch.ids.device();
    auto rk = torch::tensor(rows_kept, torch::kInt64).to(device), sk = torch::tensor(span_kept, torch::kInt64).to(device);
    for (auto* t : span_tensors)
      if (t->defined()) *t = t->index_select(0, sk);
    if (cache) cache->keep_rows(rk);
    batch = {batch.ids.index_select(0, rk), batch.span_mask.index_select(0, rk),
             batch.key_mask.defined() ? batch.key_mask.index_select(0, rk) : batch.key_mask};
    span = SpanIndex::from_mask(batch.span_mask);
    std::vector<int64_t> input, stable_kept;
    for (size_t i : keep) {
      input.push_back(input_row[i]);
      stable_kept.push_back(stable[i]);
    }
    input_row = std::move(input);
    stable = std::move(stable_kept);
    count_span_rows();
  }
};

}  // namespace

SampleResult Sampler::sample_rows(const SampleBatch& batch, std::vector<util::Rng>& streams,
                                  const StepCallback& on_step, const GuidanceFactory& guidance_for) {
  torch::NoGradGuard no_grad;
  const auto rows = static_cast<size_t>(batch.ids.size(0));
  if (streams.size() != rows)
    throw Error(fmt::format("sampler: {} random streams for {} rows (one per row)", streams.size(), rows));
  const int64_t vocab = model_.decoder->config().vocab_size, n = scheduler_.timesteps();
  const double k = options_.simplex_value;
  const auto& stop = options_.stop;
  auto on = torch::TensorOptions().dtype(torch::kFloat32).device(batch.ids.device());
  ActiveRows active(batch);
  SampleResult out{batch.ids.clone(), std::vector<int64_t>(rows, n), std::vector<int64_t>(rows, 0)};
  // Per row, from its own stream, in row order.
  auto per_row = [&](const std::function<torch::Tensor(size_t)>& f) {
    std::vector<torch::Tensor> parts;
    for (size_t i = 0; i < active.input_row.size(); ++i) parts.push_back(f(i));
    return torch::cat(parts);
  };
  auto noise = [&](size_t i) {
    return gaussian_rows(streams[static_cast<size_t>(active.input_row[i])], active.span_rows[i], vocab, on.device());
  };
  FrozenPositions frozen;  // over the span rows of the rows still sampled
  auto finish = [&](size_t i, torch::Tensor answer, int64_t steps) {
    auto r = active.input_row[i];
    if (frozen.active()) {
      auto f = active.of(frozen.frozen, i);
      answer = torch::where(f, active.of(frozen.token, i), answer);
      out.frozen[static_cast<size_t>(r)] = f.sum().item<int64_t>();
    }
    out.ids[r].index_put_({active.batch.span_mask[static_cast<int64_t>(i)]}, answer);
    out.steps[static_cast<size_t>(r)] = steps;
  };
  auto x = per_row(noise) * k;  // x_T = k * noise on the span
  auto cache = make_cache(batch);
  int64_t passes = 0;
  torch::Tensor prev, logits, last_argmax;
  GuidanceHook guidance = guidance_for ? guidance_for(active.batch) : GuidanceHook{};
  for (int64_t step = 0; step < n; ++step) {
    int64_t t = n - 1 - step;
    if (cache) cache->begin_step(step);
    logits = step_logits(active.batch, active.span, x, prev, t, guidance, cache ? &*cache : nullptr);
    ++passes;
    prev = logits;
    auto tokens = per_row([&](size_t i) {
      return choose_tokens(active.of(logits, i), streams[static_cast<size_t>(active.input_row[i])]);
    });
    tokens = frozen.apply(tokens);
    if (on_step) on_step(StepInfo{step, t, logits, tokens, active.span, active.input_row});
    if (t == 0) break;
    torch::Tensor argmax, gap_device;
    if (stop.enabled || stop.freeze) {
      argmax = logits.argmax(-1);
      auto top2 = std::get<0>(torch::softmax(logits, -1).topk(2, -1));
      gap_device = top2.select(1, 0) - top2.select(1, 1);
    }
    if (stop.freeze) {
      frozen.update(argmax, last_argmax, gap_device, stop);
      tokens = frozen.apply(tokens);
      if (!stop.enabled) last_argmax = argmax;
    }
    if (stop.enabled) {
      auto gap = gap_device.cpu();
      auto now = argmax.cpu(), before = last_argmax.defined() ? last_argmax.cpu() : torch::Tensor();
      std::vector<size_t> keep;
      for (size_t i = 0; i < active.input_row.size(); ++i) {
        auto check = check_answer(active.of(now, i), before.defined() ? active.of(before, i) : before,
                                  active.of(gap, i), stop);
        active.stable[i] = check.same ? active.stable[i] + 1 : 0;
        if (active.stable[i] >= stop.stable_steps && check.margin >= stop.margin)
          finish(i, active.of(argmax, i), step + 1);
        else
          keep.push_back(i);
      }
      last_argmax = argmax;
      if (keep.empty()) {
        count_passes(cache, passes);
        return out;
      }
      if (keep.size() < active.input_row.size()) {
        active.keep_only(keep, {&prev, &last_argmax, &tokens, &frozen.held, &frozen.frozen, &frozen.token}, cache ? &*cache : nullptr);
        if (guidance_for) guidance = guidance_for(active.batch);
      }
    }
    x = renoise(tokens, t, per_row(noise));
    x = frozen.enter_clean(x, k);
  }
  auto answer = logits.argmax(-1);
  for (size_t i = 0; i < active.input_row.size(); ++i) finish(i, active.of(answer, i), n);
  count_passes(cache, passes);
  return out;
}

std::vector<std::vector<int64_t>> Sampler::span_outputs(const torch::Tensor& ids, const SampleBatch& batch,
                                                        int64_t eos_id, int64_t pad_id) {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(ids.size(0)));
  auto host_ids = ids.cpu(), host_mask = batch.span_mask.cpu();
  auto id = host_ids.accessor<int64_t, 2>();
  auto mask = host_mask.accessor<bool, 2>();
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
