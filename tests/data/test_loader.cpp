// The distributed sampler and the prefetcher (data/loader.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "core/util/error.h"
#include "core/util/rng.h"
#include "data/loader.h"

using namespace tess::data;
using Catch::Matchers::Contains;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  FAIL("expected an exception");
  return "";
}

DistributedSampler::Options sampler_options(int64_t n, int64_t world, int64_t rank, int64_t batch,
                                            bool shuffle = true) {
  DistributedSampler::Options o;
  o.num_samples = n;
  o.world_size = world;
  o.rank = rank;
  o.per_rank_batch = batch;
  o.shuffle = shuffle;
  o.seed = 1234;
  return o;
}

// The global sample stream as one process with a global batch of 1 sees it.
std::vector<int64_t> global_stream(int64_t n, int64_t count) {
  DistributedSampler s(sampler_options(n, 1, 0, 1));
  std::vector<int64_t> out;
  for (int64_t i = 0; i < count; ++i) out.push_back(s.next_batch()[0]);
  return out;
}

bool is_permutation_of_range(std::vector<int64_t> v, int64_t n) {
  if (static_cast<int64_t>(v.size()) != n) return false;
  std::sort(v.begin(), v.end());
  for (int64_t i = 0; i < n; ++i)
    if (v[static_cast<size_t>(i)] != i) return false;
  return true;
}

}  // namespace

TEST_CASE("a seeded permutation is a bijection, fixed by seed and stream", "[unit][data]") {
  for (int64_t n : {1, 2, 3, 5, 16, 17, 1000, 4097}) {
    INFO(n);
    Permutation p(n, 7, "loader.epoch0");
    std::vector<int64_t> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(p(i));
    CHECK(is_permutation_of_range(v, n));
    Permutation same(n, 7, "loader.epoch0");
    for (int64_t i = 0; i < n; ++i) CHECK(same(i) == v[static_cast<size_t>(i)]);
  }
  Permutation a(1000, 7, "loader.epoch0"), b(1000, 7, "loader.epoch1"), c(1000, 8, "loader.epoch0");
  int same_b = 0, same_c = 0, fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    same_b += a(i) == b(i);
    same_c += a(i) == c(i);
    fixed += a(i) == i;
  }
  CHECK(same_b < 20);
  CHECK(same_c < 20);
  CHECK(fixed < 20);
  CHECK_THAT(error_of([] { Permutation(0, 1, "x"); }), Contains("at least one"));
}

