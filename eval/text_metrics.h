#pragma once
// Text-level metrics of generated answers: answer extraction for exact match
// and the dist-n diversity of a set of outputs.
#include <string>
#include <vector>

namespace tess::eval {

enum class AnswerExtraction {
  FullString,  // the whole answer, whitespace-trimmed
  LastNumber,  // the last number in the text (GSM8k convention), commas dropped
  FirstLine,   // the first non-empty line, trimmed
};

AnswerExtraction parse_answer_extraction(const std::string& name);  // "full"|"last_number"|"first_line"
std::string extract_answer(const std::string& text, AnswerExtraction how);
bool exact_match(const std::string& output, const std::string& reference, AnswerExtraction how);

// dist-n: distinct n-grams / all n-grams over whitespace tokens of all texts
// (0 when there is no n-gram).
double distinct_n(const std::vector<std::string>& texts, int n);

}  // namespace tess::eval
