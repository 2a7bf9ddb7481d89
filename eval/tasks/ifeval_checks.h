#pragma once
// The verifiable-instruction checkers of IFEval (Zhou et al. 2023,
// google-research/instruction_following_eval, instructions.py and its
// registry), one per instruction id, re-stated from the official Python.
// Three need tools that do not exist offline here:
//   language:response_language          needs a language identifier
//                                       (langdetect): unsupported, reported
//                                       separately and never scored
//   change_case:english_capital,        the case test is exact; the "and the
//   change_case:english_lowercase       text is English" half (langdetect) is
//                                       not checked: approximated
//   length_constraints:number_sentences the official counter is NLTK's punkt
//                                       model; here the official code's own
//                                       rule-based split_into_sentences:
//                                       approximated
//   change_case:capital_word_frequency  NLTK word_tokenize; here whitespace
//                                       tokens with English contractions split
//                                       off (DON'T -> DO N'T): approximated
// The rest follow the official code exactly (its regular expressions written
// out by hand; keyword arguments matched literally, not as regexes).
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tess::eval::tasks {

enum class CheckSupport { Exact, Approximate, Unsupported };

using Checker = std::function<bool(const std::string& response)>;

// Every instruction id of the official registry.
const std::vector<std::string>& ifeval_instruction_ids();
// nullopt: not an IFEval instruction id.
std::optional<CheckSupport> ifeval_support(const std::string& id);
// The checker of `id` with its keyword arguments (null values ignored, as
// the HF dataset's rows carry every key); `prompt` is the record's prompt.
// Throws data::RecordError for an unknown id or missing/invalid arguments;
// an unsupported id yields an empty function.
Checker make_ifeval_checker(const std::string& id, const nlohmann::json& kwargs, const std::string& prompt);

// Building blocks, exposed for tests.
int64_t ifeval_count_words(const std::string& text);                   // \w+ runs
std::vector<std::string> ifeval_split_sentences(const std::string& text);  // split_into_sentences

}  // namespace tess::eval::tasks
