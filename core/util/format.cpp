#include "core/util/format.h"

#include <cmath>

#include <fmt/format.h>

namespace tess::util {

std::string human_count(double value) {
  static const char* suffix[] = {"", "k", "M", "G", "T"};
  double v = std::abs(value);
  int i = 0;
  while (v >= 999.5 && i < 4) {
    v /= 1000.0;
    ++i;
  }
  double sign = value < 0 ? -1.0 : 1.0;
  if (i == 0) {
    if (v == std::floor(v)) return fmt::format("{}", static_cast<int64_t>(sign * v));
    return fmt::format("{:.3g}", sign * v);
  }
  return fmt::format("{:.3g}{}", sign * v, suffix[i]);
}

std::string human_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}:{:02}", s / 60, s % 60);
  return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
}

std::string human_bytes(double bytes) {
  static const char* suffix[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (bytes >= 1024.0 && i < 4) {
    bytes /= 1024.0;
    ++i;
  }
  if (i == 0) return fmt::format("{} B", static_cast<int64_t>(bytes));
  return fmt::format("{:.1f} {}", bytes, suffix[i]);
}

}  // namespace tess::util
