// SQuAD and TriviaQA: the reference's prompts, the public layouts of the gold
// answers, and EM / F1 over a file scored by hand.
#include <catch2/catch.hpp>

#include "eval/tasks/qa.h"
#include "tests/support/test_support.h"

using namespace tess::eval::tasks;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;

namespace {
std::string fixture(const char* name) { return std::string(TESS_TEST_DATA) + "/benchmarks/" + name; }
}  // namespace

TEST_CASE("squad and triviaqa prompts: the reference's exemplars, then the passage and question", "[unit][eval]") {
  CHECK(squad_prompt("Ctx.", "Q?", 0) == "Ctx.\n\nQ?");
  auto p = squad_prompt("Ctx.", "Q?", kSquadExemplars);
  CHECK_THAT(p, StartsWith("Architecturally, the school has a Catholic character."));
  CHECK_THAT(p, Contains("Saint Bernadette Soubirous\nBurke was born in Dublin"));  // exemplars joined by one newline
  CHECK_THAT(p, EndsWith("what year?\n\n1936\nCtx.\n\nQ?"));
  CHECK(triviaqa_prompt("Q?", 0) == "Q?");
  CHECK(triviaqa_prompt("Q?", 2) ==
        "Which American-born Sinclair won the Nobel Prize for Literature in 1930?\n\n(Harry) Sinclair Lewis\nWhere in "
        "England was Dame Judi Dench born?\n\nYork, England\n\nQ?");
}

TEST_CASE("squad and triviaqa golds: HF datasets and official layouts", "[unit][eval]") {
  using J = nlohmann::json;
  CHECK(squad_golds(J::parse(R"({"answers": {"text": ["a", "b"], "answer_start": [0, 1]}})")) ==
        std::vector<std::string>{"a", "b"});
  CHECK(squad_golds(J::parse(R"({"answers": [{"text": "a", "answer_start": 0}]})")) == std::vector<std::string>{"a"});
  CHECK_THROWS_WITH(squad_golds(J::parse(R"({"answers": {"text": []}})")), Contains("holds no answer"));
  CHECK_THROWS_WITH(squad_golds(J::parse(R"({"answer": "x"})")), Contains("missing field 'answers'"));
  CHECK(triviaqa_golds(J::parse(R"({"answer": {"normalized_aliases": ["x y"], "aliases": ["X Y", "z"], "value": "X Y"}})")) ==
        std::vector<std::string>{"x y"});
  CHECK(triviaqa_golds(J::parse(R"({"Answer": {"Aliases": ["X Y"], "Value": "XY"}})")) ==
        std::vector<std::string>{"X Y", "XY"});
  CHECK_THROWS_WITH(triviaqa_golds(J::parse(R"({"answer": "x"})")), Contains("missing field 'answer'"));
}

TEST_CASE("squad task: EM and F1 of the fixture, maximised over the gold answers", "[unit][eval]") {
  const auto& task = find_task("squad");
  TaskOptions o;
  o.shots = 0;
  auto items = task.load(fixture("squad.jsonl"), o);
  REQUIRE(items.size() == 2);
  CHECK(items[0].prompt == "The cat sat on the mat in the sun.\n\nWhere did the cat sit?");
  CHECK(items[1].reference == "every morning");
  // 1: "On the mat." equals "on the mat" after normalisation: EM 1, F1 1.
  // 2: "each morning" vs "every morning": EM 0, F1 = P 1/2, R 1/2 = 0.5.
  auto s = task.score(items, {"On the mat.", "each morning"}, {});
  CHECK(s["exact_match"].get<double>() == Approx(0.5));
  CHECK(s["f1"].get<double>() == Approx(0.75));
  CHECK(s["n"] == 2);
  // The whole output is the prediction: text after the answer costs EM and F1.
  s = task.score(items, {"on the mat and more", "every morning"}, {});
  CHECK(s["exact_match"].get<double>() == Approx(0.5));
  CHECK(s["f1"].get<double>() == Approx((2.0 * (2.0 / 4.0) * 1.0 / (2.0 / 4.0 + 1.0) + 1.0) / 2.0));
  tess::test::TempDir dir;
  auto bad = dir.write("bad.jsonl", "{\"question\": \"q\", \"answers\": {\"text\": [\"a\"]}}\n");
  CHECK_THAT(tess::test::error_of([&] { task.load(bad, o); }), Contains("bad.jsonl:1") && Contains("'context'"));
}

TEST_CASE("triviaqa task: official normalisation, EM, F1 and the reference's contains-accuracy", "[unit][eval]") {
  const auto& task = find_task("triviaqa");
  auto items = task.load(fixture("triviaqa.jsonl"), TaskOptions{});
  REQUIRE(items.size() == 2);
  CHECK_THAT(items[0].prompt, EndsWith("York, England\n\nWhich band sang Yellow Submarine?"));
  // 1: "The Beatles!" -> "beatles": EM 1. 2: "Washington DC" -> "washington dc"
  // vs "washington d c" (from "Washington, D.C.") and "washington dc" (from
  // "Washington_DC"): EM 1.
  auto s = task.score(items, {"The Beatles!", "Washington DC"}, {});
  CHECK(s["exact_match"].get<double>() == 1.0);
  CHECK(s["f1"].get<double>() == 1.0);
  // 1: "I think the Beatles did" contains "beatles": EM 0, F1 P 1/4 R 1 = 0.4.
  // 2: "Paris": nothing.
  s = task.score(items, {"I think the Beatles did", "Paris"}, {});
  CHECK(s["exact_match"].get<double>() == 0.0);
  CHECK(s["f1"].get<double>() == Approx(0.2));
  CHECK(s["contains"].get<double>() == Approx(0.5));
}
