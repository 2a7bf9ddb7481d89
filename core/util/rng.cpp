#include "core/util/rng.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "core/util/error.h"
#include "core/util/sha256.h"

namespace tess::util {

uint64_t derive_seed(uint64_t run_seed, const std::string& name) {
  Sha256 h;
  h.update(fmt::format("tess-rng:{}:{}", run_seed, name));
  auto d = h.digest();
  uint64_t s = 0;
  for (int i = 0; i < 8; ++i) s = (s << 8) | d[i];
  return s;
}

Rng::Rng(uint64_t run_seed, std::string name)
    : name_(std::move(name)),
      seed_(derive_seed(run_seed, name_)),
      gen_(std::make_unique<at::Generator>(at::make_generator<at::CPUGeneratorImpl>(seed_))) {}

Rng::~Rng() = default;
Rng::Rng(Rng&&) noexcept = default;
Rng& Rng::operator=(Rng&&) noexcept = default;

at::Generator& Rng::generator() { return *gen_; }

uint64_t Rng::next_u64() {
  auto* impl = at::check_generator<at::CPUGeneratorImpl>(*gen_);
  std::lock_guard<std::mutex> lock(gen_->mutex());
  return impl->random64();
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

int64_t Rng::uniform_int(int64_t lo, int64_t hi) {
  if (hi < lo) throw Error(fmt::format("rng '{}': empty range [{}, {}]", name_, lo, hi));
  uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(next_u64());  // the full 64-bit range
  uint64_t limit = UINT64_MAX - UINT64_MAX % span;  // reject the biased tail
  uint64_t r;
  do r = next_u64();
  while (r >= limit);
  return lo + static_cast<int64_t>(r % span);
}

bool Rng::bernoulli(double p) { return uniform() < p; }

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

void Rng::fill_standard_normal(float* out, int64_t n) {
  if (n <= 0) return;
  const uint64_t base = next_u64();
  const int64_t chunks = (n + kNormalChunk - 1) / kNormalChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t start = c * kNormalChunk, count = std::min(kNormalChunk, n - start);
      auto gen = at::make_generator<at::CPUGeneratorImpl>(splitmix64(base ^ splitmix64(static_cast<uint64_t>(c))));
      at::from_blob(out + start, {count}, at::kFloat).normal_(0.0, 1.0, gen);
    }
  });
}

std::vector<uint8_t> Rng::state() const {
  auto t = gen_->get_state();
  std::vector<uint8_t> out(static_cast<size_t>(t.numel()));
  std::memcpy(out.data(), t.data_ptr<uint8_t>(), out.size());
  return out;
}

void Rng::set_state(const std::vector<uint8_t>& state) {
  auto t = torch::empty({static_cast<int64_t>(state.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), state.data(), state.size());
  try {
    gen_->set_state(t);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("rng '{}': saved state is not a valid generator state ({} bytes)", name_, state.size()));
  }
}

}  // namespace tess::util
