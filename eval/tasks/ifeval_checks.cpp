#include "eval/tasks/ifeval_checks.h"

#include <algorithm>
#include <map>
#include <regex>

#include <fmt/format.h>

#include "data/jsonl.h"
#include "eval/tasks/language_id.h"
#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace {

using nlohmann::json;

// ---- arguments ---------------------------------------------------------------------------

struct Args {
  const json& kwargs;
  const std::string& id;

  const json* get(const char* key) const {
    if (!kwargs.is_object() || !kwargs.contains(key) || kwargs[key].is_null()) return nullptr;
    return &kwargs[key];
  }
  [[noreturn]] void bad(const char* key, const char* expected) const {
    throw data::RecordError(fmt::format("instruction {}: kwargs needs \"{}\" ({})", id, key, expected));
  }
  std::string str(const char* key) const {
    const json* v = get(key);
    if (!v || !v->is_string()) bad(key, "a string");
    return v->get<std::string>();
  }
  int64_t count(const char* key) const {
    const json* v = get(key);
    if (!v || !v->is_number() || v->get<double>() < 0) bad(key, "a number >= 0");
    return static_cast<int64_t>(v->get<double>());
  }
  std::vector<std::string> strings(const char* key) const {
    const json* v = get(key);
    if (!v || !v->is_array()) bad(key, "a list of strings");
    std::vector<std::string> out;
    for (const auto& s : *v) {
      if (!s.is_string()) bad(key, "a list of strings");
      out.push_back(s.get<std::string>());
    }
    return out;
  }
  // "less than" or "at least".
  std::function<bool(int64_t)> relation(const char* key, int64_t threshold) const {
    auto r = str(key);
    if (r == "less than") return [threshold](int64_t n) { return n < threshold; };
    if (r == "at least") return [threshold](int64_t n) { return n >= threshold; };
    bad(key, "\"less than\" or \"at least\"");
  }
};

// ---- text helpers ------------------------------------------------------------------------

// Non-overlapping occurrences of `needle`, left to right.
std::vector<std::string> split_on(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t at; (at = text.find(needle, start)) != std::string::npos; start = at + needle.size())
    out.push_back(text.substr(start, at - start));
  out.push_back(text.substr(start));
  return out;
}

bool blank(const std::string& s) { return strip(s).empty(); }

// langdetect's verdict as the official checkers use it: a text without
// letters (langdetect raises) counts as written in any language.
bool written_in(const std::string& v, const std::string& code) {
  auto lang = identify_language(v);
  return lang.empty() || lang == code;
}

int64_t count_occurrences(const std::string& text, const std::string& needle) {
  if (needle.empty()) return static_cast<int64_t>(utf8_decode(text).size()) + 1;  // re.findall("") matches everywhere
  int64_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

// re.search(r"\b" + word + r"\b", text, re.IGNORECASE) for a literal word.
bool contains_whole_word(const std::string& text, const std::string& word) {
  auto t = utf8_decode(lower(text)), w = utf8_decode(lower(word));
  if (w.empty()) return false;
  auto boundary = [&](size_t pos) {  // \b between t[pos-1] and t[pos]
    bool before = pos > 0 && is_word_char(t[pos - 1]);
    bool after = pos < t.size() && is_word_char(t[pos]);
    return before != after;
  };
  for (size_t at = t.find(w); at != std::u32string::npos; at = t.find(w, at + 1))
    if (boundary(at) && boundary(at + w.size())) return true;
  return false;
}

std::string strip_chars(const std::string& s, char c) {
  size_t b = s.find_first_not_of(c);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(c) - b + 1);
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
bool ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F); }
bool ascii_digit(char c) { return c >= '0' && c <= '9'; }

// ---- the checkers ------------------------------------------------------------------------

// re.findall(r"^\s*\*[^\*].*$", value, re.MULTILINE) and r"^\s*-.*$": a line
// start, whitespace (newlines too), then the marker; the match runs to the end
// of the line (for "*" + newline, to the end of the next line).
int64_t count_bullets(const std::string& v, bool star) {
  int64_t n = 0;
  size_t p = 0;
  while (p <= v.size()) {
    size_t q = p;
    while (q < v.size() && ascii_space(v[q])) ++q;
    bool hit = star ? (q + 1 < v.size() && v[q] == '*' && v[q + 1] != '*') : (q < v.size() && v[q] == '-');
    size_t resume = p;
    if (hit) {
      ++n;
      size_t from = star ? q + 2 : q + 1;
      size_t eol = from > v.size() ? v.size() : v.find('\n', from);
      resume = eol == std::string::npos ? v.size() : eol;
    }
    auto next_line = v.find('\n', resume);
    if (next_line == std::string::npos) break;
    p = next_line + 1;
  }
  return n;
}

