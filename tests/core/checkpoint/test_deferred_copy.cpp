// DeferredCopies: take() reserves a host tensor, run() fills it with the
// source's values at that moment; afterwards the copy is independent.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "core/checkpoint/deferred_copy.h"

using tess::checkpoint::DeferredCopies;

TEST_CASE("deferred copies hold the sources' values as of run(), then are independent of them",
          "[unit][checkpoint]") {
  auto weight = torch::randn({64, 32}, torch::requires_grad());
  auto strided = torch::arange(60, torch::kFloat64).view({6, 10}).t();  // not contiguous
  auto empty = torch::empty({0, 4});
  DeferredCopies copies;
  auto w = copies.take(weight);
  auto s = copies.take(strided);
  auto e = copies.take(empty);
  CHECK(copies.bytes() == 64 * 32 * 4 + 60 * 8);
  CHECK(w.sizes() == weight.sizes());
  CHECK(s.scalar_type() == torch::kFloat64);
  CHECK(s.sizes() == strided.sizes());
  {
    torch::NoGradGuard no_grad;
    weight.mul_(2);  // before run(): the copy sees it (the trainer only changes sources after wait_copied)
  }
  auto expected = weight.detach().clone();
  copies.run();
  CHECK(torch::equal(w, expected));
  CHECK(torch::equal(s, strided));
  CHECK(e.numel() == 0);
  CHECK_FALSE(w.requires_grad());
  {
    torch::NoGradGuard no_grad;
    weight.add_(1);
    strided.add_(1);
  }
  CHECK(torch::equal(w, expected));  // taken: later changes do not reach it
  CHECK_FALSE(torch::equal(s, strided));
}
