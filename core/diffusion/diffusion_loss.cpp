#include "core/diffusion/diffusion_loss.h"

#include <chrono>
#include <mutex>

#include <torch/torch.h>

#include "core/config/config.h"
#include "core/util/rng.h"

namespace tess::diffusion {

DiffusionLossOptions DiffusionLossOptions::from_config(const config::Config& cfg) {
  DiffusionLossOptions o;
  o.simplex_value = cfg.get_float("diffusion.simplex_value");
  o.self_condition_prob = cfg.get_float("diffusion.self_condition_prob");
  return o;
}

torch::Tensor noisy_simplex_rows(const torch::Tensor& ids, const torch::Tensor& abar, const torch::Tensor& z, double k) {
  auto a = abar.to(torch::kFloat32).unsqueeze(1);
  auto sqrt_a = a.sqrt();
  auto x = z.to(torch::kFloat32) * ((1.0 - a).sqrt() * k) - sqrt_a * k;
  return x.scatter_add(1, ids.unsqueeze(1), sqrt_a * (2.0 * k));
}

torch::Tensor gaussian_rows(util::Rng& rng, int64_t rows, int64_t vocab, c10::Device device) {
  if (device.is_cpu()) {
    auto z = torch::empty({rows, vocab}, torch::kFloat32);
    rng.fill_standard_normal(z.data_ptr<float>(), z.numel());
    return z;
  }
  // A private generator of the device's type, seeded from one draw of the stream.
  auto gen = at::globalContext().defaultGenerator(device).clone();
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(rng.next_u64());
  }
  return at::randn({rows, vocab}, gen, torch::TensorOptions().dtype(torch::kFloat32).device(device));
}

std::pair<torch::Tensor, int64_t> span_cross_entropy(const torch::Tensor& span_logits, const torch::Tensor& labels,
                                                     const SpanIndex& span, bool shift_labels) {
  auto counted = predicted_weights(span.pos, shift_labels);
  // fp32 at least (fp64 stays fp64, for gradient checks).
  auto logits = span_logits.scalar_type() == torch::kFloat64 ? span_logits : span_logits.to(torch::kFloat32);
  auto ce = torch::nn::functional::cross_entropy(
      logits, labels,
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return {(ce * counted.to(ce.scalar_type())).sum(), counted.sum().item<int64_t>()};
}

namespace {

// abar of each span row at its sequence's (possibly shifted) timestep.
torch::Tensor row_abar(const NoiseScheduler& s, const torch::Tensor& t, const SpanIndex& span) {
  auto table = torch::tensor(s.abar(), torch::kFloat64).to(t.device());
  return table.index_select(0, t.index_select(0, span.batch)).to(torch::kFloat32);
}

torch::Tensor scaled_time(const torch::Tensor& t, int64_t T) {
  return t.to(torch::kFloat32) / static_cast<float>(T);
}

}  // namespace

DiffusionLossResult DiffusionLoss::operator()(DiffusionLMImpl& model, const torch::Tensor& ids,
                                              const torch::Tensor& span_mask, DiffusionStreams streams) const {
  auto span = SpanIndex::from_mask(span_mask);
  return (*this)(model, ids, span_mask, span, model.predicted(span.pos).sum().item<int64_t>(), streams);
}

DiffusionLossResult DiffusionLoss::operator()(DiffusionLMImpl& model, const torch::Tensor& ids,
                                              const torch::Tensor& span_mask, const SpanIndex& span, int64_t tokens,
                                              DiffusionStreams streams) const {
  int64_t vocab = model.decoder->config().vocab_size;
  int64_t T = scheduler_.timesteps();
  double k = options_.simplex_value;
  auto labels = ids.reshape(-1).index_select(0, span.flat);

  DiffusionLossResult out;
  out.timesteps = scheduler_.sample_timesteps(ids.size(0), streams.noise).to(ids.device());
  // The noise z of the span rows is drawn chunk by chunk as the model
  // consumes it; replaying the stream from this state gives the same z (on
  // a GPU too: each chunk's device generator is seeded from the stream).
  auto noise_state = streams.noise.state();
  auto rows_at = [&](const torch::Tensor& t) -> RowSource {
    auto abar = row_abar(scheduler_, t, span);
    return [&, abar](int64_t start, int64_t count) {
      auto t0 = std::chrono::steady_clock::now();
      auto z = gaussian_rows(streams.noise, count, vocab, labels.device());
      auto x = noisy_simplex_rows(labels.narrow(0, start, count), abar.narrow(0, start, count), z, k);
      out.noise_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return x;
    };
  };

  DiffusionInputs in{ids, span_mask, scaled_time(out.timesteps, T), {}};
  torch::Tensor prev_states;  // [N, H]: span_loss makes their logits chunk by chunk
  out.self_conditioned = streams.self_condition.bernoulli(options_.self_condition_prob);
  if (out.self_conditioned) {
    auto t0 = std::chrono::steady_clock::now();
    double noise_before = out.noise_s;
    torch::NoGradGuard no_grad;
    auto t_prev = (out.timesteps + 1).clamp_max(T - 1);
    DiffusionInputs first{ids, span_mask, scaled_time(t_prev, T), {}};
    prev_states = model.predictor_states(first, span, rows_at(t_prev)).detach();
    streams.noise.set_state(noise_state);  // the real pass sees the same z
    out.self_condition_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() -
                           (out.noise_s - noise_before);
  }
  out.loss_sum = model.span_loss(in, span, rows_at(out.timesteps), labels, prev_states);
  out.tokens = tokens;
  out.span_rows = span.rows;
  return out;
}

DiffusionLossResult DiffusionLoss::replay(DiffusionLMImpl& model, const torch::Tensor& ids,
                                          const torch::Tensor& span_mask, const torch::Tensor& timesteps,
                                          const torch::Tensor& noise, const torch::Tensor& prev_logits,
                                          torch::Tensor* full_logits) const {
  auto span = SpanIndex::from_mask(span_mask);
  int64_t b = ids.size(0), l = ids.size(1), vocab = model.decoder->config().vocab_size;
  auto labels = ids.reshape(-1).index_select(0, span.flat);
  auto abar = row_abar(scheduler_, timesteps, span);
  auto z = noise.reshape({b * l, vocab}).index_select(0, span.flat);
  double k = options_.simplex_value;
  RowSource rows = [&](int64_t start, int64_t count) {
    return noisy_simplex_rows(labels.narrow(0, start, count), abar.narrow(0, start, count), z.narrow(0, start, count), k);
  };
  torch::Tensor prev;
  if (prev_logits.defined()) prev = prev_logits.reshape({b * l, vocab}).index_select(0, span.flat);
  DiffusionInputs in{ids, span_mask, scaled_time(timesteps, scheduler_.timesteps()), {}};
  auto full = model.full_logits(in, span, rows, prev);
  auto logits = full.reshape({b * l, vocab}).index_select(0, span.flat);
  DiffusionLossResult out;
  out.timesteps = timesteps;
  out.self_conditioned = prev.defined();
  std::tie(out.loss_sum, out.tokens) = span_cross_entropy(logits, labels, span, model.layout.shift_labels);
  if (full_logits) *full_logits = full;
  return out;
}

}  // namespace tess::diffusion
