#pragma once
// Just enough Unicode for the official benchmark scorers, which are Python
// and so see code points, not bytes: str.lower(), str.split() whitespace, the
// \w of `re`, str.isupper()/islower(). Case mapping covers Latin-1, Latin
// Extended-A, Greek and Cyrillic (the cased scripts benchmark answers use);
// other code points are left as they are. Invalid UTF-8 bytes decode to
// U+FFFD.
#include <string>
#include <vector>

namespace tess::eval::tasks {

std::u32string utf8_decode(const std::string& text);
std::string utf8_encode(const std::u32string& text);

char32_t to_lower(char32_t c);
char32_t to_upper(char32_t c);
bool is_space(char32_t c);       // Python's str.isspace()
bool is_word_char(char32_t c);   // Python's \w: letters, digits, marks, '_' (non-ASCII punctuation and symbols excluded)
bool is_ascii_punct(char32_t c); // string.punctuation
bool is_cased_upper(char32_t c);
bool is_cased_lower(char32_t c);

std::string lower(const std::string& text);  // str.lower()
// Python's str.isupper() / str.islower(): at least one cased character and
// none of the other case.
bool is_upper_text(const std::string& text);
bool is_lower_text(const std::string& text);
// str.strip() / str.split() with Python's whitespace.
std::string strip(const std::string& text);
std::vector<std::string> split_whitespace(const std::string& text);

}  // namespace tess::eval::tasks
