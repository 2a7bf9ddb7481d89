#include "train/train_step.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <limits>

#include <spdlog/spdlog.h>

#include "core/dist/dist.h"
#include "core/util/autocast.h"
#include "core/util/host_sync.h"
#include "train/gradient_reducer.h"
#include "train/weight_update.h"

namespace tess::train {
namespace {

class Stopwatch {
 public:
  double lap() {
    auto now = std::chrono::steady_clock::now();
    double s = std::chrono::duration<double>(now - t_).count();
    t_ = now;
    return s;
  }

 private:
  std::chrono::steady_clock::time_point t_ = std::chrono::steady_clock::now();
};

}  // namespace

TrainStep::TrainStep(const TrainOptions& options, Stage& stage, WeightUpdate& update, dist::Dist& dist,
                     c10::Device device, const std::vector<NamedParameter>& params)
    : options_(options), stage_(stage), update_(update), dist_(dist), device_(device) {
  bool overlap = options_.overlap;
  if (overlap && options_.master_weights() && dist_.world_size() > 1) {
    spdlog::info("dist.overlap: gradients are all-reduced after backward with train.precision bf16_master");
    overlap = false;
  }
  std::vector<at::Tensor> leaves;
  for (const auto& p : params) leaves.push_back(p.tensor);
  reducer_ = std::make_unique<GradientReducer>(std::move(leaves),
                                               static_cast<int64_t>(options_.bucket_mb * 1024 * 1024), overlap, dist_);
}

TrainStep::~TrainStep() = default;

MicroBatch TrainStep::on_device(MicroBatch mb) const {
  if (device_.is_cpu()) return mb;
  mb.ids = mb.ids.to(device_);
  mb.span_mask = mb.span_mask.to(device_);
  if (mb.span_positions.defined()) mb.span_positions = mb.span_positions.to(device_);
  return mb;
}

StepResult TrainStep::compute(bool poison, bool request_stop) {
  Stopwatch clock;
  phases_ = {};
  std::vector<MicroBatch> micro;
  int64_t local_tokens = 0, local_positions = 0;
  for (int64_t i = 0; i < options_.grad_accum; ++i) {
    micro.push_back(on_device(stage_.next_batch()));
    local_tokens += micro.back().tokens;
    local_positions += micro.back().ids.numel();
  }
  phases_.data = clock.lap();
  // Summed over ranks on the device and read with the loss at the end: the
  // loss scale below is a device scalar, so nothing here waits for the device.
  std::vector<at::Tensor> counts{
      torch::tensor({static_cast<double>(local_tokens), static_cast<double>(local_positions), request_stop ? 1.0 : 0.0},
                    torch::kFloat64)
          .to(device_)};
  dist_.all_reduce_sum(counts, "token and position counts");
  auto inverse_tokens = counts[0][0].clamp_min(1.0).reciprocal();
  phases_.reduce = clock.lap();
  at::Tensor loss_sum;  // fp64, summed in micro-batch order
  StepResult r;
  for (size_t i = 0; i < micro.size(); ++i) {
    LossTerms terms;
    {
      util::AutocastScope amp(options_.autocast(), device_.type());
      terms = stage_.loss(micro[i]);
    }
    phases_.forward += clock.lap() - terms.noise_s - terms.self_condition_s;
    phases_.noise += terms.noise_s;
    phases_.self_condition += terms.self_condition_s;
    r.local_sequences += micro[i].ids.size(0);
    r.seq_len = micro[i].ids.size(1);
    r.local_span_rows += terms.span_rows;
    r.local_self_conditioned += terms.self_conditioned ? 1 : 0;
    // global_tokens: divide by the step's global count (= one big batch); micro_batch:
    // each micro-batch's own mean, averaged over accumulation and ranks (the reference).
    auto scaled = options_.normalization == LossNormalization::GlobalTokens
                      ? terms.sum * inverse_tokens.to(terms.sum.scalar_type())
                      : terms.sum * (1.0 / (std::max<double>(static_cast<double>(terms.tokens), 1.0) *
                                            static_cast<double>(options_.grad_accum) *
                                            static_cast<double>(dist_.world_size())));
    if (i + 1 == micro.size()) reducer_->arm();  // the step's last backward: reduce buckets as they fill
    scaled.backward();
    auto sum = terms.sum.detach().to(torch::kFloat64);
    loss_sum = loss_sum.defined() ? loss_sum + sum : sum;
    phases_.backward += clock.lap();
  }
  std::vector<at::Tensor> grads;
  for (auto& p : update_.gradient_params()) grads.push_back(p.tensor.grad());
  reducer_->reduce(grads);
  std::vector<at::Tensor> total{loss_sum.reshape({1})};
  dist_.all_reduce_sum(total, "loss sum");
  // The step's one wait for the device: the loss, the counts and the
  // per-tensor gradient norms, read together. Every rank reads the same
  // values (summed loss, reduced gradients), so every rank reaches the same
  // non-finite verdict without a collective of its own.
  auto host = util::read_to_host(torch::cat({total[0], counts[0], gradient_norms()}));
  double total_loss = poison ? std::numeric_limits<double>::quiet_NaN() : host[0];
  double global_tokens = host[1];
  double sq = 0;
  for (size_t i = 4; i < host.size(); ++i) sq += host[i] * host[i];
  r.grad_norm = std::sqrt(sq);
  r.finite = std::isfinite(total_loss) && std::isfinite(r.grad_norm);
  r.loss = total_loss / std::max(global_tokens, 1.0);
  r.tokens = static_cast<int64_t>(global_tokens);
  r.positions = static_cast<int64_t>(host[2]);
  r.stop_requested = host[3] > 0;
  phases_.reduce += clock.lap();
  return r;
}

// Per-tensor L2 norms in one fused reduction, each in its gradient's own
// dtype (ATen's cascade summation, no copy of the gradient), as fp64 [n]; the
// host combines them in double in parameter order.
at::Tensor TrainStep::gradient_norms() {
  std::vector<at::Tensor> grads;
  for (auto& p : update_.gradient_params())
    if (p.tensor.grad().defined()) grads.push_back(p.tensor.grad());
  if (grads.empty()) return torch::zeros({0}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  std::vector<at::Tensor> norms;
  for (auto& n : at::_foreach_norm(grads, 2)) norms.push_back(n.to(torch::kFloat64));
  return torch::stack(norms);
}

void TrainStep::apply(const StepResult& r, double lr, const std::function<void()>& before_update) {
  Stopwatch clock;
  if (options_.grad_clip > 0 && r.grad_norm > options_.grad_clip) {
    double factor = options_.grad_clip / (r.grad_norm + 1e-6);
    torch::NoGradGuard g;
    for (auto& p : update_.gradient_params())
      if (p.tensor.grad().defined()) p.tensor.mutable_grad().mul_(factor);
  }
  if (before_update) before_update();
  update_.step(lr);
  update_.zero_grad();
  phases_.update = clock.lap();
}

void TrainStep::discard() { update_.zero_grad(); }

std::pair<double, int64_t> TrainStep::evaluate(const std::vector<MicroBatch>& batches) {
  torch::NoGradGuard no_grad;
  util::AutocastScope amp(options_.autocast(), device_.type());
  stage_.module().eval();
  double sum = 0;
  int64_t tokens = 0;
  for (const auto& mb : batches) {
    auto t = stage_.loss(on_device(mb));
    sum += t.sum.item<double>();
    tokens += t.tokens;
  }
  stage_.module().train();
  return {sum, tokens};
}

}  // namespace tess::train
