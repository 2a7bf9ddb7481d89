#include "core/diffusion/continuous_sampler.h"

#include <algorithm>
#include <limits>

#include <torch/torch.h>

#include <fmt/format.h>

#include "core/diffusion/diffusion_loss.h"
#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::diffusion {

struct ContinuousSampler::Row {
  int64_t id;
  RowSpec spec;
  util::Rng rng;
  const NoiseScheduler* schedule;
  int64_t done = 0;          // steps run
  torch::Tensor x;           // the noisy simplex rows of its span [span, V]
  torch::Tensor prev;        // its last step's logits (self-conditioning); undefined before the first
  torch::Tensor last_argmax; // adaptive stopping and freezing: the previous step's argmax
  int64_t stable = 0;
  FrozenPositions frozen;  // over its span positions
  Row(int64_t i, RowSpec s, const NoiseScheduler* n)
      : id(i), spec(std::move(s)), rng(spec.seed, spec.stream), schedule(n) {}
  int64_t length() const { return static_cast<int64_t>(spec.prompt.size()) + spec.span_length; }
};

ContinuousSampler::ContinuousSampler(DiffusionLMImpl& model, Options options, Guidance guidance)
    : model_(model), options_(options), guidance_(std::move(guidance)) {}

ContinuousSampler::~ContinuousSampler() = default;

const NoiseScheduler& ContinuousSampler::schedule_for(int64_t steps) {
  auto it = schedules_.find(steps);
  if (it == schedules_.end()) it = schedules_.emplace(steps, NoiseScheduler(options_.schedule, steps)).first;
  return it->second;
}

int64_t ContinuousSampler::add(RowSpec spec) {
  if (spec.prompt.empty()) throw Error("sampler row: the prompt is empty (at least one context token, e.g. BOS)");
  if (spec.span_length < 1) throw Error(fmt::format("sampler row: span length {} (expected >= 1)", spec.span_length));
  if (spec.steps < 1 || spec.steps > kMaxSamplingSteps)
    throw Error(fmt::format("sampler row: {} steps (expected 1..{})", spec.steps, kMaxSamplingSteps));
  if (spec.guidance_scale != 0 && !guidance_)
    throw Error("sampler row: a guidance scale without a reward model to guide with");
  const int64_t vocab = model_.decoder->config().vocab_size;
  const auto* schedule = &schedule_for(spec.steps);
  auto row = std::make_unique<Row>(next_id_++, std::move(spec), schedule);
  row->x = gaussian_rows(row->rng, row->spec.span_length, vocab, options_.device) * options_.simplex_value;
  rows_.push_back(std::move(row));
  return rows_.back()->id;
}

void ContinuousSampler::remove(int64_t id) {
  rows_.erase(std::remove_if(rows_.begin(), rows_.end(), [id](const auto& r) { return r->id == id; }), rows_.end());
}

torch::Tensor ContinuousSampler::guide(const torch::Tensor& logits) {
  auto out = logits.clone();
  int64_t offset = 0;
  for (const auto& r : rows_) {
    const int64_t m = r->spec.span_length, l = r->length();
    if (r->spec.guidance_scale != 0) {
      std::vector<int64_t> ids(static_cast<size_t>(l), options_.pad_id);
      std::copy(r->spec.prompt.begin(), r->spec.prompt.end(), ids.begin());
      auto span = torch::zeros({1, l}, torch::kBool);
      span.narrow(1, l - m, m).fill_(true);
      SampleBatch row{torch::tensor(ids, torch::kInt64).view({1, l}).to(options_.device), span.to(options_.device),
                      torch::Tensor()};
      out.narrow(0, offset, m)
          .copy_(guidance_(logits.narrow(0, offset, m), row, SpanIndex::from_mask(row.span_mask), r->spec.guidance_scale));
    }
    offset += m;
  }
  return out;
}

