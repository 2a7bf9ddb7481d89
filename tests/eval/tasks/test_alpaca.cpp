// AlpacaEval-style win rate against reference outputs and the text statistics.
#include <catch2/catch.hpp>

#include <cmath>

#include "eval/tasks/alpaca.h"
#include "eval/tasks/unicode.h"
#include "tests/support/test_support.h"

using namespace tess::eval::tasks;
using Catch::Matchers::Contains;

namespace {
std::string fixture(const char* name) { return std::string(TESS_TEST_DATA) + "/benchmarks/" + name; }
}  // namespace

TEST_CASE("win_rate: wins count 1, ties (equal up to float noise) count half", "[unit][eval]") {
  auto w = win_rate({2.0, 1.0, 3.0, -1.0}, {1.0, 2.0, 3.0 + 1e-7, -1.0});
  CHECK(w.wins == 1);
  CHECK(w.losses == 1);
  CHECK(w.ties == 2);
  CHECK(w.rate() == Approx(0.5));
  CHECK(win_rate({5, 5, 5}, {1, 1, 9}).rate() == Approx(2.0 / 3.0));
  CHECK(win_rate({1.001}, {1.0}).wins == 1);  // beyond the tolerance
  CHECK(win_rate({}, {}).rate() == 0.0);
}

TEST_CASE("text statistics: word entropy in bits, mean length, dist-n", "[unit][eval]") {
  CHECK(word_entropy("a a b b") == Approx(1.0));
  CHECK(word_entropy("a b c d") == Approx(2.0));
  CHECK(word_entropy("x x x") == 0.0);
  CHECK(word_entropy("") == 0.0);
  // "a a a b": p = 3/4, 1/4.
  CHECK(word_entropy("a a a b") == Approx(-(0.75 * std::log2(0.75) + 0.25 * std::log2(0.25))));
  auto s = text_stats({"a a b b", "c d"});
  CHECK(s.mean_words == Approx(3.0));
  CHECK(s.entropy == Approx(1.0));  // (1 + 1) / 2
  CHECK(s.dist[0] == Approx(4.0 / 6.0));
  CHECK(s.dist[1] == Approx(4.0 / 4.0));  // a a, a b, b b, c d
}

TEST_CASE("alpaca_eval task: references from the records or a reference file, judged pairwise", "[unit][eval]") {
  const auto& task = find_task("alpaca_eval");
  CHECK(task.needs_judge());
  auto items = task.load(fixture("alpaca_eval.jsonl"), TaskOptions{});
  REQUIRE(items.size() == 2);
  CHECK(items[0].prompt == "Say something about the sun.");
  CHECK(items[0].reference == "the sun is hot");
  TaskOptions o;
  o.reference_outputs = fixture("alpaca_reference.jsonl");
  items = task.load(fixture("alpaca_eval.jsonl"), o);
  CHECK(items[0].reference == "it is a star");  // matched by instruction, not by line
  CHECK(items[1].reference == "a dog");
  // A judge that prefers longer answers: "the sun is warm today" (5 words) beats
  // "it is a star" (4); "a cat" ties "a dog".
  Judge by_length = [](const std::vector<std::string>&, const std::vector<std::string>& responses) {
    std::vector<double> out;
    for (const auto& r : responses) out.push_back(static_cast<double>(split_whitespace(r).size()));
    return out;
  };
  auto s = task.score(items, {"the sun is warm today", "a cat"}, by_length);
  CHECK(s["wins"] == 1);
  CHECK(s["ties"] == 1);
  CHECK(s["losses"] == 0);
  CHECK(s["win_rate"].get<double>() == Approx(0.75));
  CHECK(s["mean_reward"].get<double>() == Approx(3.5));
  CHECK(s["mean_reward_reference"].get<double>() == Approx(3.0));
  CHECK(s["mean_words"].get<double>() == Approx(3.5));
  CHECK(s["mean_words_reference"].get<double>() == Approx(3.0));
  CHECK(s["dist_1"].get<double>() == 1.0);  // the sun is warm today a cat: 7 distinct of 7
  CHECK_THAT(tess::test::error_of([&] { task.score(items, {"x", "y"}, {}); }), Contains("--reward-model"));

  tess::test::TempDir dir;
  auto partial = dir.write("ref.jsonl", "{\"instruction\": \"Name a pet.\", \"output\": \"a dog\"}\n");
  o.reference_outputs = partial;
  CHECK_THAT(tess::test::error_of([&] { task.load(fixture("alpaca_eval.jsonl"), o); }),
             Contains("alpaca_eval.jsonl:1") && Contains("no reference output for this instruction"));
  auto no_output = dir.write("eval.jsonl", "{\"instruction\": \"Hi\"}\n");
  CHECK_THAT(tess::test::error_of([&] { task.load(no_output, TaskOptions{}); }), Contains("--reference-outputs"));
}