// re.findall(r"\[.*?\]", value)
int64_t count_placeholders(const std::string& v) {
  int64_t n = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '[') continue;
    auto close = v.find_first_of("]\n", i + 1);
    if (close != std::string::npos && v[close] == ']') {
      ++n;
      i = close;
    }
  }
  return n;
}

// *single* and **double** highlights with non-blank content.
int64_t count_highlights(const std::string& v) {
  int64_t n = 0;
  for (size_t i = 0; i < v.size(); ++i) {  // r"\*[^\n\*]*\*"
    if (v[i] != '*') continue;
    auto end = v.find_first_of("*\n", i + 1);
    if (end != std::string::npos && v[end] == '*') {
      n += !blank(v.substr(i + 1, end - i - 1));
      i = end;
    }
  }
  for (size_t i = 0; i + 1 < v.size(); ++i) {  // r"\*\*[^\n\*]*\*\*"
    if (v[i] != '*' || v[i + 1] != '*') continue;
    auto end = v.find_first_of("*\n", i + 2);
    if (end != std::string::npos && end + 1 < v.size() && v[end] == '*' && v[end + 1] == '*') {
      n += !blank(v.substr(i + 2, end - i - 2));
      i = end + 1;
    }
  }
  return n;
}

// len(re.split(r"\s?" + splitter + r"\s?\d+\s?", value)) - 1
int64_t count_sections(const std::string& v, const std::string& splitter) {
  if (splitter.empty()) return 0;
  int64_t n = 0;
  for (size_t at = v.find(splitter); at != std::string::npos;) {
    size_t q = at + splitter.size();
    if (q < v.size() && ascii_space(v[q]) && q + 1 < v.size() && ascii_digit(v[q + 1])) ++q;
    if (q < v.size() && ascii_digit(v[q])) {
      ++n;
      while (q < v.size() && ascii_digit(v[q])) ++q;
      at = v.find(splitter, q);
    } else {
      at = v.find(splitter, at + 1);
    }
  }
  return n;
}

bool paragraphs_ok(const std::string& v, int64_t want) {  // split on r"\s?\*\*\*\s?"
  auto parts = split_on(v, "***");
  auto n = static_cast<int64_t>(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!blank(parts[i])) continue;
    if (i == 0 || i + 1 == parts.size()) --n;
    else return false;
  }
  return n == want;
}

bool nth_paragraph_first_word(const std::string& v, int64_t want_paragraphs, int64_t nth, const std::string& word) {
  auto parts = split_on(v, "\n\n");
  int64_t n = 0;
  for (const auto& p : parts) n += !blank(p);
  if (nth < 1 || nth > n) return false;
  auto paragraph = strip(parts[static_cast<size_t>(nth - 1)]);
  if (paragraph.empty()) return false;
  auto first = split_whitespace(paragraph).front();
  size_t b = first.find_first_not_of('\'');
  first = b == std::string::npos ? "" : first.substr(b);
  b = first.find_first_not_of('"');
  first = b == std::string::npos ? "" : first.substr(b);
  auto cut = first.find_first_of(".,?!'\"");
  first = lower(first.substr(0, cut));
  return n == want_paragraphs && first == word;
}

bool has_postscript(const std::string& value, const std::string& marker) {
  auto v = lower(value);
  auto opt_space = [&](size_t i) { return i < v.size() && ascii_space(v[i]) ? i + 1 : i; };
  auto at = [&](size_t i, const char* s) { return v.compare(i, std::char_traits<char>::length(s), s) == 0; };
  if (marker == "P.P.S") {  // r"\s*p\.\s?p\.\s?s.*$"
    for (size_t i = v.find("p."); i != std::string::npos; i = v.find("p.", i + 1)) {
      size_t j = opt_space(i + 2);
      if (!at(j, "p.")) continue;
      if (at(opt_space(j + 2), "s")) return true;
    }
    return false;
  }
  if (marker == "P.S.") {  // r"\s*p\.\s?s\..*$"
    for (size_t i = v.find("p."); i != std::string::npos; i = v.find("p.", i + 1))
      if (at(opt_space(i + 2), "s.")) return true;
    return false;
  }
  return v.find(lower(marker)) != std::string::npos;
}

