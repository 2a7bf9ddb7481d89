// GSM8K: the reference's 8-shot prompt, gold and last-number extraction.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "data/jsonl.h"
#include "eval/tasks/gsm8k.h"
#include "tests/support/test_support.h"

using namespace tess::eval::tasks;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;

namespace {
size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}
}  // namespace

TEST_CASE("gsm8k_extract: last number, commas dropped, full stop and '+' ignored, sign kept", "[unit][eval]") {
  CHECK(gsm8k_extract("So the answer is 42.") == "42");
  CHECK(gsm8k_extract("She pays $1,000.00 in total.") == "1000");
  CHECK(gsm8k_extract("1,234,567 people") == "1234567");
  CHECK(gsm8k_extract("It drops to -5 degrees") == "-5");
  CHECK(gsm8k_extract("3 + 4 = 7, then 7 * 0.50 = 3.50") == "3.5");
  CHECK(gsm8k_extract("answer: +7") == "7");
  CHECK(gsm8k_extract("code 042") == "42");
  CHECK(gsm8k_extract("0.0") == "0");
  CHECK(gsm8k_extract("no number here") == "");
  CHECK(gsm8k_correct("The total is $1,000.00.", "1000"));
  CHECK(gsm8k_correct("so -4", "-4"));
  CHECK_FALSE(gsm8k_correct("so 4", "-4"));           // the sign counts
  CHECK_FALSE(gsm8k_correct("5 apples, then 7", "5"));  // only the last number
  CHECK_FALSE(gsm8k_correct("nothing", "5"));
}

TEST_CASE("gsm8k_gold: the number after ####, commas dropped", "[unit][eval]") {
  CHECK(gsm8k_gold("10 * 100 = 1000\n#### 1,000") == "1000");
  CHECK(gsm8k_gold("#### -4") == "-4");
  CHECK_THAT(tess::test::error_of([] {
               try {
                 gsm8k_gold("42");
               } catch (const tess::data::RecordError& e) {
                 throw tess::Error(e.what());
               }
             }),
             Contains("####"));
}

TEST_CASE("gsm8k_prompt: the reference's instruction, 8 CoT exemplars, then the question", "[unit][eval]") {
  auto p = gsm8k_prompt("  How many cats?  ", kGsm8kExemplars);
  CHECK_THAT(p, StartsWith("Answer the following questions.\n\nQuestion: There are 15 trees in the grove."));
  CHECK_THAT(p, Contains("\nAnswer: There are 15 trees originally."));
  CHECK_THAT(p, EndsWith("23 - 15 is 8. So the answer is 8.\n\nQuestion: How many cats?"));
  CHECK(count(p, "Question: ") == 9);
  CHECK(count(p, "So the answer is") == 8);
  CHECK(count(gsm8k_prompt("q", 2), "Question: ") == 3);
  CHECK(gsm8k_prompt("How many cats?", 0) == "Answer the following questions.\n\nQuestion: How many cats?");
}

TEST_CASE("gsm8k task: loads the public format and scores exact match", "[unit][eval]") {
  const auto& task = find_task("gsm8k");
  TaskOptions o;
  o.shots = 0;
  auto items = task.load(std::string(TESS_TEST_DATA) + "/benchmarks/gsm8k.jsonl", o);
  REQUIRE(items.size() == 3);
  CHECK(items[0].prompt == "Answer the following questions.\n\nQuestion: A cat has 3 toys and gets 2 more. How many toys?");
  CHECK(items[1].reference == "1000");
  CHECK(items[2].reference == "-4");
  CHECK(items[2].line == 3);
  auto s = task.score(items, {"3 + 2 = 5. So the answer is 5.", "It costs $1,000.", "It is 4 now."}, {});
  CHECK(s["exact_match"].get<double>() == Approx(2.0 / 3.0));
  CHECK(s["correct"] == 2);
  CHECK(s["n"] == 3);

  tess::test::TempDir dir;
  auto bad = dir.write("bad.jsonl", "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"answer\": \"#### 2\"}\n");
  CHECK_THAT(tess::test::error_of([&] { task.load(bad, o); }),
             Contains("bad.jsonl:2") && Contains("missing field 'question'") && Contains("\"answer\": \"... #### 42\""));
  o.shots = 9;
  CHECK_THAT(tess::test::error_of([&] { task.load(bad, o); }), Contains("gsm8k has 8 few-shot exemplars"));
  CHECK_THAT(tess::test::error_of([] { find_task("gsm9k"); }), Contains("unknown task 'gsm9k'") && Contains("alpaca_eval"));
}
