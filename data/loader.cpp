#include "data/loader.h"

#include <fmt/format.h>

#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::data {

std::string SamplerState::to_string() const { return fmt::format("epoch {}, position {}", epoch, position); }

// ---- Permutation ------------------------------------------------------------------
//
// A balanced Feistel network over [0, 4^h) (the smallest such domain >= n)
// is a bijection whatever its round function; walking the cycle until the
// value falls inside [0, n) restricts it to a bijection of [0, n). Each value
// needs fewer than 4 encryptions on average (the domain is < 4n).

namespace {

uint64_t mix(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Permutation::Permutation(int64_t n, uint64_t seed, const std::string& stream) : n_(n) {
  if (n <= 0) throw Error(fmt::format("permutation of {} elements: need at least one", n));
  int bits = 2;
  while (bits < 62 && (int64_t{1} << bits) < n) bits += 2;
  half_bits_ = bits / 2;
  mask_ = (uint64_t{1} << half_bits_) - 1;
  util::Rng rng(seed, stream);
  for (auto& k : keys_) k = rng.next_u64();
}

int64_t Permutation::operator()(int64_t i) const {
  if (i < 0 || i >= n_) throw Error(fmt::format("permutation index {} out of range [0, {})", i, n_));
  uint64_t x = static_cast<uint64_t>(i);
  do {
    uint64_t l = x >> half_bits_, r = x & mask_;
    for (uint64_t k : keys_) {
      uint64_t next = l ^ (mix(r ^ k) & mask_);
      l = r;
      r = next;
    }
    x = (l << half_bits_) | r;
  } while (x >= static_cast<uint64_t>(n_));
  return static_cast<int64_t>(x);
}

// ---- DistributedSampler -------------------------------------------------------------

DistributedSampler::DistributedSampler(Options options) : opt_(options) {
  if (opt_.num_samples <= 0)
    throw Error(fmt::format("data loader: the dataset has no samples (num_samples = {}); "
                            "is the corpus shorter than one sequence?",
                            opt_.num_samples));
  if (opt_.world_size < 1 || opt_.rank < 0 || opt_.rank >= opt_.world_size)
    throw Error(fmt::format("data loader: rank {} is not inside world size {}", opt_.rank, opt_.world_size));
  if (opt_.per_rank_batch < 1)
    throw Error(fmt::format("data loader: per-rank batch must be >= 1, got {}", opt_.per_rank_batch));
}

const Permutation& DistributedSampler::order(int64_t epoch) const {
  if (!cached_ || cached_epoch_ != epoch) {
    cached_.emplace(opt_.num_samples, opt_.seed, fmt::format("loader.epoch{}", epoch));
    cached_epoch_ = epoch;
  }
  return *cached_;
}

int64_t DistributedSampler::index(int64_t epoch, int64_t position) const {
  if (epoch < 0 || position < 0 || position >= opt_.num_samples)
    throw Error(fmt::format("data loader: position {} of epoch {} is outside [0, {})", position, epoch,
                            opt_.num_samples));
  return opt_.shuffle ? order(epoch)(position) : position;
}

std::vector<int64_t> DistributedSampler::next_batch() {
  const int64_t n = opt_.num_samples;
  const int64_t first = consumed() + opt_.rank * opt_.per_rank_batch;
  std::vector<int64_t> out(static_cast<size_t>(opt_.per_rank_batch));
  for (int64_t k = 0; k < opt_.per_rank_batch; ++k) {
    int64_t s = first + k;
    out[static_cast<size_t>(k)] = index(s / n, s % n);
  }
  int64_t next = consumed() + global_batch();
  state_ = {next / n, next % n};
  return out;
}

std::vector<int64_t> DistributedSampler::peek_global_batch() const {
  const int64_t n = opt_.num_samples;
  std::vector<int64_t> out(static_cast<size_t>(global_batch()));
  for (int64_t k = 0; k < global_batch(); ++k) {
    int64_t s = consumed() + k;
    out[static_cast<size_t>(k)] = index(s / n, s % n);
  }
  return out;
}

void DistributedSampler::set_state(const SamplerState& state) {
  if (state.epoch < 0 || state.position < 0 || state.position >= opt_.num_samples)
    throw Error(fmt::format("data loader: saved state ({}) does not fit a dataset of {} samples; "
                            "was the data changed since the checkpoint?",
                            state.to_string(), opt_.num_samples));
  state_ = state;
}

}  // namespace tess::data
