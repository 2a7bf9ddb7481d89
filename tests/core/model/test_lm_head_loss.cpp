#include <catch2/catch.hpp>

#include <ATen/autocast_mode.h>

#include <torch/torch.h>

#include "core/model/lm_head_loss.h"
#include "core/util/error.h"

using tess::model::lm_head_cross_entropy;
using Catch::Matchers::Contains;

namespace {

struct Problem {
  torch::Tensor hidden, weight, labels, row_weight;
};

// 7 rows, V 11, H 5; rows 2 and 5 are not counted, one counts twice.
Problem problem(torch::ScalarType dtype) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  Problem p;
  p.hidden = torch::randn({7, 5}, gen, torch::kFloat64).to(dtype).requires_grad_(true);
  p.weight = torch::randn({11, 5}, gen, torch::kFloat64).to(dtype).requires_grad_(true);
  p.labels = torch::tensor({3, 0, 10, 4, 4, 7, 1}, torch::kInt64);
  p.row_weight = torch::tensor({1.0, 1.0, 0.0, 2.0, 1.0, 0.0, 1.0});
  return p;
}

// The unfused reference: the whole [N, V] logits, LibTorch's cross-entropy.
torch::Tensor unfused(const Problem& p) {
  auto logits = torch::matmul(p.hidden, p.weight.t());
  if (logits.scalar_type() != torch::kFloat64) logits = logits.to(torch::kFloat32);
  auto ce = torch::nn::functional::cross_entropy(
      logits, p.labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return (ce * p.row_weight.to(ce.scalar_type())).sum();
}

struct Result {
  torch::Tensor loss, grad_hidden, grad_weight;
};

Result run(const Problem& p, bool fused, int64_t chunk = 3, torch::Tensor scale = {}) {
  for (auto t : {p.hidden, p.weight})
    if (t.grad().defined()) t.mutable_grad().zero_();
  auto loss = fused ? lm_head_cross_entropy(p.hidden, p.weight, p.labels, p.row_weight, chunk) : unfused(p);
  (scale.defined() ? loss * scale : loss).backward();
  return {loss.detach(), p.hidden.grad().clone(), p.weight.grad().clone()};
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Autocast {
  Autocast() {
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    at::autocast::decrement_nesting();
    at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, false);
  }
};

}  // namespace

TEST_CASE("the fused LM-head loss equals the unfused one, with its gradients, for any chunk size",
          "[unit][model]") {
  auto p = problem(torch::kFloat64);
  auto ref = run(p, false);
  for (int64_t chunk : {1, 3, 7, 512}) {
    INFO("chunk " << chunk);
    auto got = run(p, true, chunk);
    CHECK(got.loss.scalar_type() == torch::kFloat64);
    CHECK(max_diff(got.loss, ref.loss) < 1e-12);
    CHECK(max_diff(got.grad_hidden, ref.grad_hidden) < 1e-12);
    CHECK(max_diff(got.grad_weight, ref.grad_weight) < 1e-12);
  }
  // Rows of weight 0 get no gradient; the incoming gradient scales both.
  auto scaled = run(p, true, 3, torch::tensor(0.25, torch::kFloat64));
  CHECK(scaled.grad_hidden[2].abs().max().item<double>() == 0.0);
  CHECK(max_diff(scaled.grad_weight, ref.grad_weight * 0.25) < 1e-12);
  // A frozen head: only the rows get a gradient, the same as before.
  auto frozen = p.weight.detach();
  p.hidden.mutable_grad().zero_();
  lm_head_cross_entropy(p.hidden, frozen, p.labels, p.row_weight, 3).backward();
  CHECK(max_diff(p.hidden.grad(), ref.grad_hidden) < 1e-12);
}

TEST_CASE("the fused LM-head loss in fp32 and under bf16 autocast matches the unfused head", "[unit][model]") {
  auto p = problem(torch::kFloat32);
  auto ref = run(p, false);
  auto got = run(p, true);
  CHECK(got.loss.scalar_type() == torch::kFloat32);
  CHECK(max_diff(got.loss, ref.loss) < 1e-4);
  CHECK(max_diff(got.grad_hidden, ref.grad_hidden) < 1e-5);
  CHECK(max_diff(got.grad_weight, ref.grad_weight) < 1e-5);

  Result amp_ref, amp_got;
  {
    Autocast amp;
    amp_ref = run(p, false);
    amp_got = run(p, true);
  }
  CHECK(amp_got.grad_weight.scalar_type() == torch::kFloat32);
  // Both ran their matmuls in bf16: they agree with each other far better
  // than with fp32 (the bf16 rounding of the logits is ~1e-2).
  CHECK(max_diff(amp_ref.loss, ref.loss) > 1e-4);
  CHECK(max_diff(amp_got.loss, amp_ref.loss) < 1e-3);
  CHECK(max_diff(amp_got.grad_hidden, amp_ref.grad_hidden) < 2e-2);
  CHECK(max_diff(amp_got.grad_weight, amp_ref.grad_weight) < 2e-2);
}

TEST_CASE("the fused LM-head loss without grad mode builds no graph and gives the same loss", "[unit][model]") {
  auto p = problem(torch::kFloat64);
  auto with_grad = lm_head_cross_entropy(p.hidden, p.weight, p.labels, p.row_weight, 3);
  torch::NoGradGuard no_grad;
  auto without = lm_head_cross_entropy(p.hidden, p.weight, p.labels, p.row_weight, 3);
  CHECK_FALSE(without.requires_grad());
  CHECK(without.item<double>() == with_grad.item<double>());
  auto empty = lm_head_cross_entropy(p.hidden.narrow(0, 0, 0), p.weight, p.labels.narrow(0, 0, 0),
                                     p.row_weight.narrow(0, 0, 0));
  CHECK(empty.item<double>() == 0.0);
}

TEST_CASE("the fused LM-head loss rejects labels outside the vocabulary and mismatched shapes", "[unit][model]") {
  auto p = problem(torch::kFloat32);
  auto bad = p.labels.clone();
  bad[4] = 11;
  CHECK_THROWS_WITH(lm_head_cross_entropy(p.hidden, p.weight, bad, p.row_weight),
                    Contains("labels must lie in [0, 11), found [0, 11]"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(p.hidden, p.weight, p.labels.narrow(0, 0, 6), p.row_weight),
                    Contains("labels must be int64 [7]"));
  CHECK_THROWS_WITH(lm_head_cross_entropy(p.hidden, p.weight.narrow(1, 0, 4), p.labels, p.row_weight),
                    Contains("must be [N, H] and [V, H]"));
}