std::vector<RowUpdate> ContinuousSampler::step(const std::function<bool(int64_t id)>& confidence) {
  torch::NoGradGuard no_grad;
  std::vector<RowUpdate> out;
  if (rows_.empty()) return out;
  const auto b = static_cast<int64_t>(rows_.size());
  const int64_t vocab = model_.decoder->config().vocab_size;
  int64_t l = 0;
  for (const auto& r : rows_) l = std::max(l, r->length());

  // The batch: prompts right-padded, spans after them, each row at its own time.
  std::vector<int64_t> ids(static_cast<size_t>(b * l), options_.pad_id);
  std::vector<uint8_t> span(static_cast<size_t>(b * l), 0), keys(static_cast<size_t>(b * l), 0);
  std::vector<float> time(static_cast<size_t>(b));
  bool padded = false, guided = false, want_probs = false;
  std::vector<torch::Tensor> xs, prevs;
  bool any_prev = false;
  for (int64_t i = 0; i < b; ++i) {
    const auto& r = *rows_[static_cast<size_t>(i)];
    const int64_t n = r.spec.steps, t = n - 1 - r.done, p = static_cast<int64_t>(r.spec.prompt.size());
    std::copy(r.spec.prompt.begin(), r.spec.prompt.end(), ids.begin() + i * l);
    std::fill(span.begin() + i * l + p, span.begin() + i * l + r.length(), uint8_t{1});
    std::fill(keys.begin() + i * l, keys.begin() + i * l + r.length(), uint8_t{1});
    padded = padded || r.length() < l;
    time[static_cast<size_t>(i)] = static_cast<float>(t) / static_cast<float>(n);  // as Sampler::step_logits
    guided = guided || r.spec.guidance_scale != 0;
    want_probs = want_probs || r.spec.stop.enabled || r.spec.stop.freeze || (confidence && confidence(r.id));
    xs.push_back(r.x);
    any_prev = any_prev || r.prev.defined();
  }
  if (any_prev)  // rows at their first step: zeros, i.e. uniform probabilities
    for (const auto& r : rows_)
      prevs.push_back(r->prev.defined() ? r->prev
                                        : torch::zeros({r->spec.span_length, vocab}, r->x.options()));
  auto device = options_.device;
  auto as_bool = [&](const std::vector<uint8_t>& v) {
    return torch::tensor(v, torch::kUInt8).to(torch::kBool).view({b, l}).to(device);
  };
  SampleBatch batch{torch::tensor(ids, torch::kInt64).view({b, l}).to(device), as_bool(span),
                    padded ? as_bool(keys) : torch::Tensor()};
  auto index = SpanIndex::from_mask(batch.span_mask);
  auto x = xs.size() == 1 ? xs[0] : torch::cat(xs);
  auto prev = !any_prev ? torch::Tensor() : prevs.size() == 1 ? prevs[0] : torch::cat(prevs);
  RowSource source = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
  DiffusionInputs in{batch.ids, batch.span_mask, torch::tensor(time, torch::kFloat32).to(device), batch.key_mask};
  auto logits = model_.span_logits(in, index, source, prev).to(torch::kFloat32);
  if (guided) logits = guide(logits);
  if (options_.allowed_vocab > 0 && options_.allowed_vocab < vocab) {
    logits = logits.clone();
    logits.narrow(1, options_.allowed_vocab, vocab - options_.allowed_vocab)
        .fill_(-std::numeric_limits<float>::infinity());
  }
  torch::Tensor top1, gap_device, gap;
  if (want_probs) {
    auto top2 = std::get<0>(torch::softmax(logits, -1).topk(2, -1));
    top1 = top2.select(1, 0).cpu();
    gap_device = top2.select(1, 0) - top2.select(1, 1);
    gap = gap_device.cpu();
  }

  auto host = [](const torch::Tensor& t) {
    auto c = t.to(torch::kCPU, torch::kInt64).contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  };
  int64_t offset = 0;
  std::vector<int64_t> finished;
  for (auto& rp : rows_) {
    auto& r = *rp;
    const int64_t m = r.spec.span_length, n = r.spec.steps, t = n - 1 - r.done;
    auto row_logits = logits.narrow(0, offset, m);
    auto tokens = choose_tokens(row_logits, r.spec.top_p, r.spec.temperature, r.rng);
    tokens = r.frozen.apply(tokens);
    RowUpdate u;
    u.id = r.id;
    u.step = ++r.done;
    u.steps = n;
    u.t = t;
    u.tokens = host(tokens);
    if (top1.defined() && confidence && confidence(r.id)) {
      auto c = top1.narrow(0, offset, m);
      u.confidence.assign(c.data_ptr<float>(), c.data_ptr<float>() + m);
      u.prediction = host(row_logits.argmax(-1));
    }
    // As Sampler::sample_rows: frozen positions keep their token; freezing
    // and the stop check come after the choice, before re-noising.
    const auto& stop = r.spec.stop;
    auto finish = [&](torch::Tensor answer) {
      if (r.frozen.active()) u.frozen = r.frozen.frozen.sum().item<int64_t>();
      answer = r.frozen.apply(answer);
      u.finished = true;
      u.answer = host(answer);
    };
    if (t == 0) {
      finish(row_logits.argmax(-1));
    } else if (stop.enabled || stop.freeze) {
      auto argmax = row_logits.argmax(-1);
      if (stop.freeze) {
        r.frozen.update(argmax, r.last_argmax, gap_device.narrow(0, offset, m), stop);
        tokens = r.frozen.apply(tokens);
      }
      if (stop.enabled) {
        auto check = check_answer(argmax.cpu(), r.last_argmax.defined() ? r.last_argmax.cpu() : torch::Tensor(),
                                  gap.narrow(0, offset, m), stop);
        r.stable = check.same ? r.stable + 1 : 0;
        if (r.stable >= stop.stable_steps && check.margin >= stop.margin) finish(argmax);
      }
      r.last_argmax = argmax;
    }
    if (u.finished) {
      finished.push_back(r.id);
    } else {
      auto z = gaussian_rows(r.rng, m, vocab, device);
      r.x = noisy_simplex_rows(tokens, torch::full({m}, r.schedule->abar_prev(t), z.options()), z,
                               options_.simplex_value);
      r.x = r.frozen.enter_clean(r.x, options_.simplex_value);
      r.prev = row_logits;
    }
    offset += m;
    out.push_back(std::move(u));
  }
  for (auto id : finished) remove(id);
  return out;
}

}  // namespace tess::diffusion
