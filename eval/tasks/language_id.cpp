#include "eval/tasks/language_id.h"

#include <array>
#include <set>
#include <vector>

#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace {

enum class Script {
  Other, Latin, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Bengali, Gurmukhi, Gujarati, Tamil, Telugu,
  Kannada, Malayalam, Thai, Hangul, Kana, Han, Count
};

bool in(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

// The Brahmic blocks share one layout: 0x66-0x6F of each block are digits.
bool indic_digit(char32_t c) { return (c & 0x7F) >= 0x66 && (c & 0x7F) <= 0x6F; }

Script script_of(char32_t c) {
  if (in(c, 'a', 'z') || in(c, 'A', 'Z') || (in(c, 0xC0, 0x24F) && c != 0xD7 && c != 0xF7) || in(c, 0x1E00, 0x1EFF))
    return Script::Latin;
  if (in(c, 0x370, 0x3FF)) return Script::Greek;
  if (in(c, 0x400, 0x4FF)) return Script::Cyrillic;
  if (in(c, 0x5D0, 0x5EA)) return Script::Hebrew;
  if ((in(c, 0x620, 0x64A) || in(c, 0x671, 0x6D3) || in(c, 0x6FA, 0x6FF) || in(c, 0x750, 0x77F) ||
       in(c, 0xFB50, 0xFDFF) || in(c, 0xFE70, 0xFEFF)))
    return Script::Arabic;
  if (in(c, 0x900, 0xD7F) && !indic_digit(c) && c != 0x964 && c != 0x965) {
    static constexpr std::array<Script, 9> blocks = {Script::Devanagari, Script::Bengali, Script::Gurmukhi,
                                                     Script::Gujarati,   Script::Other,   Script::Tamil,
                                                     Script::Telugu,     Script::Kannada, Script::Malayalam};
    return blocks[(c - 0x900) >> 7];  // 0xB00 (Oriya) is not an IFEval language
  }
  if (in(c, 0xE01, 0xE4E)) return Script::Thai;
  if (in(c, 0xAC00, 0xD7AF) || in(c, 0x1100, 0x11FF) || in(c, 0x3130, 0x318F)) return Script::Hangul;
  if (in(c, 0x3041, 0x30FA)) return Script::Kana;
  if (in(c, 0x4E00, 0x9FFF) || in(c, 0x3400, 0x4DBF)) return Script::Han;
  return Script::Other;
}

// Word boundaries: Python's non-\w characters plus the punctuation of the
// Devanagari and Arabic scripts (danda, Arabic comma and question mark, the
// Urdu full stop), which \w counts as word characters.
bool separator(char32_t c) {
  return !is_word_char(c) || c == 0x964 || c == 0x965 || c == 0x60C || c == 0x61B || c == 0x61F || c == 0x6D4 ||
         in(c, 0x66A, 0x66D);
}

// str.lower() plus Latin Extended Additional (Vietnamese), where lower case
// is the odd code point of each pair.
char32_t fold(char32_t c) {
  if (in(c, 0x1E00, 0x1EFF) && c % 2 == 0) return c + 1;
  return to_lower(c);
}

struct Candidate {
  const char* code;
  std::set<std::u32string> words;  // frequent function words
  std::u32string letters;          // letters this language writes and its neighbours (mostly) do not
};

Candidate candidate(const char* code, std::initializer_list<const char*> words, const char* letters) {
  Candidate c{code, {}, utf8_decode(letters)};
  for (const char* w : words) c.words.insert(utf8_decode(w));
  return c;
}

// The candidates of a script that several IFEval languages write; the first
// one wins ties.
const std::vector<Candidate>& candidates(Script script) {
  static const std::vector<Candidate> latin = {
      candidate("en", {"the", "and", "of", "to", "is", "in", "that", "it", "for", "you", "with", "are", "this",
                       "on", "be", "as", "was", "have", "not", "or", "they", "his", "her", "we", "an"},
                ""),
      candidate("es", {"el", "la", "los", "las", "de", "que", "y", "en", "un", "una", "es", "por", "con", "para",
                       "del", "se", "no", "su", "al", "lo", "como", "más", "pero", "sus", "le", "muy", "también"},
                "ñ¿¡"),
      candidate("pt", {"o", "os", "as", "de", "que", "e", "do", "da", "dos", "das", "em", "um", "uma", "para",
                       "com", "não", "no", "na", "se", "por", "mais", "ao", "é", "são", "também", "muito", "mas",
                       "ele", "ela"},
                "ãõç"),
      candidate("fr", {"le", "la", "les", "de", "des", "et", "est", "un", "une", "du", "que", "en", "il", "elle",
                       "pour", "dans", "qui", "pas", "sur", "au", "aux", "avec", "ce", "sont", "vous", "nous",
                       "mais", "ne"},
                "œêûîôëç"),
      candidate("de", {"der", "die", "und", "das", "ist", "nicht", "ein", "eine", "zu", "den", "mit", "sich", "des",
                       "auf", "für", "im", "dem", "von", "es", "sie", "ich", "auch", "wird", "sind"},
                "ßüäö"),
      candidate("it", {"il", "la", "di", "che", "e", "è", "un", "una", "per", "non", "del", "della", "in", "sono",
                       "con", "le", "gli", "si", "al", "da", "come", "anche", "lo", "nel", "più"},
                "ìò"),
      candidate("pl", {"i", "w", "nie", "się", "na", "z", "jest", "to", "że", "do", "o", "jak", "a", "co", "ale",
                       "od", "po", "tak", "są", "przez", "dla", "jego", "czy"},
                "ąćęłńśźż"),
      candidate("vi", {"và", "của", "là", "có", "không", "những", "các", "trong", "một", "được", "cho", "người",
                       "với", "này", "đã", "để", "khi", "thì"},
                "ơưđăạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"),
      candidate("sw", {"na", "ya", "wa", "kwa", "ni", "za", "katika", "la", "cha", "kuwa", "hii", "yake", "pia",
                       "lakini", "watu", "vya", "kama", "hiyo", "wake"},
                ""),
      candidate("fi", {"ja", "on", "ei", "se", "että", "oli", "ovat", "hän", "mutta", "kun", "tai", "joka", "myös",
                       "sen", "kuin", "niin", "mitä", "ole", "olla", "tämä"},
                "äö"),
  };
  static const std::vector<Candidate> cyrillic = {
      candidate("ru", {"и", "в", "не", "на", "что", "с", "как", "это", "по", "но", "он", "я", "из", "для", "от",
                       "так", "все", "его", "же", "был", "она", "они", "мы", "вы", "у", "к"},
                "ыэё"),
      candidate("uk", {"і", "та", "що", "не", "на", "в", "з", "це", "як", "для", "до", "є", "або", "його", "від",
                       "але", "ми", "ви", "вони", "він", "вона", "був", "у"},
                "іїєґ"),
      candidate("bg", {"и", "в", "на", "да", "се", "за", "не", "от", "с", "е", "са", "че", "по", "като", "това",
                       "но", "ще", "със", "ли", "във", "която", "които"},
                "ъ"),
  };
  static const std::vector<Candidate> arabic = {
      candidate("ar", {"في", "من", "على", "إلى", "أن", "الذي", "التي", "عن", "هذا", "هذه", "مع", "كان", "ما", "لا",
                       "هو", "هي", "ذلك", "كل"},
                "ةيكى"),
      candidate("fa", {"و", "در", "به", "از", "که", "این", "را", "با", "است", "برای", "آن", "یک", "می", "ها",
                       "شود", "بر", "تا", "هم"},
                "پچژگکی"),
      candidate("ur", {"کے", "کی", "ہے", "میں", "اور", "کا", "کو", "سے", "یہ", "ہیں", "نے", "پر", "تھا", "بھی",
                       "ایک", "کہ"},
                "ٹڈڑںےہھپچگکی"),
  };
  static const std::vector<Candidate> devanagari = {
      candidate("hi", {"है", "हैं", "के", "की", "में", "और", "को", "से", "का", "यह", "था", "थे", "नहीं", "लिए",
                       "पर", "भी", "एक", "कि", "ने", "हो"},
                ""),
      candidate("mr", {"आहे", "आहेत", "आणि", "व", "या", "हे", "ते", "नाही", "करून", "त्या", "होते", "मध्ये",
                       "म्हणून", "पण", "तर"},
                "ळ"),
      candidate("ne", {"छ", "छन्", "हो", "र", "मा", "गर्न", "पनि", "यो", "भएको", "थियो", "हुन्छ", "को", "ले",
                       "तथा", "गरेको", "छैन"},
                ""),
  };
  static const std::vector<Candidate> none;
  switch (script) {
    case Script::Latin: return latin;
    case Script::Cyrillic: return cyrillic;
    case Script::Arabic: return arabic;
    case Script::Devanagari: return devanagari;
    default: return none;
  }
}

const char* single_language(Script script) {
  switch (script) {
    case Script::Greek: return "el";
    case Script::Hebrew: return "he";
    case Script::Bengali: return "bn";
    case Script::Gurmukhi: return "pa";
    case Script::Gujarati: return "gu";
    case Script::Tamil: return "ta";
    case Script::Telugu: return "te";
    case Script::Kannada: return "kn";
    case Script::Malayalam: return "ml";
    case Script::Thai: return "th";
    case Script::Hangul: return "ko";
    default: return nullptr;
  }
}

}  // namespace

