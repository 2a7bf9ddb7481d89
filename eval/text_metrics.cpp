#include "eval/text_metrics.h"

#include <cctype>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "core/util/error.h"

namespace tess::eval {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

AnswerExtraction parse_answer_extraction(const std::string& name) {
  if (name == "full") return AnswerExtraction::FullString;
  if (name == "last_number") return AnswerExtraction::LastNumber;
  if (name == "first_line") return AnswerExtraction::FirstLine;
  throw Error(fmt::format("unknown answer extraction '{}' (expected full, last_number or first_line)", name));
}

std::string extract_answer(const std::string& text, AnswerExtraction how) {
  switch (how) {
    case AnswerExtraction::FullString:
      return trim(text);
    case AnswerExtraction::FirstLine: {
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line))
        if (auto t = trim(line); !t.empty()) return t;
      return "";
    }
    case AnswerExtraction::LastNumber: {
      // Scan for maximal runs of [-]digits[,digits][.digits]; keep the last.
      std::string last;
      for (size_t i = 0; i < text.size();) {
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
          ++i;
          continue;
        }
        size_t start = i;
        bool neg = start > 0 && text[start - 1] == '-';
        std::string num;
        while (i < text.size()) {
          char c = text[i];
          if (std::isdigit(static_cast<unsigned char>(c))) {
            num += c;
            ++i;
          } else if ((c == ',' || c == '.') && i + 1 < text.size() &&
                     std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
            if (c == '.') num += c;
            ++i;
          } else {
            break;
          }
        }
        last = (neg ? "-" : "") + num;
      }
      return last;
    }
  }
  return text;
}

bool exact_match(const std::string& output, const std::string& reference, AnswerExtraction how) {
  auto got = extract_answer(output, how);
  return !got.empty() && got == extract_answer(reference, how);
}

double distinct_n(const std::vector<std::string>& texts, int n) {
  std::set<std::vector<std::string>> distinct;
  size_t total = 0;
  for (const auto& t : texts) {
    std::istringstream in(t);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    for (size_t i = 0; i + static_cast<size_t>(n) <= words.size(); ++i) {
      distinct.emplace(words.begin() + static_cast<long>(i), words.begin() + static_cast<long>(i) + n);
      ++total;
    }
  }
  return total ? static_cast<double>(distinct.size()) / static_cast<double>(total) : 0.0;
}

}  // namespace tess::eval
