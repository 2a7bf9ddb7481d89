#include "core/util/progress.h"

#include <algorithm>
#include <unistd.h>

#include <fmt/format.h>

#include "core/util/format.h"

namespace tess::util {
namespace {

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

constexpr double kTtyRedrawInterval = 0.1;
constexpr int kBarWidth = 24;

}  // namespace

Progress::Progress(std::string label, int64_t total, Options options)
    : label_(std::move(label)), total_(total), opt_(std::move(options)) {
  if (!opt_.clock) opt_.clock = steady_seconds;
  tty_ = opt_.tty ? *opt_.tty : (opt_.out && isatty(fileno(opt_.out)));
  start_ = opt_.clock();
  if (!tty_) last_draw_ = start_;  // first plain line after one interval
}

Progress::~Progress() { finish(); }

double Progress::elapsed_s() const { return opt_.clock() - start_; }

double Progress::rate() const {
  double t = elapsed_s();
  return t > 0 ? static_cast<double>(done_) / t : 0.0;
}

void Progress::update(int64_t done) {
  done_ = done;
  dirty_ = true;
  if (!opt_.enabled || finished_) return;
  double now = opt_.clock();
  double interval = tty_ ? kTtyRedrawInterval : opt_.plain_interval_s;
  if (now - last_draw_ >= interval) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::set_field(const std::string& name, const std::string& value) {
  for (auto& f : fields_)
    if (f.first == name) {
      f.second = value;
      dirty_ = true;
      return;
    }
  fields_.emplace_back(name, value);
  dirty_ = true;
}

std::string Progress::status_line() const {
  std::string line = label_;
  double r = rate();
  if (total_ > 0) {
    double frac = std::clamp(static_cast<double>(done_) / static_cast<double>(total_), 0.0, 1.0);
    int filled = static_cast<int>(frac * kBarWidth + 0.5);
    std::string bar;
    for (int i = 0; i < kBarWidth; ++i) bar += i < filled ? "#" : ".";
    double eta = r > 0 ? static_cast<double>(total_ - done_) / r : -1.0;
    line += fmt::format(" {:3.0f}% [{}] {}/{} {} [{}<{}, {} {}/s]", frac * 100.0, bar,
                        human_count(static_cast<double>(done_)), human_count(static_cast<double>(total_)),
                        opt_.unit, human_duration(elapsed_s()), human_duration(eta),
                        human_count(r), opt_.unit);
  } else {
    line += fmt::format(" {} {} [{}, {} {}/s]", human_count(static_cast<double>(done_)), opt_.unit,
                        human_duration(elapsed_s()), human_count(r), opt_.unit);
  }
  for (const auto& [k, v] : fields_) line += fmt::format(" {}={}", k, v);
  return line;
}

void Progress::draw(bool final) {
  dirty_ = false;
  drawn_ = true;
  std::string line = status_line();
  if (tty_) {
    fmt::print(opt_.out, "\r\033[K{}{}", line, final ? "\n" : "");
  } else {
    fmt::print(opt_.out, "{}\n", line);
  }
  std::fflush(opt_.out);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  // A terminal line needs its newline; a plain log only a line it lacks.
  if (opt_.enabled && (tty_ || dirty_ || !drawn_)) draw(true);
}

}  // namespace tess::util
