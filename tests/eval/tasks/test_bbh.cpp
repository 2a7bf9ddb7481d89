// BBH: the cot-prompt file, the prompt, answer extraction and scoring per task.
#include <catch2/catch.hpp>

#include "eval/tasks/bbh.h"
#include "tests/support/test_support.h"

using namespace tess::eval::tasks;
using Catch::Matchers::Contains;

namespace {
std::string fixture(const char* name) { return std::string(TESS_TEST_DATA) + "/benchmarks/bbh/" + name; }
}  // namespace

TEST_CASE("bbh_extract: the text after the first 'the answer is' up to its full stop", "[unit][eval]") {
  CHECK(bbh_extract("A is B. So the answer is (B).") == "(B)");
  CHECK(bbh_extract("The answer is yes. Later the answer is no.") == "yes");
  CHECK(bbh_extract("So the answer is 3.5 apples.") == "3");  // lazy up to the first '.', as the reference does
  CHECK(bbh_extract("so the answer is\nno. \n") == "so the answer is\nno.");  // no match across lines: whole output
  CHECK(bbh_extract("  valid  ") == "valid");
  CHECK(bbh_match("(B)", "(B)"));
  CHECK(bbh_match("b", "(B)"));  // case and ASCII punctuation ignored on both sides
  CHECK(bbh_match("Yes!", "yes"));
  CHECK_FALSE(bbh_match("yes it is", "yes"));
  CHECK_FALSE(bbh_match("(C)", "(B)"));
}

TEST_CASE("bbh prompts: canary header skipped, shots cut, ' A:' after the question", "[unit][eval]") {
  std::string file = "CANARY line\n-----\nDescribe.\n\nQ: one?\nA: 1.\n\nQ: two?\nA: 2.\n\nQ: three?\nA: 3.\n";
  CHECK(bbh_cot_prompt(file, -1) == "Describe.\n\nQ: one?\nA: 1.\n\nQ: two?\nA: 2.\n\nQ: three?\nA: 3.");
  CHECK(bbh_cot_prompt(file, 1) == "Describe.\n\nQ: one?\nA: 1.");
  CHECK(bbh_cot_prompt(file, 0) == "Describe.");
  CHECK(bbh_cot_prompt(file, 5) == bbh_cot_prompt(file, -1));
  CHECK(bbh_cot_prompt("Describe.\n\nQ: x?\nA: y.", -1) == "Describe.\n\nQ: x?\nA: y.");  // no header
  CHECK(bbh_prompt("Describe.\n\nQ: x?\nA: y.\n", "Is it?") == "Describe.\n\nQ: x?\nA: y.\n\nQ: Is it? A:");
}

TEST_CASE("bbh task: task from the record or the file name, scored per task", "[unit][eval]") {
  const auto& task = find_task("bbh");
  TaskOptions o;
  o.prompts = fixture("cot-prompts");
  auto items = task.load(fixture("toy_logic.jsonl"), o);
  REQUIRE(items.size() == 2);
  CHECK(items[0].group == "toy_logic");
  CHECK(items[0].prompt.rfind("Decide whether a made-up statement is true.\n\nQ: Is the sun hot?", 0) == 0);
  CHECK_THAT(items[0].prompt, Contains("So the answer is yes.\n\nQ: Is the sun cold? A:"));
  auto mixed = task.load(fixture("mixed.jsonl"), o);
  REQUIRE(mixed.size() == 2);
  CHECK(mixed[1].group == "toy_choice");
  CHECK(mixed[1].prompt ==
        "Pick the option that fits (made-up fixture, no canary header).\n\nQ: Which is a pet? Options: (A) cat (B) "
        "park\nA: Let's think step by step. A cat lives at home. So the answer is (A).\n\nQ: Which is a place? "
        "Options: (A) park (B) cat A:");
  // toy_logic: right, toy_choice: wrong ("(B)" for "(A)").
  auto s = task.score(mixed, {"A dog is a dog. So the answer is no.", "So the answer is (B)."}, {});
  CHECK(s["exact_match"].get<double>() == Approx(0.5));
  CHECK(s["by_task"]["toy_logic"]["exact_match"].get<double>() == 1.0);
  CHECK(s["by_task"]["toy_choice"]["exact_match"].get<double>() == 0.0);
  CHECK(s["exact_match_task_mean"].get<double>() == Approx(0.5));

  TaskOptions none;
  CHECK_THAT(tess::test::error_of([&] { task.load(fixture("mixed.jsonl"), none); }), Contains("--task-prompts"));
  tess::test::TempDir dir;
  auto other = dir.write("web_of_lies.jsonl", "{\"input\": \"x\", \"target\": \"Yes\"}\n");
  CHECK_THAT(tess::test::error_of([&] { task.load(other, o); }),
             Contains("web_of_lies.jsonl:1") && Contains("no BBH cot prompt for task 'web_of_lies'"));
}
