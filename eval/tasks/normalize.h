#pragma once
// Answer normalisation and the EM / token-F1 scores of the official SQuAD
// v1.1 and TriviaQA evaluation scripts (evaluate-v1.1.py,
// triviaqa_evaluation.py), re-stated so that a number here means what the
// papers' numbers mean.
#include <string>
#include <vector>

namespace tess::eval::tasks {

// SQuAD v1.1: lower case, drop ASCII punctuation, drop the articles a/an/the
// as whole words, collapse whitespace.
std::string squad_normalize(const std::string& text);
// TriviaQA: underscores to spaces, lower case, punctuation (ASCII and ‘ ’ ´)
// to spaces (not dropped: "u.s." -> "u s"), drop articles, collapse whitespace.
std::string triviaqa_normalize(const std::string& text);

using Normalizer = std::string (*)(const std::string&);

// Exact match and F1 of the normalised whitespace tokens (bag-of-tokens
// overlap; 0 when nothing overlaps, as the scripts do).
bool normalized_exact_match(const std::string& prediction, const std::string& gold, Normalizer normalize);
double token_f1(const std::string& prediction, const std::string& gold, Normalizer normalize);

struct QaScore {
  double exact_match = 0;  // 0 or 1
  double f1 = 0;
};
// Each score maximised over the gold answers separately
// (metric_max_over_ground_truths); no gold answer scores 0.
QaScore best_over_golds(const std::string& prediction, const std::vector<std::string>& golds, Normalizer normalize);

}  // namespace tess::eval::tasks
