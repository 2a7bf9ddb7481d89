#include "eval/tasks/normalize.h"

#include <algorithm>
#include <map>

#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace {

// `re.sub(r"\b(a|an|the)\b", " ", text)`: an article is a maximal run of \w
// characters equal to one of the three words.
std::u32string remove_articles(const std::u32string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    if (!is_word_char(text[i])) {
      out.push_back(text[i++]);
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_word_char(text[j])) ++j;
    auto word = text.substr(i, j - i);
    if (word == U"a" || word == U"an" || word == U"the") out.push_back(U' ');
    else out += word;
    i = j;
  }
  return out;
}

std::string white_space_fix(const std::u32string& text) {
  std::string out;
  for (const auto& w : split_whitespace(utf8_encode(text))) out += (out.empty() ? "" : " ") + w;
  return out;
}

}  // namespace

std::string squad_normalize(const std::string& text) {
  std::u32string kept;
  for (char32_t c : utf8_decode(text)) {
    c = to_lower(c);
    if (!is_ascii_punct(c)) kept.push_back(c);
  }
  return white_space_fix(remove_articles(kept));
}

std::string triviaqa_normalize(const std::string& text) {
  std::u32string spaced;
  for (char32_t c : utf8_decode(text)) {
    if (c == U'_') c = U' ';
    c = to_lower(c);
    bool punct = is_ascii_punct(c) || c == 0x2018 || c == 0x2019 || c == 0xB4;
    spaced.push_back(punct ? U' ' : c);
  }
  return white_space_fix(remove_articles(spaced));
}

bool normalized_exact_match(const std::string& prediction, const std::string& gold, Normalizer normalize) {
  return normalize(prediction) == normalize(gold);
}

double token_f1(const std::string& prediction, const std::string& gold, Normalizer normalize) {
  auto pred = split_whitespace(normalize(prediction));
  auto ref = split_whitespace(normalize(gold));
  std::map<std::string, int64_t> counts;
  for (const auto& t : ref) ++counts[t];
  int64_t same = 0;
  for (const auto& t : pred) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0.0;
  double precision = static_cast<double>(same) / static_cast<double>(pred.size());
  double recall = static_cast<double>(same) / static_cast<double>(ref.size());
  return 2 * precision * recall / (precision + recall);
}

QaScore best_over_golds(const std::string& prediction, const std::vector<std::string>& golds, Normalizer normalize) {
  QaScore best;
  for (const auto& g : golds) {
    best.exact_match = std::max(best.exact_match, normalized_exact_match(prediction, g, normalize) ? 1.0 : 0.0);
    best.f1 = std::max(best.f1, token_f1(prediction, g, normalize));
  }
  return best;
}

}  // namespace tess::eval::tasks
