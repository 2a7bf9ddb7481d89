#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "core/util/error.h"
#include "core/util/file.h"
#include "data/jsonl.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;

namespace {
std::string error_of(const std::filesystem::path& file, const JsonlVisitor& visit) {
  try {
    read_jsonl(file, visit);
  } catch (const tess::Error& e) {
    return e.what();
  }
  FAIL("expected an error");
  return "";
}
const JsonlVisitor require_text = [](const nlohmann::json& r, int64_t) {
  if (!r.contains("text")) throw RecordError("missing field 'text'");
};
}  // namespace

TEST_CASE("JSONL records arrive with their line numbers and blank lines are skipped", "[unit][data]") {
  tess::test::TempDir dir;
  auto file = dir.write("a.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\"}\r\n");
  std::vector<std::pair<int64_t, std::string>> seen;
  auto report = read_jsonl(file, [&](const nlohmann::json& r, int64_t line) {
    seen.emplace_back(line, r.at("text").get<std::string>());
  });
  CHECK(report.records == 2);
  CHECK(seen == std::vector<std::pair<int64_t, std::string>>{{1, "one"}, {3, "two"}});
}

TEST_CASE("each kind of malformed line is an error naming file:line", "[unit][data]") {
  tess::test::TempDir dir;
  auto bad_json = dir.write("j.jsonl", "{\"text\": \"ok\"}\n{\"text\": \n");
  CHECK_THAT(error_of(bad_json, require_text), Contains(bad_json.string() + ":2: not valid JSON"));
  auto not_object = dir.write("o.jsonl", "[1, 2]\n");
  CHECK_THAT(error_of(not_object, require_text), Contains(":1: expected a JSON object, got array"));
  auto missing = dir.write("m.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"oops\"}\n");
  CHECK_THAT(error_of(missing, require_text), Contains(missing.string() + ":2: missing field 'text'"));
  CHECK_THAT(error_of(missing, require_text), Contains("data.skip_bad_records"));
}

TEST_CASE("skip_bad counts and reports bad lines instead of failing", "[unit][data]") {
  tess::test::TempDir dir;
  auto file = dir.write("s.jsonl", "{\"text\": \"a\"}\nnot json\n{\"text\": \"b\"}\n{\"x\": 1}\n");
  auto report = read_jsonl(file, require_text, /*skip_bad=*/true);
  CHECK(report.records == 2);
  REQUIRE(report.skipped.size() == 2);
  CHECK(report.skipped[0].line == 2);
  CHECK(report.skipped[1].line == 4);
  CHECK_THAT(report.summary(file), Contains("skipped 2 bad line(s): 2 (not valid JSON"));
}

TEST_CASE("gzip files are read transparently", "[unit][data]") {
  tess::test::TempDir dir;
  auto path = dir / "t.jsonl.gz";
  gzFile f = gzopen(path.c_str(), "wb");
  std::string text = "{\"text\": \"zipped\"}\n";
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
  std::string got;
  read_jsonl(path, [&](const nlohmann::json& r, int64_t) { got = r.at("text"); });
  CHECK(got == "zipped");
}

// Used to: a file cut at a flush point gave the first records and exit 0;
// cut mid-line it gave "not valid JSON" for a file that is in fact damaged.
TEST_CASE("a gzip JSONL file cut short at a flush point or mid-line is a corrupt-file error", "[unit][data]") {
  tess::test::TempDir dir;
  auto path = dir / "cut.jsonl.gz";
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  int64_t flushed_at = 0;
  for (int i = 0; i < 400; ++i) {
    std::string record = fmt::format("{{\"text\": \"record {} of a file cut short, {}\"}}\n", i, i * 7919 % 1000);
    REQUIRE(gzwrite(f, record.data(), static_cast<unsigned>(record.size())) == static_cast<int>(record.size()));
    if (i == 99) {
      REQUIRE(gzflush(f, Z_SYNC_FLUSH) == Z_OK);
      flushed_at = static_cast<int64_t>(gzoffset(f));
    }
  }
  REQUIRE(gzclose(f) == Z_OK);
  auto whole = tess::util::read_file(path);
  int64_t records = 0;
  auto count = [&](const nlohmann::json&, int64_t) { ++records; };
  read_jsonl(path, count);
  CHECK(records == 400);
  for (int64_t cut : {flushed_at, flushed_at + 7}) {
    INFO("cut at byte " << cut << " of " << whole.size());
    REQUIRE(cut < static_cast<int64_t>(whole.size()));
    tess::util::write_file_atomic(path, std::string_view(whole).substr(0, static_cast<size_t>(cut)));
    CHECK_THAT(error_of(path, count), Contains("'" + path.string() + "': corrupt gzip data: unexpected end of file"));
  }
}
