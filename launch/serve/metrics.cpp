#include "launch/serve/metrics.h"

#include <fmt/format.h>

namespace tess::serve {

void Metrics::Histogram::add(double x) {
  size_t i = 0;
  while (i < bounds.size() && x > bounds[i]) ++i;
  ++counts[i];
  sum += x;
  ++count;
}

std::string Metrics::Histogram::text(const std::string& name, const std::string& help) const {
  std::string s = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    s += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cumulative);
  }
  s += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count, name, sum, name, count);
  return s;
}

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::finished(double latency_s, int64_t steps, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  latency_.add(latency_s);
  request_steps_.add(static_cast<double>(steps));
  completion_tokens_ += tokens;
  steps_ += steps;
}

void Metrics::step(double seconds, int64_t rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  busy_seconds_ += seconds;
  ++batch_steps_;
  row_steps_ += rows;
}

std::string Metrics::text(int64_t running, int64_t waiting) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string s = "# HELP tess_requests_total HTTP requests answered, by endpoint and status.\n"
                  "# TYPE tess_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    s += fmt::format("tess_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  auto one = [&s](const char* name, const char* type, const char* help, auto value) {
    s += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  one("tess_queue_length", "gauge", "Requests waiting for room in the batch.", waiting);
  one("tess_batch_rows", "gauge", "Rows (choices) being denoised now.", running);
  one("tess_completion_tokens_total", "counter", "Completion tokens returned.", completion_tokens_);
  one("tess_denoising_steps_total", "counter", "Denoising steps run, summed over choices.", steps_);
  one("tess_batch_steps_total", "counter", "Batched model passes (one per step of the running batch).",
      batch_steps_);
  one("tess_busy_seconds_total", "counter", "Seconds spent in denoising steps.", busy_seconds_);
  one("tess_tokens_per_second", "gauge", "Completion tokens per busy second since start.",
      busy_seconds_ > 0 ? static_cast<double>(completion_tokens_) / busy_seconds_ : 0.0);
  one("tess_mean_batch_rows", "gauge", "Mean rows per batched pass.",
      batch_steps_ > 0 ? static_cast<double>(row_steps_) / static_cast<double>(batch_steps_) : 0.0);
  s += latency_.text("tess_request_latency_seconds", "Seconds from submission to the finished answer.");
  s += request_steps_.text("tess_request_steps", "Denoising steps per request (summed over its choices).");
  return s;
}

}  // namespace tess::serve
