#pragma once
// The language of a response, for IFEval's language:response_language and
// the "is English" half of change_case:english_capital / english_lowercase,
// whose official checkers call langdetect (a naive-Bayes model over
// character n-gram profiles of 55 languages, not available offline here).
//
// This is a smaller rule, exact where the writing system decides and an
// approximation elsewhere: it knows the 30 languages IFEval asks for
// (instructions_util.LANGUAGE_CODES) plus Chinese and Greek. The script with
// the most letters decides where only one of them writes it (Bengali,
// Gurmukhi, Gujarati, Tamil, Telugu, Kannada, Malayalam, Thai, Hangul, Hebrew,
// Greek; kana = Japanese, Han without kana = Chinese). Within Latin,
// Cyrillic, Arabic and Devanagari each candidate scores its frequent function
// words plus twice the letters only it writes (Vietnamese's horned vowels,
// Ukrainian's і/ї/є, Urdu's ٹ/ڈ/ڑ/ں/ے, Marathi's ळ, ...); the highest score
// wins, ties going to the script's most common language (en, ru, ar, hi).
// Short or mixed texts are where it and langdetect can differ.
#include <string>

namespace tess::eval::tasks {

// langdetect's code for the text's language ("en", "pt", "zh-cn", ...), or
// "" when the text has no letters (langdetect raises there, and the official
// checkers then count the instruction as followed).
std::string identify_language(const std::string& text);

}  // namespace tess::eval::tasks
