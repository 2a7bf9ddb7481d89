// MMLU: the original harness's prompt, letter extraction, accuracy per subject.
#include <catch2/catch.hpp>

#include "eval/tasks/mmlu.h"
#include "tests/support/test_support.h"

using namespace tess::eval::tasks;
using Catch::Matchers::Contains;

TEST_CASE("mmlu prompt and letter extraction", "[unit][eval]") {
  CHECK(mmlu_prompt("high_school_physics", "What falls?", {"apples", "nothing"}) ==
        "The following are multiple choice questions (with answers) about  high school physics.\n\nWhat falls?\nA. "
        "apples\nB. nothing\nAnswer:");
  CHECK(mmlu_extract(" B. Paris", 4) == "B");
  CHECK(mmlu_extract("D", 4) == "D");
  CHECK(mmlu_extract("E", 4) == "");       // not one of four letters
  CHECK(mmlu_extract("The answer is B", 4) == "");  // the first character decides, as in the reference
  CHECK(mmlu_extract("b", 4) == "");
  CHECK(mmlu_extract("   ", 4) == "");
}

TEST_CASE("mmlu task: loads index or letter answers, accuracy overall and per subject", "[unit][eval]") {
  const auto& task = find_task("mmlu");
  TaskOptions o;
  auto items = task.load(std::string(TESS_TEST_DATA) + "/benchmarks/mmlu.jsonl", o);
  REQUIRE(items.size() == 3);
  CHECK(items[0].reference == "B");
  CHECK(items[2].reference == "C");  // "answer": "C"
  CHECK(items[0].choices == std::vector<std::string>{"A", "B", "C", "D"});
  CHECK(items[0].answer_index == 1);
  CHECK(items[2].group == "animals");
  CHECK_FALSE(task.ranks_choices(o));
  o.likelihood = true;
  CHECK(task.ranks_choices(o));
  // maths: right, wrong ("no letter"); animals: right.
  auto s = task.score(items, {"B", "I think 9", "C. cat"}, {});
  CHECK(s["accuracy"].get<double>() == Approx(2.0 / 3.0));
  CHECK(s["no_letter"] == 1);
  CHECK(s["by_subject"]["elementary_mathematics"]["accuracy"].get<double>() == Approx(0.5));
  CHECK(s["by_subject"]["animals"]["accuracy"].get<double>() == 1.0);
  CHECK(s["accuracy_subject_mean"].get<double>() == Approx(0.75));

  tess::test::TempDir dir;
  auto bad = dir.write("bad.jsonl", "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2, \"subject\": \"x\"}\n");
  CHECK_THAT(tess::test::error_of([&] { task.load(bad, o); }),
             Contains("bad.jsonl:1") && Contains("not a choice index (0..1)"));
  auto no_subject = dir.write("virology.jsonl", "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n");
  CHECK(task.load(no_subject, o)[0].group == "virology");
  o.shots = 5;
  CHECK_THAT(tess::test::error_of([&] { task.load(no_subject, o); }), Contains("zero-shot"));
}
