#pragma once
// The verifiable-instruction checkers of IFEval (Zhou et al. 2023,
// google-research/instruction_following_eval, instructions.py and its
// registry), one per instruction id, re-stated from the official Python.
// Five ids need tools that do not exist offline here and are approximated:
//   language:response_language,         langdetect is replaced by tess's own
//   change_case:english_capital,        identifier of IFEval's 30 languages
//   change_case:english_lowercase       (language_id.h); the case test is exact
//   length_constraints:number_sentences the official counter is NLTK's punkt
//                                       model; here the official code's own
//                                       rule-based split_into_sentences
//   change_case:capital_word_frequency  NLTK word_tokenize; here whitespace
//                                       tokens with English contractions split
//                                       off (DON'T -> DO N'T)
// The rest follow the official code exactly (its regular expressions written
// out by hand; keyword arguments matched literally, not as regexes).
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tess::eval::tasks {

enum class CheckSupport { Exact, Approximate };

using Checker = std::function<bool(const std::string& response)>;

// Every instruction id of the official registry.
const std::vector<std::string>& ifeval_instruction_ids();
// nullopt: not an IFEval instruction id.
std::optional<CheckSupport> ifeval_support(const std::string& id);
// The checker of `id` with its keyword arguments (null values ignored, as
// the HF dataset's rows carry every key); `prompt` is the record's prompt.
// Throws data::RecordError for an unknown id or missing/invalid arguments.
Checker make_ifeval_checker(const std::string& id, const nlohmann::json& kwargs, const std::string& prompt);

// Building blocks, exposed for tests.
int64_t ifeval_count_words(const std::string& text);                   // \w+ runs
std::vector<std::string> ifeval_split_sentences(const std::string& text);  // split_into_sentences

}  // namespace tess::eval::tasks
