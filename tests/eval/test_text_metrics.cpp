#include <catch2/catch.hpp>

#include "eval/text_metrics.h"

using namespace tess::eval;

TEST_CASE("answer extraction: full string, last number (GSM8k), first line", "[unit][eval]") {
  CHECK(extract_answer("  42 \n", AnswerExtraction::FullString) == "42");
  CHECK(extract_answer("So 3 + 4 = 7, and the total is 1,234.", AnswerExtraction::LastNumber) == "1234");
  CHECK(extract_answer("it is -5 degrees", AnswerExtraction::LastNumber) == "-5");
  CHECK(extract_answer("pi is 3.14", AnswerExtraction::LastNumber) == "3.14");
  CHECK(extract_answer("no digits", AnswerExtraction::LastNumber).empty());
  CHECK(extract_answer("\n\n  first \nsecond", AnswerExtraction::FirstLine) == "first");
  CHECK(exact_match("The answer is 12.", "#### 12", AnswerExtraction::LastNumber));
  CHECK_FALSE(exact_match("", "", AnswerExtraction::FullString));  // empty never matches
}

TEST_CASE("dist-n counts distinct n-grams over all outputs", "[unit][eval]") {
  std::vector<std::string> texts{"a b a b", "a b c"};
  // unigrams: a b a b a b c -> 3 distinct of 7
  CHECK(distinct_n(texts, 1) == Approx(3.0 / 7.0));
  // bigrams: ab ba ab | ab bc -> {ab, ba, bc} = 3 of 5
  CHECK(distinct_n(texts, 2) == Approx(3.0 / 5.0));
  CHECK(distinct_n({"x"}, 2) == 0.0);
}