bool is_json(const std::string& value) {
  auto v = strip(value);
  for (const char* p : {"```json", "```Json", "```JSON", "```"})
    if (starts_with(v, p)) v = v.substr(std::char_traits<char>::length(p));
  if (ends_with(v, "```")) v.resize(v.size() - 3);
  return json::accept(strip(v));
}

bool has_title(const std::string& v) {  // r"<<[^\n]+>>" with non-blank content
  for (size_t i = v.find("<<"); i != std::string::npos; i = v.find("<<", i + 1)) {
    size_t eol = v.find('\n', i);
    auto line = v.substr(i + 2, (eol == std::string::npos ? v.size() : eol) - (i + 2));
    auto close = line.rfind(">>");  // [^\n]+ is greedy: the last ">>" of the line
    if (close == std::string::npos || close == 0) continue;
    auto title = line.substr(0, close);  // what lstrip("<").rstrip(">") leaves, before the strip()
    size_t b = title.find_first_not_of('<'), e = title.find_last_not_of('>');
    if (b != std::string::npos && e != std::string::npos && b <= e && !blank(title.substr(b, e - b + 1))) return true;
    i += 2 + close + 1;
  }
  return false;
}

bool two_responses(const std::string& v) {
  auto parts = split_on(v, "******");
  std::vector<std::string> valid;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (blank(parts[i])) {
      if (i != 0 && i + 1 != parts.size()) return false;
    } else {
      valid.push_back(parts[i]);
    }
  }
  return valid.size() == 2 && strip(valid[0]) != strip(valid[1]);
}

// nltk.word_tokenize, approximately: whitespace tokens, English contractions
// split off ("DON'T" -> "DO" "N'T", "IT'S" -> "IT" "'S").
std::vector<std::string> rough_word_tokens(const std::string& text) {
  std::vector<std::string> out;
  for (auto w : split_whitespace(text)) {
    auto lw = lower(w);
    std::string tail;
    for (const char* suffix : {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}) {
      std::string s = suffix;
      if (lw.size() > s.size() && ends_with(lw, s)) {
        tail = w.substr(w.size() - s.size());
        w.resize(w.size() - s.size());
        break;
      }
    }
    out.push_back(w);
    if (!tail.empty()) out.push_back(tail);
  }
  return out;
}

// ---- the registry ------------------------------------------------------------------------

using Factory = std::function<Checker(const Args&, const std::string& prompt)>;

struct Entry {
  CheckSupport support;
  Factory make;
};