std::string identify_language(const std::string& text) {
  auto chars = utf8_decode(text);
  std::array<int64_t, static_cast<size_t>(Script::Count)> letters{};
  for (char32_t c : chars) ++letters[static_cast<size_t>(script_of(c))];
  letters[static_cast<size_t>(Script::Other)] = 0;
  auto count = [&](Script s) { return letters[static_cast<size_t>(s)]; };
  // Japanese writes kanji (Han) between its kana; kana mark it as Japanese.
  if (count(Script::Kana) > 0 && count(Script::Kana) * 10 >= count(Script::Han)) {
    letters[static_cast<size_t>(Script::Kana)] += count(Script::Han);
    letters[static_cast<size_t>(Script::Han)] = 0;
  }
  size_t best = 0;
  for (size_t s = 1; s < letters.size(); ++s)
    if (letters[s] > letters[best]) best = s;
  if (letters[best] == 0) return "";
  const auto script = static_cast<Script>(best);
  if (script == Script::Kana) return "ja";
  if (script == Script::Han) return "zh-cn";
  if (const char* code = single_language(script)) return code;

  const auto& langs = candidates(script);
  std::vector<int64_t> score(langs.size(), 0);
  std::u32string word;
  auto end_word = [&] {
    if (!word.empty())
      for (size_t i = 0; i < langs.size(); ++i) score[i] += langs[i].words.count(word);
    word.clear();
  };
  for (char32_t c : chars) {
    c = fold(c);
    if (separator(c)) {
      end_word();
      continue;
    }
    word += c;
    for (size_t i = 0; i < langs.size(); ++i)
      if (langs[i].letters.find(c) != std::u32string::npos) score[i] += 2;
  }
  end_word();
  size_t winner = 0;
  for (size_t i = 1; i < langs.size(); ++i)
    if (score[i] > score[winner]) winner = i;
  return langs[winner].code;
}

}  // namespace tess::eval::tasks
