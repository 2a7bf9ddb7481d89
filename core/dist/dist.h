#pragma once
// Data parallelism on PyTorch's c10d. The process group comes from the
// torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT), so `torchrun --no-python tess train ...`, `tess launch` and
// SLURM wrappers work alike. The backend-specific part is only the factory:
// NCCL when running on CUDA (compiled in every CUDA build of LibTorch), Gloo
// on CPU. Everything else talks to the backend-neutral c10d::Backend, so the
// Gloo tests cover the real data-parallel path.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

namespace c10d {
class Backend;
class Store;
class Work;
}  // namespace c10d

namespace tess::dist {

// Makes CUDA device `index` the process's current one, so that the NCCL
// communicator, the CUDA context and every allocation without an explicit
// device land on this rank's GPU instead of GPU 0. Needs a CUDA build of
// LibTorch (a tess::Error otherwise).
void use_cuda_device(int index);

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  static DistEnv from_environment();  // single process when WORLD_SIZE is unset
};

class Dist {
 public:
  // A single-process group (all collectives are no-ops).
  Dist();
  // backend: "auto" | "gloo" | "nccl"; a collective slower than `timeout`
  // fails with an error naming the operation instead of hanging.
  // `group_of_one`: build the process group for a single process too (a
  // test of the backend on one device); otherwise one process has none.
  static std::shared_ptr<Dist> create(const DistEnv& env, const std::string& backend, std::chrono::milliseconds timeout,
                                      bool group_of_one = false);
  ~Dist();

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  int local_rank() const { return env_.local_rank; }
  // Where this backend's tensors live: CUDA device LOCAL_RANK for NCCL, else CPU.
  at::Device device() const { return device_; }
  const std::string& backend_name() const { return backend_name_; }

  // In place; tensors may live on any device the backend supports.
  void all_reduce_sum(std::vector<at::Tensor>& tensors, const char* what);
  void all_reduce_max(std::vector<at::Tensor>& tensors, const char* what);
  void broadcast(std::vector<at::Tensor>& tensors, int root, const char* what);
  void barrier(const char* what);
  // Sum of one number over ranks (token counts, flags); of several in one all-reduce.
  double sum(double value, const char* what);
  std::vector<double> sum(const std::vector<double>& values, const char* what);

  // Overlap: starts an in-place sum of one contiguous tensor and returns at
  // once (gradient buckets while backward runs); finish_pending() waits for
  // every started one in start order. Start order must match on all ranks.
  void all_reduce_sum_start(const at::Tensor& flat, const char* what);
  void finish_pending();

  // Small messages between ranks outside the collectives, through the
  // rendezvous store (safe from any thread): e.g. background checkpoint
  // writers reporting that their files are written. A single process has no
  // store: lookup() then finds nothing.
  void publish(const std::string& key, const std::string& value);
  std::optional<std::string> lookup(const std::string& key);  // nullopt while the key is unset

 private:
  DistEnv env_;
  std::string backend_name_ = "none";
  at::Device device_{at::kCPU};
  std::chrono::milliseconds timeout_{0};
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  int64_t collectives_ = 0;  // collectives this rank has entered
  // What the heartbeat publishes: the last collective entered (its number
  // and name, a string literal) and the last one completed.
  std::atomic<int64_t> entered_{0}, completed_{0};
  std::atomic<const char*> entered_what_{""};
  struct Pending {
    c10::intrusive_ptr<c10d::Work> work;
    int64_t number;
    const char* what;
    std::vector<at::Tensor> tensors;  // kept alive until the collective completes
  };
  std::vector<Pending> pending_;
  // Every rank bumps its counter in the store twice a second from a thread
  // of its own, so that a peer can tell a dead or frozen process (its
  // counter stands still) from one that is merely late; with it goes, when
  // it changed, which collective the rank last entered and completed. The
  // collectives themselves never touch the store (a synchronous round trip
  // to rank 0 each, hundreds per step at 7B).
  std::thread heartbeat_;
  std::mutex heartbeat_mutex_;
  std::condition_variable heartbeat_stop_cv_;
  bool heartbeat_stop_ = false;
  void start_heartbeat();
  void publish_progress(int64_t& published_entered, int64_t& published_completed);
  // Waits for collective #`number` and records its completion.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what, int64_t number);
  // Records (locally; the heartbeat publishes it) that this rank entered
  // collective #n (`what`), and wait() that it completed it, so that a rank
  // whose peer died or hung can name the ranks that never came or that are
  // stuck inside the collective.
  void mark(const char* what);
  std::string missing_ranks() const;
  // Starts a collective and waits for it; any failure becomes a tess::Error naming `what`.
  template <typename Start>
  void run(const char* what, Start&& start) {
    mark(what);
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = start();
    } catch (const std::exception& e) {
      fail(what, e.what());
    }
    wait(work, what, collectives_);
  }
  [[noreturn]] void fail(const char* what, const std::string& message) const { fail(what, message, collectives_); }
  [[noreturn]] void fail(const char* what, const std::string& message, int64_t number) const;
};

}  // namespace tess::dist
