#include "data/jsonl.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "data/line_reader.h"

namespace tess::data {
namespace fs = std::filesystem;

std::string JsonlReport::summary(const fs::path& file) const {
  if (skipped.empty()) return fmt::format("{}: {} records", file.string(), records);
  std::string lines;
  for (size_t i = 0; i < skipped.size() && i < 5; ++i)
    lines += fmt::format("{}{} ({})", i ? ", " : "", skipped[i].line, skipped[i].problem);
  return fmt::format("{}: {} records, skipped {} bad line(s): {}{}", file.string(), records,
                     skipped.size(), lines, skipped.size() > 5 ? ", ..." : "");
}

JsonlReport read_jsonl(const fs::path& file, const JsonlVisitor& visit, bool skip_bad) {
  LineReader in(file);
  JsonlReport report;
  std::string line;
  while (in.next(line)) {
    int64_t line_no = in.line_no();
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    std::string problem;
    try {
      auto record = nlohmann::json::parse(line);
      if (!record.is_object()) {
        problem = fmt::format("expected a JSON object, got {}", record.type_name());
      } else {
        visit(record, line_no);
        ++report.records;
        continue;
      }
    } catch (const nlohmann::json::parse_error& e) {
      problem = fmt::format("not valid JSON ({})", e.what());
    } catch (const RecordError& e) {
      problem = e.what();
    } catch (const nlohmann::json::exception& e) {
      problem = fmt::format("unexpected field type ({})", e.what());
    }
    if (!skip_bad)
      throw Error(fmt::format("{}:{}: {} (set data.skip_bad_records: true to skip such lines)",
                              file.string(), line_no, problem));
    report.skipped.push_back({line_no, problem});
  }
  return report;
}

}  // namespace tess::data
