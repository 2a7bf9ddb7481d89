#pragma once
// The resumable distributed data order and a background prefetcher. Knows no
// model, no trainer and no tensor type: the trainer plugs in whatever batch
// it builds.
//
// Order: the global sample stream is epoch 0's order, then epoch 1's, ...
// where each epoch's order is a permutation of [0, N) drawn from (seed,
// epoch) (or the identity without shuffling). An optimizer step consumes the
// next world_size * per_rank_batch samples of that stream; rank r takes the
// r-th slice of per_rank_batch. The whole state is {epoch, position}: a
// pointer into the stream that does not depend on the world size, so a run
// resumed with another number of processes continues the same global order
// from the same sample: nothing lost, nothing repeated.
// A global batch that runs past the end of an epoch wraps into the next
// epoch's order (no sample is dropped and every batch is full).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tess::data {

struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;  // samples of this epoch's order already consumed (all ranks)
  bool operator==(const SamplerState& o) const { return epoch == o.epoch && position == o.position; }
  bool operator!=(const SamplerState& o) const { return !(*this == o); }
  std::string to_string() const;  // "epoch 2, position 640"
};

// A pseudo-random permutation of [0, n) with O(1) memory and O(1) random
// access (a keyed Feistel network with cycle walking), its keys drawn from a
// tess::util::Rng stream.
class Permutation {
 public:
  Permutation(int64_t n, uint64_t seed, const std::string& stream);
  int64_t size() const { return n_; }
  int64_t operator()(int64_t i) const;  // i in [0, n)

 private:
  int64_t n_;
  int half_bits_ = 1;
  uint64_t mask_ = 1;
  uint64_t keys_[6] = {};
};

class DistributedSampler {
 public:
  struct Options {
    int64_t num_samples = 0;  // N > 0
    int64_t world_size = 1;
    int64_t rank = 0;
    int64_t per_rank_batch = 1;
    bool shuffle = true;
    uint64_t seed = 0;        // the run seed; each epoch uses stream "loader.epoch<e>"
  };
  explicit DistributedSampler(Options options);

  int64_t num_samples() const { return opt_.num_samples; }
  int64_t global_batch() const { return opt_.world_size * opt_.per_rank_batch; }
  const Options& options() const { return opt_; }

  // The sample at `position` of epoch `epoch`'s global order.
  int64_t index(int64_t epoch, int64_t position) const;
  // This rank's per_rank_batch sample indices of the next global batch;
  // advances the state by global_batch() (wrapping into the next epoch).
  std::vector<int64_t> next_batch();
  // The whole next global batch (all ranks, rank 0's slice first) without
  // advancing; for tests and diagnostics.
  std::vector<int64_t> peek_global_batch() const;

  const SamplerState& state() const { return state_; }
  // Throws tess::Error when position is not inside [0, num_samples).
  void set_state(const SamplerState& state);
  // Samples consumed since epoch 0 position 0: epoch * N + position.
  int64_t consumed() const { return state_.epoch * opt_.num_samples + state_.position; }

 private:
  const Permutation& order(int64_t epoch) const;
  Options opt_;
  SamplerState state_;
  mutable std::optional<Permutation> cached_;
  mutable int64_t cached_epoch_ = -1;
};

// Runs a producer on a background thread, `depth` items ahead of the
// consumer (0 = synchronous: produced on the consumer's thread when asked).
// The producer is called sequentially; right after each call `snapshot` is
// called on the same thread, so every item carries the resume state valid
// AFTER it (sampler position, RNG states the producer advanced). A checkpoint
// taken after consuming item k saves state() == item k's state, never the
// state of items prefetched ahead. The producer returns std::nullopt at the
// end of its data. Its exceptions reach the consumer from next(), after the
// items produced before the failure. The destructor stops the thread (waiting
// for a producer call in progress to return).
// While a Prefetcher exists, only its thread may touch what the producer and
// snapshot use; restore saved state before constructing it.
template <class Batch, class State>
class Prefetcher {
 public:
  struct Item {
    Batch batch;
    State state;  // the resume state after this item
  };
  using Producer = std::function<std::optional<Batch>()>;
  using Snapshot = std::function<State()>;

  Prefetcher(Producer produce, Snapshot snapshot, int64_t depth)
      : produce_(std::move(produce)), snapshot_(std::move(snapshot)), depth_(depth < 0 ? 0 : depth) {
    state_ = snapshot_();  // the state before any item
    if (depth_ > 0) thread_ = std::thread([this] { run(); });
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next item in production order; std::nullopt once the producer is
  // exhausted. Rethrows the producer's (or snapshot's) exception.
  std::optional<Item> next() {
    std::optional<Item> item;
    if (depth_ == 0) {
      if (done_) return std::nullopt;
      auto batch = produce_();
      if (!batch) {
        done_ = true;
        return std::nullopt;
      }
      item.emplace(Item{std::move(*batch), snapshot_()});
    } else {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return !queue_.empty() || finished_; });
      if (queue_.empty()) {
        if (error_) std::rethrow_exception(error_);
        return std::nullopt;
      }
      item.emplace(std::move(queue_.front()));
      queue_.pop_front();
      lock.unlock();
      cv_.notify_all();
    }
    state_ = item->state;
    return item;
  }

  // The resume state after the last item next() returned (before any item:
  // the state at construction).
  const State& state() const { return state_; }
  int64_t depth() const { return depth_; }

 private:
  void run() {
    try {
      for (;;) {
        {
          std::unique_lock<std::mutex> lock(mutex_);
          cv_.wait(lock, [this] { return stop_ || static_cast<int64_t>(queue_.size()) < depth_; });
          if (stop_) break;
        }
        auto batch = produce_();
        if (!batch) break;
        Item item{std::move(*batch), snapshot_()};
        {
          std::lock_guard<std::mutex> lock(mutex_);
          queue_.push_back(std::move(item));
        }
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
    }
    cv_.notify_all();
  }

  Producer produce_;
  Snapshot snapshot_;
  int64_t depth_;
  State state_;
  bool done_ = false;  // synchronous mode: producer exhausted
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  bool finished_ = false;
  std::exception_ptr error_;
};

}  // namespace tess::data
