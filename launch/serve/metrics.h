#pragma once
// `GET /metrics` of `tess serve`, in the Prometheus text format: requests by
// endpoint and status, queue and batch occupancy, tokens and denoising steps,
// and histograms of request latency and steps per request. Thread-safe.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tess::serve {

class Metrics {
 public:
  void request(const std::string& endpoint, int status);              // every HTTP answer
  void finished(double latency_s, int64_t steps, int64_t tokens);     // every completed choice set
  void step(double seconds, int64_t rows);                            // every denoising step of the batch
  std::string text(int64_t running, int64_t waiting) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<int64_t> counts;  // per bound, plus +Inf
    double sum = 0;
    int64_t count = 0;
    explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
    void add(double x);
    std::string text(const std::string& name, const std::string& help) const;
  };
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t completion_tokens_ = 0, steps_ = 0, batch_steps_ = 0, row_steps_ = 0;
  double busy_seconds_ = 0;
  Histogram latency_{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}};
  Histogram request_steps_{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}};
};

}  // namespace tess::serve
