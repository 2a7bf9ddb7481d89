#include "core/model/lm_head_loss.h"

#include <torch/torch.h>

#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <fmt/format.h>

#include "core/util/error.h"
#include "core/util/host_sync.h"

namespace tess::model {
namespace {

struct Wanted {
  bool hidden = false, weight = false;
  bool any() const { return hidden || weight; }
};

struct LossAndGrads {
  torch::Tensor loss;         // scalar, math dtype
  torch::Tensor grad_hidden;  // [N, H], compute dtype (when wanted)
  torch::Tensor grad_weight;  // [V, H], math dtype (when wanted)
};

// The chunk loop. `compute` is the matmuls' dtype; the softmax, the loss and
// the weight gradient's accumulation use `math` (fp32, or fp64 for fp64).
LossAndGrads fused_loss(const torch::Tensor& hidden_in, const torch::Tensor& weight_in, const torch::Tensor& labels,
                        const torch::Tensor& row_weight, int64_t chunk_rows, torch::ScalarType compute, Wanted want) {
  const auto math = compute == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto hidden = hidden_in.to(compute).contiguous();
  auto weight = weight_in.to(compute).contiguous();
  auto w_rows = row_weight.to(math).contiguous();
  const int64_t n = hidden.size(0), v = weight.size(0), h = weight.size(1);
  const int64_t chunk = std::max<int64_t>(1, std::min(chunk_rows, n));

  LossAndGrads out;
  out.loss = torch::zeros({}, hidden.options().dtype(math));
  if (want.hidden) out.grad_hidden = torch::empty({n, h}, hidden.options());
  if (want.weight) out.grad_weight = torch::zeros({v, h}, weight.options().dtype(math));
  if (n == 0) return out;

  // One buffer for every chunk's logits (then probabilities, then gradient).
  auto buffer = torch::empty({chunk, v}, hidden.options().dtype(math));
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t rows = std::min(chunk, n - start);
    auto x = hidden.narrow(0, start, rows);
    auto label = labels.narrow(0, start, rows).unsqueeze(1);
    auto w = w_rows.narrow(0, start, rows).unsqueeze(1);
    auto z = buffer.narrow(0, 0, rows);
    if (compute == math) at::mm_out(z, x, weight.t());
    else z.copy_(torch::mm(x, weight.t()));

    auto target = z.gather(1, label);
    auto peak = z.amax(1, /*keepdim=*/true);
    z.sub_(peak).exp_();
    auto total = z.sum(1, /*keepdim=*/true);
    out.loss.add_(((peak + total.log() - target) * w).sum());
    if (!want.any()) continue;

    // d/dlogits of w * CE = w * (softmax - onehot), in place.
    z.mul_(w / total).scatter_add_(1, label, -w);
    auto g = compute == math ? z : z.to(compute);
    if (want.hidden) {
      auto rows_grad = out.grad_hidden.narrow(0, start, rows);
      at::mm_out(rows_grad, g, weight);
    }
    if (want.weight) {
      if (compute == math) out.grad_weight.addmm_(g.t(), x);
      else out.grad_weight.add_(torch::mm(g.t(), x));
    }
  }
  return out;
}

struct FusedLmHeadLoss : public torch::autograd::Function<FusedLmHeadLoss> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor hidden, torch::Tensor weight,
                               torch::Tensor labels, torch::Tensor row_weight, int64_t chunk_rows, int64_t compute,
                               bool want_hidden, bool want_weight) {
    // The dtypes are decided by the caller (autocast included): no autocast in here.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto r = fused_loss(hidden, weight, labels, row_weight, chunk_rows, static_cast<torch::ScalarType>(compute),
                        {want_hidden, want_weight});
    ctx->saved_data["hidden_dtype"] = static_cast<int64_t>(hidden.scalar_type());
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    // Gradients computed here are not inputs or outputs: plain saved data.
    ctx->saved_data["grad_hidden"] = r.grad_hidden;
    ctx->saved_data["grad_weight"] = r.grad_weight;
    return r.loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto scale = grads[0];
    auto scaled = [&](const char* key, const char* dtype_key) -> torch::Tensor {
      auto g = ctx->saved_data[key].toTensor();
      if (!g.defined()) return {};
      auto dtype = static_cast<torch::ScalarType>(ctx->saved_data[dtype_key].toInt());
      return (g.to(scale.scalar_type()) * scale).to(dtype);
    };
    auto grad_hidden = scaled("grad_hidden", "hidden_dtype");
    auto grad_weight = scaled("grad_weight", "weight_dtype");
    ctx->saved_data.clear();  // free the [V, H] gradient as soon as autograd has it
    return {grad_hidden, grad_weight, {}, {}, {}, {}, {}, {}};
  }
};

void check_inputs(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& labels,
                  const torch::Tensor& row_weight) {
  if (hidden.dim() != 2 || weight.dim() != 2 || hidden.size(1) != weight.size(1))
    throw Error(fmt::format("lm_head_cross_entropy: hidden {} and weight {} must be [N, H] and [V, H]",
                            c10::str(hidden.sizes()), c10::str(weight.sizes())));
  const int64_t n = hidden.size(0);
  if (labels.dim() != 1 || labels.size(0) != n || labels.scalar_type() != torch::kInt64)
    throw Error(fmt::format("lm_head_cross_entropy: labels must be int64 [{}], got {} {}", n,
                            c10::toString(labels.scalar_type()), c10::str(labels.sizes())));
  if (row_weight.dim() != 1 || row_weight.size(0) != n)
    throw Error(fmt::format("lm_head_cross_entropy: row_weight must be [{}], got {}", n,
                            c10::str(row_weight.sizes())));
  // On a device the labels were checked where the batch was built (reading
  // them here would make the host wait for the device).
  if (n > 0 && labels.is_cpu()) {
    util::CpuOnlyCheck host_check;
    auto lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= weight.size(0))
      throw Error(fmt::format("lm_head_cross_entropy: labels must lie in [0, {}), found [{}, {}]", weight.size(0),
                              lo, hi));
  }
}

}  // namespace

torch::Tensor lm_head_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                    const torch::Tensor& labels, const torch::Tensor& row_weight, int64_t chunk_rows) {
  check_inputs(hidden, weight, labels, row_weight);
  // The unfused head would run under autocast in its dtype (fp64 is not autocast).
  auto device = hidden.device().type();
  bool fp64 = hidden.scalar_type() == torch::kFloat64 || weight.scalar_type() == torch::kFloat64;
  auto compute = !fp64 && at::autocast::is_autocast_enabled(device)
                     ? at::autocast::get_autocast_dtype(device)
                     : torch::promote_types(hidden.scalar_type(), weight.scalar_type());
  Wanted want{torch::GradMode::is_enabled() && hidden.requires_grad(),
              torch::GradMode::is_enabled() && weight.requires_grad()};
  if (!want.any()) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    return fused_loss(hidden, weight, labels, row_weight, chunk_rows, compute, want).loss;
  }
  return FusedLmHeadLoss::apply(hidden, weight, labels, row_weight, chunk_rows, static_cast<int64_t>(compute),
                                want.hidden, want.weight);
}

}  // namespace tess::model