TEST_CASE("two ranks see disjoint samples that cover the epoch", "[unit][data]") {
  const int64_t n = 24;
  DistributedSampler r0(sampler_options(n, 2, 0, 3)), r1(sampler_options(n, 2, 1, 3));
  CHECK(r0.global_batch() == 6);
  std::vector<int64_t> seen0, seen1;
  for (int step = 0; step < 4; ++step) {
    auto global = r0.peek_global_batch();
    auto a = r0.next_batch(), b = r1.next_batch();
    CHECK(std::vector<int64_t>(global.begin(), global.begin() + 3) == a);  // rank 0's slice first
    CHECK(std::vector<int64_t>(global.begin() + 3, global.end()) == b);
    seen0.insert(seen0.end(), a.begin(), a.end());
    seen1.insert(seen1.end(), b.begin(), b.end());
    CHECK(r0.state() == r1.state());
  }
  CHECK(r0.state() == SamplerState{1, 0});
  for (int64_t x : seen0) CHECK(std::find(seen1.begin(), seen1.end(), x) == seen1.end());
  std::vector<int64_t> all = seen0;
  all.insert(all.end(), seen1.begin(), seen1.end());
  CHECK(is_permutation_of_range(all, n));
  // Shuffled: not the identity; the next epoch has another order.
  std::vector<int64_t> identity(n);
  std::iota(identity.begin(), identity.end(), 0);
  auto stream = global_stream(n, 2 * n);
  CHECK(std::vector<int64_t>(stream.begin(), stream.begin() + n) != identity);
  CHECK(std::vector<int64_t>(stream.begin() + n, stream.end()) != std::vector<int64_t>(stream.begin(), stream.begin() + n));
  CHECK(is_permutation_of_range(std::vector<int64_t>(stream.begin() + n, stream.end()), n));

  DistributedSampler plain(sampler_options(5, 1, 0, 5, false));
  CHECK(plain.next_batch() == std::vector<int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("resuming mid-epoch continues the uninterrupted order", "[unit][data]") {
  const int64_t n = 50;
  DistributedSampler uninterrupted(sampler_options(n, 2, 1, 4));
  std::vector<std::vector<int64_t>> expected;
  for (int step = 0; step < 20; ++step) expected.push_back(uninterrupted.next_batch());

  DistributedSampler first(sampler_options(n, 2, 1, 4));
  for (int step = 0; step < 7; ++step) CHECK(first.next_batch() == expected[static_cast<size_t>(step)]);
  SamplerState saved = first.state();
  CHECK(saved == SamplerState{1, 6});  // 7 * 8 = 56 = 50 + 6

  DistributedSampler resumed(sampler_options(n, 2, 1, 4));
  resumed.set_state(saved);
  for (int step = 7; step < 20; ++step) CHECK(resumed.next_batch() == expected[static_cast<size_t>(step)]);
  CHECK(resumed.state() == uninterrupted.state());
  CHECK(resumed.consumed() == 20 * 8);

  CHECK_THAT(error_of([&] { resumed.set_state({0, 50}); }), Contains("does not fit a dataset of 50 samples"));
  CHECK_THAT(error_of([] { DistributedSampler(sampler_options(0, 1, 0, 1)); }), Contains("no samples"));
  CHECK_THAT(error_of([] { DistributedSampler(sampler_options(5, 2, 2, 1)); }), Contains("rank 2"));
}

TEST_CASE("resuming 2 ranks on 1 rank loses and repeats no sample", "[unit][data]") {
  const int64_t n = 40;
  // 2 ranks x 3 per rank for 5 steps (30 samples), then 1 rank x 6.
  DistributedSampler r0(sampler_options(n, 2, 0, 3)), r1(sampler_options(n, 2, 1, 3));
  std::vector<int64_t> consumed;
  for (int step = 0; step < 5; ++step) {
    auto a = r0.next_batch(), b = r1.next_batch();
    consumed.insert(consumed.end(), a.begin(), a.end());
    consumed.insert(consumed.end(), b.begin(), b.end());
  }
  SamplerState saved = r0.state();
  CHECK(saved == SamplerState{0, 30});
  DistributedSampler solo(sampler_options(n, 1, 0, 6));
  solo.set_state(saved);
  for (int step = 0; step < 5; ++step) {
    auto a = solo.next_batch();
    consumed.insert(consumed.end(), a.begin(), a.end());
  }
  // The same global stream as without the change, and the first epoch whole.
  CHECK(consumed == global_stream(n, 60));
  CHECK(is_permutation_of_range(std::vector<int64_t>(consumed.begin(), consumed.begin() + n), n));
  CHECK(solo.state() == SamplerState{1, 20});

  // And back to 4 ranks x 5 from there.
  std::vector<int64_t> more;
  for (int64_t r = 0; r < 4; ++r) {
    DistributedSampler s(sampler_options(n, 4, r, 5));
    s.set_state(solo.state());
    auto b = s.next_batch();
    more.insert(more.end(), b.begin(), b.end());
  }
  auto stream = global_stream(n, 80);
  CHECK(more == std::vector<int64_t>(stream.begin() + 60, stream.end()));
}

TEST_CASE("a global batch past the end of an epoch wraps into the next epoch's order", "[unit][data]") {
  const int64_t n = 10;
  DistributedSampler s(sampler_options(n, 2, 0, 2));  // global batch 4
  auto stream = global_stream(n, 3 * n);
  std::vector<int64_t> got;
  for (int step = 0; step < 3; ++step) {
    auto global = s.peek_global_batch();
    got.insert(got.end(), global.begin(), global.end());
    s.next_batch();
  }
  // Step 3 = the last 2 samples of epoch 0 + the first 2 of epoch 1.
  CHECK(got == std::vector<int64_t>(stream.begin(), stream.begin() + 12));
  CHECK(s.state() == SamplerState{1, 2});
  CHECK(s.index(1, 0) == stream[10]);
  // A global batch larger than the dataset spans several epochs.
  DistributedSampler big(sampler_options(3, 1, 0, 7));
  CHECK(big.next_batch() == global_stream(3, 7));
  CHECK(big.state() == SamplerState{2, 1});
}

namespace {

// A producer as a trainer writes one: a sampler and an RNG stream advanced
// per batch; the state after a batch is both.
struct LoaderState {
  SamplerState sampler;
  std::vector<uint8_t> rng;
};

struct Batch {
  std::vector<int64_t> indices;
  uint64_t noise = 0;
};

struct Source {
  DistributedSampler sampler;
  tess::util::Rng rng;
  std::atomic<int> produced{0};
  int fail_at = -1;
  int end_at = -1;

  explicit Source(const LoaderState* resume = nullptr)
      : sampler(sampler_options(30, 1, 0, 4)), rng(99, "span_mask") {
    if (resume) {
      sampler.set_state(resume->sampler);
      rng.set_state(resume->rng);
    }
  }
  std::optional<Batch> produce() {
    int k = produced.load();
    if (k == end_at) return std::nullopt;
    if (k == fail_at) throw tess::Error("producer failed at item " + std::to_string(k));
    Batch b{sampler.next_batch(), rng.next_u64()};
    produced.store(k + 1);
    return b;
  }
  LoaderState snapshot() const { return {sampler.state(), rng.state()}; }
};

using TestPrefetcher = Prefetcher<Batch, LoaderState>;

std::unique_ptr<TestPrefetcher> make_prefetcher(Source& src, int64_t depth) {
  return std::make_unique<TestPrefetcher>([&src] { return src.produce(); }, [&src] { return src.snapshot(); },
                                          depth);
}

void wait_for(const std::function<bool()>& done) {
  for (int i = 0; i < 2000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace

TEST_CASE("the prefetcher hands items in order, each with the state after it", "[unit][data]") {
  // Reference: everything produced synchronously.
  Source ref;
  std::vector<Batch> expected;
  std::vector<LoaderState> states;
  for (int k = 0; k < 12; ++k) {
    expected.push_back(*ref.produce());
    states.push_back(ref.snapshot());
  }

  for (int64_t depth : {0, 1, 3}) {
    INFO("depth " << depth);
    Source src;
    auto pf = make_prefetcher(src, depth);
    CHECK(pf->state().sampler == SamplerState{0, 0});
    for (int k = 0; k < 5; ++k) {
      auto item = pf->next();
      REQUIRE(item);
      CHECK(item->batch.indices == expected[static_cast<size_t>(k)].indices);
      CHECK(item->batch.noise == expected[static_cast<size_t>(k)].noise);
      CHECK(item->state.sampler == states[static_cast<size_t>(k)].sampler);
      CHECK(item->state.rng == states[static_cast<size_t>(k)].rng);
    }
    // The producer runs ahead by `depth`, but the checkpointable state is
    // that after the 5th item consumed.
    wait_for([&] { return src.produced.load() >= 5 + depth; });
    CHECK(src.produced.load() == 5 + depth);
    LoaderState saved = pf->state();
    CHECK(saved.sampler == states[4].sampler);
    CHECK(saved.rng == states[4].rng);
    pf.reset();  // clean shutdown with a full queue

    // Resuming from it produces exactly items 5.. of the uninterrupted run.
    Source resumed(&saved);
    auto pf2 = make_prefetcher(resumed, depth);
    for (int k = 5; k < 12; ++k) {
      auto item = pf2->next();
      REQUIRE(item);
      CHECK(item->batch.indices == expected[static_cast<size_t>(k)].indices);
      CHECK(item->batch.noise == expected[static_cast<size_t>(k)].noise);
    }
  }
}

TEST_CASE("the prefetcher rethrows producer errors after the items before them, and ends", "[unit][data]") {
  for (int64_t depth : {0, 2}) {
    INFO("depth " << depth);
    Source src;
    src.fail_at = 3;
    auto pf = make_prefetcher(src, depth);
    for (int k = 0; k < 3; ++k) CHECK(pf->next());
    CHECK_THAT(error_of([&] { pf->next(); }), Contains("producer failed at item 3"));
    CHECK(pf->state().sampler == SamplerState{0, 12});

    Source finite;
    finite.end_at = 2;
    auto pf2 = make_prefetcher(finite, depth);
    CHECK(pf2->next());
    CHECK(pf2->next());
    CHECK_FALSE(pf2->next());
    CHECK_FALSE(pf2->next());
  }
}
