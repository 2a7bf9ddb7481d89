#include "data/jsonl.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "core/util/error.h"

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

std::string read_text_file(const fs::path& file) {
  bool gz = file.extension() == ".gz";
  if (!gz) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw Error(fmt::format("cannot open '{}'", file.string()));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  gzFile f = gzopen(file.string().c_str(), "rb");
  if (!f) throw Error(fmt::format("cannot open '{}'", file.string()));
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string problem = n < 0 ? std::string(msg) : std::string();
  gzclose(f);
  if (!problem.empty()) throw Error(fmt::format("'{}': corrupt gzip data: {}", file.string(), problem));
  return out;
}

JsonlReport read_jsonl(const fs::path& file, const JsonlVisitor& visit, bool skip_bad) {
  std::string text = read_text_file(file);
  JsonlReport report;
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
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
