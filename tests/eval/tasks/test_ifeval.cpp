// IFEval: every checker of the official registry with a response that
// follows its instruction and one that does not; loose against strict; the
// prompt- and instruction-level accuracies of a small file counted by hand.
#include <catch2/catch.hpp>

#include <set>

#include "eval/tasks/ifeval.h"
#include "eval/tasks/ifeval_checks.h"
#include "tests/support/test_support.h"

using namespace tess::eval::tasks;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

struct Case {
  const char* id;
  const char* kwargs;
  std::string pass, fail;
};

bool check(const std::string& id, const std::string& kwargs, const std::string& response, const std::string& prompt = "") {
  auto c = make_ifeval_checker(id, json::parse(kwargs), prompt);
  REQUIRE(c);
  return c(response);
}

}  // namespace

TEST_CASE("ifeval checkers: one following and one breaking response for every instruction", "[unit][eval]") {
  const std::vector<Case> cases = {
      {"keywords:existence", R"({"keywords": ["sun", "Moon"]})", "The moon and the SUN.", "The moon alone."},
      {"keywords:frequency", R"({"keyword": "cat", "frequency": 3, "relation": "at least"})", "Cat, cat and CAT.",
       "cat cat"},
      {"keywords:frequency", R"({"keyword": "cat", "frequency": 2, "relation": "less than"})", "one cat", "cat cat"},
      {"keywords:forbidden_words", R"({"forbidden_words": ["red", "blue"]})", "A redwood and bluebird.",
       "It is Red."},
      {"keywords:letter_frequency", R"({"letter": "Z", "let_frequency": 2, "let_relation": "at least"})",
       "Zoos buzz", "Zoo"},
      {"keywords:letter_frequency", R"({"letter": "#", "let_frequency": 2, "let_relation": "at least"})",
       "#one #two", "#one"},
      {"length_constraints:number_sentences", R"({"num_sentences": 3, "relation": "less than"})",
       "Dr. Smith came. He left.", "One. Two. Three."},
      {"length_constraints:number_paragraphs", R"({"num_paragraphs": 2})", "First.\n***\nSecond.\n***",
       "First.\n***\n\n***\nSecond."},
      {"length_constraints:number_words", R"({"num_words": 4, "relation": "at least"})", "It's a well-made hat",
       "Only three words"},
      {"length_constraints:nth_paragraph_first_word",
       R"({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"})", "Start here.\n\n\"Then, we end.",
       "Start here.\n\nNow we end."},
      {"detectable_content:number_placeholders", R"({"num_placeholders": 2})", "Dear [name], at [address].",
       "Dear [name\n], at [address]."},
      {"detectable_content:postscript", R"({"postscript_marker": "P.S."})", "Hi.\np. s. see you", "Hi.\nPS see you"},
      {"detectable_content:postscript", R"({"postscript_marker": "P.P.S"})", "Hi.\nP.P.S more", "Hi.\nP.S. more"},
      {"detectable_format:number_bullet_lists", R"({"num_bullets": 3})", "List:\n* one\n  * two\n- three\n**bold**",
       "* one\n* two"},
      {"detectable_format:constrained_response", "{}", "Well. My answer is maybe.", "My answer is perhaps."},
      {"detectable_format:number_highlighted_sections", R"({"num_highlights": 2})", "*one* and **two**",
       "*one* and ** ** and *\n*"},
      {"detectable_format:multiple_sections", R"({"section_spliter": "Section", "num_sections": 2})",
       "Section 1\nhi\nSection2\nbye", "Section 1\nhi\nSection two"},
      {"detectable_format:json_format", "{}", "```json\n{\"a\": [1, 2]}\n```", "{\"a\": 1,}"},
      {"detectable_format:title", "{}", "<<My Title>>\ntext", "<< >>\n<<\nx>>"},
      {"combination:two_responses", "{}", "First answer.\n******\nSecond answer.", "Same.\n******\nSame."},
      {"combination:repeat_prompt", R"({"prompt_to_repeat": "Write a poem."})", "write a poem. Roses are red.",
       "A poem: roses are red."},
      {"startend:end_checker", R"({"end_phrase": "Any other questions?"})", "Done. Any other questions?\"",
       "Any other questions? Yes."},
      {"change_case:capital_word_frequency", R"({"capital_frequency": 3, "capital_relation": "at least"})",
       "I DON'T KNOW", "I do not KNOW"},
      {"change_case:english_capital", "{}", "THE WEATHER IS NICE AND THE PARK IS OPEN", "HELLO, World!"},
      {"change_case:english_lowercase", "{}", "hello, world!", "hello, World!"},
      {"language:response_language", R"({"language": "de"})", "Die Vögel singen, und der Morgen ist schön.",
       "The birds sing and the morning is fine."},
      {"punctuation:no_comma", "{}", "No commas here.", "One, two."},
      {"startend:quotation", "{}", " \"quoted\"\n", "\"not quoted"},
  };
  std::set<std::string> covered;
  for (const auto& c : cases) {
    INFO(c.id << " " << c.kwargs);
    CHECK(check(c.id, c.kwargs, c.pass));
    CHECK_FALSE(check(c.id, c.kwargs, c.fail));
    covered.insert(c.id);
  }
  // Every instruction of the registry has its case above.
  for (const auto& id : ifeval_instruction_ids()) CHECK(covered.count(id) == 1);
  CHECK(ifeval_instruction_ids().size() == 25);
  CHECK(ifeval_support("language:response_language") == CheckSupport::Approximate);
  // The "and it is English" half of the change_case checkers; no letters to
  // identify passes, as langdetect's exception does in the official code.
  CHECK_FALSE(check("change_case:english_lowercase", "{}", "die vögel singen und der morgen ist schön"));
  CHECK_FALSE(check("change_case:english_capital", "{}", "ПТИЦЫ ПОЮТ"));
  CHECK(check("language:response_language", R"({"language": "ko"})", "123 !?"));
}