const std::map<std::string, Entry>& registry() {
  using S = CheckSupport;
  static const std::map<std::string, Entry> r = {
      {"keywords:existence", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto words = a.strings("keywords");
         return [words](const std::string& v) {
           auto lv = lower(v);
           for (const auto& w : words)
             if (lv.find(lower(w)) == std::string::npos) return false;
           return true;
         };
       }}},
      {"keywords:frequency", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto word = lower(strip(a.str("keyword")));
         auto ok = a.relation("relation", a.count("frequency"));
         return [word, ok](const std::string& v) { return ok(count_occurrences(lower(v), word)); };
       }}},
      {"keywords:forbidden_words", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto words = a.strings("forbidden_words");
         return [words](const std::string& v) {
           for (const auto& w : words)
             if (contains_whole_word(v, w)) return false;
           return true;
         };
       }}},
      {"keywords:letter_frequency", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         // The official code swaps a non-letter ("#" in one prompt) for a random
         // letter; here the character asked for is counted.
         auto letter = utf8_decode(lower(strip(a.str("letter"))));
         if (letter.size() != 1) a.bad("letter", "one character");
         auto ok = a.relation("let_relation", a.count("let_frequency"));
         return [c = letter[0], ok](const std::string& v) {
           auto lv = utf8_decode(lower(v));
           return ok(std::count(lv.begin(), lv.end(), c));
         };
       }}},
      {"language:response_language", {S::Approximate, [](const Args& a, const std::string&) -> Checker {
         return [want = a.str("language")](const std::string& v) { return written_in(v, want); };
       }}},
      {"length_constraints:number_sentences", {S::Approximate, [](const Args& a, const std::string&) -> Checker {
         auto ok = a.relation("relation", a.count("num_sentences"));
         return [ok](const std::string& v) { return ok(static_cast<int64_t>(ifeval_split_sentences(v).size())); };
       }}},
      {"length_constraints:number_paragraphs", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto want = a.count("num_paragraphs");
         return [want](const std::string& v) { return paragraphs_ok(v, want); };
       }}},
      {"length_constraints:number_words", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto ok = a.relation("relation", a.count("num_words"));
         return [ok](const std::string& v) { return ok(ifeval_count_words(v)); };
       }}},
      {"length_constraints:nth_paragraph_first_word", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto paragraphs = a.count("num_paragraphs"), nth = a.count("nth_paragraph");
         auto word = lower(a.str("first_word"));
         return [=](const std::string& v) { return nth_paragraph_first_word(v, paragraphs, nth, word); };
       }}},
      {"detectable_content:number_placeholders", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto want = a.count("num_placeholders");
         return [want](const std::string& v) { return count_placeholders(v) >= want; };
       }}},
      {"detectable_content:postscript", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto marker = strip(a.str("postscript_marker"));
         return [marker](const std::string& v) { return has_postscript(v, marker); };
       }}},
      {"detectable_format:number_bullet_lists", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto want = a.count("num_bullets");
         return [want](const std::string& v) { return count_bullets(v, true) + count_bullets(v, false) == want; };
       }}},
      {"detectable_format:constrained_response", {S::Exact, [](const Args&, const std::string&) -> Checker {
         return [](const std::string& v) {
           auto s = strip(v);
           for (const char* o : {"My answer is yes.", "My answer is no.", "My answer is maybe."})
             if (s.find(o) != std::string::npos) return true;
           return false;
         };
       }}},
      {"detectable_format:number_highlighted_sections", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto want = a.count("num_highlights");
         return [want](const std::string& v) { return count_highlights(v) >= want; };
       }}},
      {"detectable_format:multiple_sections", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto splitter = strip(a.str("section_spliter"));
         auto want = a.count("num_sections");
         return [splitter, want](const std::string& v) { return count_sections(v, splitter) >= want; };
       }}},
      {"detectable_format:json_format", {S::Exact, [](const Args&, const std::string&) -> Checker { return is_json; }}},
      {"detectable_format:title", {S::Exact, [](const Args&, const std::string&) -> Checker { return has_title; }}},
      {"combination:two_responses", {S::Exact, [](const Args&, const std::string&) -> Checker { return two_responses; }}},
      {"combination:repeat_prompt", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto repeat = lower(strip(a.str("prompt_to_repeat")));
         return [repeat](const std::string& v) { return starts_with(lower(strip(v)), repeat); };
       }}},
      {"startend:end_checker", {S::Exact, [](const Args& a, const std::string&) -> Checker {
         auto end = lower(strip(a.str("end_phrase")));
         return [end](const std::string& v) { return ends_with(lower(strip_chars(strip(v), '"')), end); };
       }}},
      {"change_case:capital_word_frequency", {S::Approximate, [](const Args& a, const std::string&) -> Checker {
         auto ok = a.relation("capital_relation", a.count("capital_frequency"));
         return [ok](const std::string& v) {
           int64_t n = 0;
           for (const auto& w : rough_word_tokens(v)) n += is_upper_text(w);
           return ok(n);
         };
       }}},
      {"change_case:english_capital", {S::Approximate, [](const Args&, const std::string&) -> Checker {
         return [](const std::string& v) { return is_upper_text(v) && written_in(v, "en"); };
       }}},
      {"change_case:english_lowercase", {S::Approximate, [](const Args&, const std::string&) -> Checker {
         return [](const std::string& v) { return is_lower_text(v) && written_in(v, "en"); };
       }}},
      {"punctuation:no_comma", {S::Exact, [](const Args&, const std::string&) -> Checker {
         return [](const std::string& v) { return v.find(',') == std::string::npos; };
       }}},
      {"startend:quotation", {S::Exact, [](const Args&, const std::string&) -> Checker {
         return [](const std::string& v) {
           auto s = strip(v);
           return s.size() > 1 && s.front() == '"' && s.back() == '"';
         };
       }}},
  };
  return r;
}

