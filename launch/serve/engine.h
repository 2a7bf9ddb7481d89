#pragma once
// The batching engine of `tess serve`: one thread owns the model and a
// diffusion::ContinuousSampler; HTTP threads submit jobs and wait on them.
// A job (one request, n choices = n rows) joins the running batch at the next
// step boundary while it has room (--max-batch rows); beyond that it waits in
// a queue of at most --max-queue jobs (then submit() refuses: 429). A
// cancelled job (its client went away) leaves the batch at the next step.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "launch/serve/api.h"
#include "launch/serve/metrics.h"

namespace tess::data {
class Tokenizer;
}

namespace tess::serve {

struct EngineOptions {
  std::filesystem::path model;
  std::filesystem::path reward_model;  // empty: no guidance
  std::string device = "auto";
  int64_t max_batch = 8;   // rows denoised together
  int64_t max_queue = 64;  // jobs waiting beyond the batch
  uint64_t seed = 0;       // requests without a seed draw one from (seed, "request.<k>")
};

// One request in flight. HTTP threads read it; the engine thread writes it.
class Job {
 public:
  Request request;
  std::vector<int64_t> prompt;  // the encoded prompt
  ResponseHead head;
  std::chrono::steady_clock::time_point submitted;

  // Waits up to `timeout` for the next step event (true) or the end (false;
  // then outcome() or error() is set). Returns false at once once finished
  // and every step was taken.
  bool next(StepEvent& event, std::chrono::milliseconds timeout);
  bool finished() const;
  void wait();                                     // until finished
  const std::vector<Choice>& outcome() const { return choices_; }
  const std::string& error() const { return error_; }  // not empty: the engine failed this job
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<StepEvent> steps_;
  std::vector<Choice> choices_;
  std::string error_;
  bool finished_ = false;
  std::atomic<bool> cancelled_{false};
  // Engine side: the choices finished so far, and the rows still running.
  std::vector<Choice> done_;
  int64_t rows_left_ = 0;
  void push(StepEvent event);
  void finish(std::string error = {});
};

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();  // stops the thread (finishing nothing: call drain() first)

  const data::Tokenizer& tokenizer() const;
  int64_t max_positions() const { return max_positions_; }
  Limits limits(int64_t steps, int64_t max_tokens, double top_p) const;

  // Encodes the prompt (400 when it leaves no room for the span), queues the
  // job; 429 when the queue is full, 503 once draining.
  std::shared_ptr<Job> submit(Request request, const std::string& model_id);

  // Stops accepting, returns when everything accepted has finished.
  void drain();
  bool draining() const { return draining_; }
  int64_t running() const;  // rows in the batch
  int64_t waiting() const;  // jobs in the queue that will not fit the batch at the next step
  Metrics& metrics() { return metrics_; }

 private:
  struct Impl;
  void loop();
  void admit();       // engine thread: queue -> batch while there is room (mutex_ held)
  void run_step();    // engine thread: one denoising step, results to their jobs
  // Queued jobs beyond those the next step admits (mutex_ held); the batch rows left after those.
  int64_t waiting_locked(int64_t* free_rows) const;

  EngineOptions options_;
  std::unique_ptr<Impl> impl_;
  int64_t max_positions_ = 0;
  Metrics metrics_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;    // the engine thread waits for work
  std::condition_variable idle_;  // drain() waits for an empty batch and queue
  std::deque<std::shared_ptr<Job>> queue_;
  int64_t rows_running_ = 0;
  int64_t requests_seen_ = 0;
  uint64_t id_nonce_ = 0;  // makes response ids unique across server runs (they carry no randomness of the answers)
  bool stop_ = false;
  std::atomic<bool> draining_{false};
  std::thread thread_;
};

}  // namespace tess::serve
