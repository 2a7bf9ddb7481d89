// SQuAD v1.1 and TriviaQA answer normalisation, EM and token F1, against
// cases worked out by hand from the official scripts.
#include <catch2/catch.hpp>

#include "eval/tasks/normalize.h"
#include "eval/tasks/unicode.h"

using namespace tess::eval::tasks;

TEST_CASE("squad_normalize: lower case, punctuation dropped, articles dropped, whitespace collapsed", "[unit][eval]") {
  CHECK(squad_normalize("The Cat's  hat!") == "cats hat");
  CHECK(squad_normalize("An apple a day") == "apple day");
  CHECK(squad_normalize("theater, anthem and a.") == "theater anthem and");  // articles only as whole words
  CHECK(squad_normalize("A.B.") == "ab");                                     // punctuation goes first: "ab" is no article
  CHECK(squad_normalize("  hello\t\n world  ") == "hello world");
  CHECK(squad_normalize("hello\u00a0world") == "hello world");  // Python's split() splits on no-break spaces
  CHECK(squad_normalize("\u00c9COLE") == "\u00e9cole");
  CHECK(squad_normalize("U.S._Army") == "usarmy");  // '_' is punctuation: dropped, not a space
  CHECK(squad_normalize("$1,000.00") == "100000");
  // Typographic quotes are not ASCII punctuation: they stay, and still end
  // the word "the".
  CHECK(squad_normalize("\u2018The\u2019 Beatles") == "\u2018 \u2019 beatles");
  CHECK(squad_normalize("the_end") == "theend");
}

TEST_CASE("triviaqa_normalize: underscores and punctuation become spaces, typographic quotes count", "[unit][eval]") {
  CHECK(triviaqa_normalize("U.S._Army") == "u s army");
  CHECK(triviaqa_normalize("\u2018The\u2019 Beatles") == "beatles");
  CHECK(triviaqa_normalize("Washington, D.C.") == "washington d c");
  CHECK(triviaqa_normalize("the_end") == "end");
  CHECK(triviaqa_normalize("Rock `n\u00b4 Roll") == "rock n roll");
  CHECK(triviaqa_normalize("  An   Officer and a Gentleman ") == "officer and gentleman");
}

TEST_CASE("token F1 and exact match: overlap of normalised bags of tokens", "[unit][eval]") {
  // pred [cat sat on mat], gold [cat on mat]: 3 shared, P 3/4, R 1, F1 6/7.
  CHECK(token_f1("the cat sat on the mat", "a cat on a mat", squad_normalize) == Approx(6.0 / 7.0));
  // Duplicates count once per gold occurrence: P 1/3, R 1/2, F1 0.4.
  CHECK(token_f1("dog dog dog", "dog cat", squad_normalize) == Approx(0.4));
  CHECK(token_f1("bird", "cat", squad_normalize) == 0.0);
  CHECK(token_f1("the", "a", squad_normalize) == 0.0);  // nothing shared: 0 even though both are empty
  CHECK(normalized_exact_match("The", "a", squad_normalize));  // ... while EM compares the empty strings
  CHECK(normalized_exact_match("Paris.", "paris", squad_normalize));
  CHECK_FALSE(normalized_exact_match("Paris, France", "Paris", squad_normalize));

  auto s = best_over_golds("Paris", {"paris france", "Paris."}, squad_normalize);
  CHECK(s.exact_match == 1.0);
  CHECK(s.f1 == 1.0);
  s = best_over_golds("in Paris, France", {"Paris", "France"}, squad_normalize);
  CHECK(s.exact_match == 0.0);
  CHECK(s.f1 == Approx(0.5));  // P 1/3, R 1 against either
  // EM and F1 are maximised separately.
  s = best_over_golds("dog cat", {"dog", "dog cat bird"}, squad_normalize);
  CHECK(s.exact_match == 0.0);
  CHECK(s.f1 == Approx(0.8));  // vs "dog cat bird": P 1, R 2/3
  CHECK(best_over_golds("x", {}, squad_normalize).f1 == 0.0);
}

TEST_CASE("unicode helpers follow Python's str methods", "[unit][eval]") {
  CHECK(utf8_encode(utf8_decode("a\u00e9\u4e2d\U0001F600")) == "a\u00e9\u4e2d\U0001F600");
  CHECK(utf8_decode("\xff") == std::u32string(1, U'\uFFFD'));
  CHECK(is_upper_text("HELLO, WORLD 42"));
  CHECK_FALSE(is_upper_text("HELLo"));
  CHECK_FALSE(is_upper_text("42 !"));  // no cased character
  CHECK(is_lower_text("\u00e9t\u00e9 \u0434\u0430"));
  CHECK_FALSE(is_lower_text("\u00c9t\u00e9"));
  CHECK(split_whitespace(" a\u2003b\nc ") == std::vector<std::string>{"a", "b", "c"});
  CHECK(strip("\u3000 x \n") == "x");
}