std::string regex_sub(const std::string& text, const char* pattern, const char* replacement) {
  return std::regex_replace(text, std::regex(pattern), replacement);
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

}  // namespace

const std::vector<std::string>& ifeval_instruction_ids() {
  static const std::vector<std::string> ids = [] {
    std::vector<std::string> v;
    for (const auto& [id, e] : registry()) v.push_back(id);
    return v;
  }();
  return ids;
}

std::optional<CheckSupport> ifeval_support(const std::string& id) {
  auto it = registry().find(id);
  if (it == registry().end()) return std::nullopt;
  return it->second.support;
}

Checker make_ifeval_checker(const std::string& id, const nlohmann::json& kwargs, const std::string& prompt) {
  auto it = registry().find(id);
  if (it == registry().end())
    throw data::RecordError(fmt::format("unknown IFEval instruction id '{}'", id));
  return it->second.make(Args{kwargs, id}, prompt);
}

int64_t ifeval_count_words(const std::string& text) {
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(text)) {
    bool w = is_word_char(c);
    n += w && !in_word;
    in_word = w;
  }
  return n;
}

// instructions_util.split_into_sentences, step by step.
std::vector<std::string> ifeval_split_sentences(const std::string& input) {
  const char* alphabets = "([A-Za-z])";
  const std::string starters =
      "(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\\s|She\\s|It\\s|They\\s|Their\\s|Our\\s|We\\s|But\\s|However\\s|That\\s|"
      "This\\s|Wherever)";
  const std::string acronyms = "([A-Z][.][A-Z][.](?:[A-Z][.])?)";
  std::string text = " " + input + "  ";
  std::replace(text.begin(), text.end(), '\n', ' ');
  text = regex_sub(text, "(Mr|St|Mrs|Ms|Dr)[.]", "$1<prd>");
  text = regex_sub(text, "[.](com|net|org|io|gov|edu|me)", "<prd>$1");
  text = regex_sub(text, "([0-9])[.]([0-9])", "$1<prd>$2");
  {  // r"\.{2,}" -> "<prd>" per dot + "<stop>"
    std::string out;
    for (size_t i = 0; i < text.size();) {
      size_t j = i;
      while (j < text.size() && text[j] == '.') ++j;
      if (j - i >= 2) {
        for (size_t k = i; k < j; ++k) out += "<prd>";
        out += "<stop>";
        i = j;
      } else {
        out += text[i++];
      }
    }
    text = out;
  }
  if (text.find("Ph.D") != std::string::npos) text = replace_all(text, "Ph.D.", "Ph<prd>D<prd>");
  text = regex_sub(text, (std::string("\\s") + alphabets + "[.] ").c_str(), " $1<prd> ");
  text = regex_sub(text, (acronyms + " " + starters).c_str(), "$1<stop> $2");
  text = regex_sub(text, (std::string(alphabets) + "[.]" + alphabets + "[.]" + alphabets + "[.]").c_str(),
                   "$1<prd>$2<prd>$3<prd>");
  text = regex_sub(text, (std::string(alphabets) + "[.]" + alphabets + "[.]").c_str(), "$1<prd>$2<prd>");
  text = regex_sub(text, (" (Inc|Ltd|Jr|Sr|Co)[.] " + starters).c_str(), " $1<stop> $2");
  text = regex_sub(text, " (Inc|Ltd|Jr|Sr|Co)[.]", " $1<prd>");
  text = regex_sub(text, (std::string(" ") + alphabets + "[.]").c_str(), " $1<prd>");
  text = replace_all(text, ".\u201d", "\u201d.");
  text = replace_all(text, ".\"", "\".");
  text = replace_all(text, "!\"", "\"!");
  text = replace_all(text, "?\"", "\"?");
  text = replace_all(text, ".", ".<stop>");
  text = replace_all(text, "?", "?<stop>");
  text = replace_all(text, "!", "!<stop>");
  text = replace_all(text, "<prd>", ".");
  std::vector<std::string> sentences;
  for (const auto& s : split_on(text, "<stop>")) sentences.push_back(strip(s));
  if (!sentences.empty() && sentences.back().empty()) sentences.pop_back();
  return sentences;
}

}  // namespace tess::eval::tasks
