#pragma once
// Named, seeded, checkpointable random streams. Every random draw of a run
// comes from one of these ("noise", "self_condition", "span_mask",
// "loader", ...): each stream's seed is derived from the run seed and its
// name, so streams are independent, adding a stream never shifts another,
// and saving every stream's state makes a resumed run draw exactly what the
// uninterrupted run would have drawn.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Generator;
}

namespace tess::util {

class Rng {
 public:
  Rng(uint64_t run_seed, std::string name);
  ~Rng();
  Rng(Rng&&) noexcept;
  Rng& operator=(Rng&&) noexcept;

  const std::string& name() const { return name_; }
  uint64_t seed() const { return seed_; }

  // The torch CPU generator of this stream, for torch::randn(..., gen) etc.
  at::Generator& generator();

  // Host-side draws from the same stream.
  uint64_t next_u64();
  double uniform();                           // [0, 1)
  int64_t uniform_int(int64_t lo, int64_t hi);  // [lo, hi], unbiased
  bool bernoulli(double p);

  // n standard normal floats, drawn in parallel: one draw from this stream
  // seeds fixed chunks of kNormalChunk values, each filled by its own
  // generator on whichever thread takes it, so the values do not depend on
  // the thread count. (Torch's own randn is single-threaded; the measured
  // difference is in docs/performance.md.)
  void fill_standard_normal(float* out, int64_t n);
  static constexpr int64_t kNormalChunk = int64_t{1} << 16;

  // Opaque state for checkpoints; set_state() restores it exactly.
  std::vector<uint8_t> state() const;
  void set_state(const std::vector<uint8_t>& state);

 private:
  std::string name_;
  uint64_t seed_;
  std::unique_ptr<at::Generator> gen_;
};

// Seed of stream `name` under `run_seed` (stable across versions and platforms).
uint64_t derive_seed(uint64_t run_seed, const std::string& name);

}  // namespace tess::util
