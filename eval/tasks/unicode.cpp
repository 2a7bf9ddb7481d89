#include "eval/tasks/unicode.h"

#include "core/util/utf8.h"

namespace tess::eval::tasks {

std::u32string utf8_decode(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto b = static_cast<unsigned char>(text[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xE ? 2 : (b >> 3) == 0x1E ? 3 : -1;
    if (extra < 0 || i + static_cast<size_t>(extra) >= text.size()) {
      out.push_back(U'\uFFFD');
      ++i;
      continue;
    }
    char32_t c = extra == 0 ? b : extra == 1 ? (b & 0x1F) : extra == 2 ? (b & 0x0F) : (b & 0x07);
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      auto cont = static_cast<unsigned char>(text[i + static_cast<size_t>(k)]);
      if ((cont & 0xC0) != 0x80) ok = false;
      c = (c << 6) | (cont & 0x3F);
    }
    if (!ok) {
      out.push_back(U'\uFFFD');
      ++i;
      continue;
    }
    out.push_back(c);
    i += static_cast<size_t>(extra) + 1;
  }
  return out;
}

std::string utf8_encode(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) util::append_utf8(out, c);
  return out;
}

namespace {

// Latin Extended-A alternates upper/lower in pairs; which of the pair is upper
// flips at U+0138 and U+0149.
bool latin_ext_a_upper(char32_t c) {
  if (c >= 0x100 && c <= 0x137) return c % 2 == 0;
  if (c >= 0x139 && c <= 0x148) return c % 2 == 1;
  if (c >= 0x14A && c <= 0x177) return c % 2 == 0;
  if (c >= 0x179 && c <= 0x17E) return c % 2 == 1;
  return false;
}
bool latin_ext_a_lower(char32_t c) {
  if (c >= 0x101 && c <= 0x137) return c % 2 == 1;
  if (c >= 0x13A && c <= 0x148) return c % 2 == 0;
  if (c >= 0x14B && c <= 0x177) return c % 2 == 1;
  if (c >= 0x17A && c <= 0x17E) return c % 2 == 0;
  return false;
}

}  // namespace

char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
  if (latin_ext_a_upper(c)) return c + 1;
  if (c == 0x130) return 'i';
  if (c == 0x178) return 0xFF;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 0x3F;
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 0x20;
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  return c;
}

char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 0x20;
  if (c == 0xFF) return 0x178;
  if (latin_ext_a_lower(c)) return c - 1;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 0x25;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 0x3F;
  if (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) return c - 0x20;
  if (c == 0x3C2) return 0x3A3;  // final sigma
  if (c >= 0x430 && c <= 0x44F) return c - 0x20;
  if (c >= 0x450 && c <= 0x45F) return c - 0x50;
  return c;
}

bool is_cased_upper(char32_t c) { return to_lower(c) != c; }
bool is_cased_lower(char32_t c) { return to_upper(c) != c || c == 0xDF; }

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_ascii_punct(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  if (is_space(c)) return false;
  if (c >= 0x80 && c <= 0xBF)  // Latin-1 punctuation and symbols; ª ² ³ µ ¹ º ¼ ½ ¾ are alphanumeric
    return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA || (c >= 0xBC && c <= 0xBE);
  if (c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x2000 && c <= 0x206F) return false;  // general punctuation
  if (c >= 0x20A0 && c <= 0x20CF) return false;  // currency
  if (c >= 0x2100 && c <= 0x2BFF) return false;  // letterlike, arrows, maths, boxes, dingbats
  if (c >= 0x2E00 && c <= 0x2E7F) return false;  // supplemental punctuation
  if (c >= 0x3000 && c <= 0x3004) return false;  // CJK punctuation
  if (c >= 0x3008 && c <= 0x3020) return false;
  if (c >= 0xFE30 && c <= 0xFE4F) return false;
  if ((c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40 && c != 0xFF3F) ||
      (c >= 0xFF5B && c <= 0xFF65))
    return false;  // fullwidth punctuation
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  if (c == 0xFFFD) return false;
  return true;
}

std::string lower(const std::string& text) {
  auto u = utf8_decode(text);
  for (auto& c : u) c = to_lower(c);
  return utf8_encode(u);
}

namespace {

bool case_test(const std::string& text, bool (*want)(char32_t), bool (*other)(char32_t)) {
  bool any = false;
  for (char32_t c : utf8_decode(text)) {
    if (other(c)) return false;
    any = any || want(c);
  }
  return any;
}

}  // namespace

bool is_upper_text(const std::string& text) { return case_test(text, is_cased_upper, is_cased_lower); }
bool is_lower_text(const std::string& text) { return case_test(text, is_cased_lower, is_cased_upper); }

std::string strip(const std::string& text) {
  auto u = utf8_decode(text);
  size_t b = 0, e = u.size();
  while (b < e && is_space(u[b])) ++b;
  while (e > b && is_space(u[e - 1])) --e;
  return utf8_encode(u.substr(b, e - b));
}

std::vector<std::string> split_whitespace(const std::string& text) {
  std::vector<std::string> out;
  std::u32string word;
  for (char32_t c : utf8_decode(text)) {
    if (is_space(c)) {
      if (!word.empty()) out.push_back(utf8_encode(word));
      word.clear();
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) out.push_back(utf8_encode(word));
  return out;
}

}  // namespace tess::eval::tasks