TEST_CASE("ifeval checker arguments: null entries ignored, bad ones named", "[unit][eval]") {
  CHECK(check("punctuation:no_comma", R"({"num_words": null, "keyword": null})", "ok"));
  CHECK_THROWS_WITH(make_ifeval_checker("length_constraints:number_words", json::parse(R"({"num_words": 5})"), ""),
                    Contains("length_constraints:number_words") && Contains("\"relation\""));
  CHECK_THROWS_WITH(make_ifeval_checker("length_constraints:number_words",
                                        json::parse(R"({"num_words": 5, "relation": "at most"})"), ""),
                    Contains("\"less than\" or \"at least\""));
  CHECK_THROWS_WITH(make_ifeval_checker("keywords:sparkle", json::object(), ""),
                    Contains("unknown IFEval instruction id 'keywords:sparkle'"));
}

TEST_CASE("ifeval word and sentence counts: word-character runs and the official rule-based splitter", "[unit][eval]") {
  CHECK(ifeval_count_words("It's a well-made hat, isn't it?") == 9);
  CHECK(ifeval_count_words("caf\u00e9 \u2014 na\u00efve") == 2);
  CHECK(ifeval_split_sentences("Mr. Smith met Dr. Jones. They talked!") ==
        std::vector<std::string>{"Mr. Smith met Dr. Jones.", "They talked!"});
  CHECK(ifeval_split_sentences("It cost 3.5 dollars. Wait... what?") ==
        std::vector<std::string>{"It cost 3.5 dollars.", "Wait...", "what?"});
  CHECK(ifeval_split_sentences("Visit example.com today. Go.").size() == 2);
}

TEST_CASE("ifeval loose variants: first/last lines dropped, asterisks removed", "[unit][eval]") {
  auto v = ifeval_loose_variants("Sure:\n**body**\nbye");
  REQUIRE(v.size() == 8);
  CHECK(v[0] == "Sure:\n**body**\nbye");
  CHECK(v[1] == "Sure:\nbody\nbye");
  CHECK(v[2] == "**body**\nbye");
  CHECK(v[3] == "Sure:\n**body**");
  CHECK(v[4] == "**body**");
  CHECK(v[5] == "body\nbye");
  CHECK(v[6] == "Sure:\nbody");
  CHECK(v[7] == "body");
  // Loose passes where strict fails: a chatty first line before the quote,
  // and markdown asterisks after the end phrase.
  auto record = json::parse(R"({"prompt": "p", "instruction_id_list": ["startend:quotation", "startend:end_checker"],
                                "kwargs": [{}, {"end_phrase": "Bye."}]})");
  auto verdict = ifeval_judge(record, "Here you go:\n\"hello. Bye.**\"");
  CHECK(verdict.strict == std::vector<bool>{false, false});
  CHECK(verdict.loose == std::vector<bool>{true, true});
  // An empty response follows nothing, even "no commas".
  auto empty = ifeval_judge(json::parse(R"({"prompt": "p", "instruction_id_list": ["punctuation:no_comma"]})"), "  ");
  CHECK(empty.strict == std::vector<bool>{false});
  CHECK(empty.loose == std::vector<bool>{false});
}

TEST_CASE("ifeval task: prompt- and instruction-level accuracy, approximated checkers counted", "[unit][eval]") {
  const auto& task = find_task("ifeval");
  auto items = task.load(std::string(TESS_TEST_DATA) + "/benchmarks/ifeval.jsonl", TaskOptions{});
  REQUIRE(items.size() == 4);
  CHECK(items[0].prompt == "Write about the sun. Use fewer than 1000 words.");
  // 1 (words < 1000): followed.
  // 2 (>= 500 words; no comma): "cats, cats" breaks both.
  // 3 (German, approximated; no comma): followed.
  // 4 (ends with "Bye."; fewer than 1 'z'): "Hi!\nBye.*" fails strict (ends
  //   "*"), passes loose ('*' removed); no 'z': followed.
  auto s = task.score(items, {"the sun is warm", "cats, cats", "Die Vögel singen am Morgen", "Hi!\nBye.*"}, {});
  CHECK(s["n"] == 4);
  CHECK(s["instructions"] == 7);
  CHECK(s["prompt_strict"].get<double>() == Approx(2.0 / 4.0));
  CHECK(s["prompt_loose"].get<double>() == Approx(3.0 / 4.0));
  CHECK(s["instruction_strict"].get<double>() == Approx(4.0 / 7.0));
  CHECK(s["instruction_loose"].get<double>() == Approx(5.0 / 7.0));
  CHECK(s["approximated"]["language:response_language"] == 1);
  CHECK(s["by_instruction"]["punctuation:no_comma"]["strict"].get<double>() == Approx(0.5));
  CHECK(s["by_instruction"]["startend:end_checker"]["loose"].get<double>() == 1.0);

  tess::test::TempDir dir;
  auto bad = dir.write("bad.jsonl", "{\"key\": 1, \"prompt\": \"p\", \"instruction_id_list\": [\"keywords:frequency\"], "
                                    "\"kwargs\": [{\"keyword\": \"x\"}]}\n");
  CHECK_THAT(tess::test::error_of([&] { task.load(bad, TaskOptions{}); }),
             Contains("bad.jsonl:1") && Contains("keywords:frequency") && Contains("\"frequency\""));
}
