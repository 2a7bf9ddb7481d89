#pragma once
// Line-by-line reading of JSONL files (plain or .gz, through LineReader). Every record carries its
// file and line, so a malformed line is reported as `file:line: problem`;
// with skip_bad a bad line is counted and remembered instead of fatal, and
// nothing is ever dropped silently.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tess::data {

struct BadRecord {
  int64_t line = 0;
  std::string problem;
};

struct JsonlReport {
  int64_t records = 0;             // lines handed to the visitor successfully
  std::vector<BadRecord> skipped;  // only when skip_bad
  std::string summary(const std::filesystem::path& file) const;
};

// Thrown by a visitor to reject a record whose JSON parsed but whose content
// is wrong ("missing field 'messages'"); the reader adds file:line.
struct RecordError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using JsonlVisitor = std::function<void(const nlohmann::json& record, int64_t line)>;

// Calls `visit` for every non-blank line of `file`. A line that is not a JSON
// object, or that `visit` rejects with RecordError, throws tess::Error naming
// file:line, or with `skip_bad` is recorded in the report and skipped.
JsonlReport read_jsonl(const std::filesystem::path& file, const JsonlVisitor& visit,
                       bool skip_bad = false);

}  // namespace tess::data
