#pragma once
// User-facing number formatting shared by progress bars, tables and logs.
#include <cstdint>
#include <string>

namespace tess::util {

// 1234567 -> "1.23M", 950 -> "950", 0.5 -> "0.5"; SI suffixes k, M, G, T.
std::string human_count(double value);
// Seconds -> "42s", "3:07", "1:02:03"; negative or non-finite -> "?".
std::string human_duration(double seconds);
// Bytes -> "512 B", "1.5 KiB", "3.2 GiB".
std::string human_bytes(double bytes);

}  // namespace tess::util
