#pragma once
// Progress of a long loop: a redrawn bar with rate, ETA and custom fields
// (loss, tokens/s) on a terminal; periodic plain lines otherwise (CI logs,
// pipes), so that a user always sees that work is moving and how fast.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tess::util {

class Progress {
 public:
  using Clock = std::function<double()>;  // seconds; injectable for tests

  struct Options {
    std::string unit = "it";          // what `total` counts
    bool enabled = true;              // e.g. false on ranks other than 0
    double plain_interval_s = 10.0;   // between plain lines when not a terminal
    std::FILE* out = stderr;
    std::optional<bool> tty;          // default: isatty(out)
    Clock clock;                      // default: steady clock
  };

  // total <= 0: unknown length (no bar, no ETA).
  Progress(std::string label, int64_t total, Options options);
  Progress(std::string label, int64_t total) : Progress(std::move(label), total, Options{}) {}
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1) { update(done_ + n); }
  void update(int64_t done);
  // A named value shown after the rate ("loss=2.31"); kept until replaced.
  void set_field(const std::string& name, const std::string& value);
  // Prints the final state unless the last line already showed it; idempotent.
  void finish();

  int64_t done() const { return done_; }
  double elapsed_s() const;
  double rate() const;  // units per second since start
  // The text of the current status line (without terminal control codes).
  std::string status_line() const;

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_;
  Options opt_;
  bool tty_;
  double start_;
  double last_draw_ = -1e30;
  int64_t done_ = 0;
  bool finished_ = false;
  bool dirty_ = false;  // state changed since the last line was drawn
  bool drawn_ = false;
  std::vector<std::pair<std::string, std::string>> fields_;
};

}  // namespace tess::util
