#pragma once
// Quickstart data that needs no download (docs/data.md):
//  - synthetic chat tasks with exact answers (addition, sorting, reverse,
//    counting, lookup) and WordNet definition questions, split into train and
//    held-out test sets with no problem in common, plus preference pairs
//    (correct vs. a plausible wrong answer) for the reward model;
//  - an English plain-text corpus for stage 1 from Debian packages: the
//    fortunes (fortunes, fortunes-min) and the WordNet glosses (wordnet-base).
// Everything is deterministic for a seed (tess::util::Rng streams).
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tess::util {
class Rng;
}

namespace tess::data {

// ---- WordNet ---------------------------------------------------------------------

struct WordNetSynset {
  char pos = 'n';                  // n, v, a (s for satellite adjectives), r
  std::vector<std::string> words;  // lemmas as written, underscores kept, adjective markers "(p)" removed
  std::string gloss;               // the whole gloss (definition; "examples")
  std::string definition;          // the gloss up to its first quoted example
};

// Reads data.noun, data.verb, data.adj, data.adv of `dir` (license header
// lines, which start with two spaces, skipped). A missing file is a tess::Error
// naming it and the Debian package (wordnet-base).
std::vector<WordNetSynset> read_wordnet(const std::filesystem::path& dir);

// A word with exactly one sense in all of WordNet (so the definition is the
// answer), lower-case letters only, 4..14 letters, definition <= 120 chars.
struct Definition {
  std::string word;
  std::string definition;
};
std::vector<Definition> unambiguous_definitions(const std::vector<WordNetSynset>& synsets);

// ---- synthetic tasks -----------------------------------------------------------------

// addition, sorting, reverse, counting, lookup, definition.
const std::vector<std::string>& synthetic_tasks();

struct SyntheticExample {
  std::string task;
  std::string key;     // canonical identity of the problem (splits never share one)
  std::string prompt;  // the user message
  std::string answer;  // the exact answer (assistant message)
  std::string wrong;   // a plausible wrong answer, != answer (preference pairs)
};

// Draws problems of each task from an Rng.
class SyntheticGenerator {
 public:
  // `definitions` may be empty when the definition task is not used.
  explicit SyntheticGenerator(std::vector<Definition> definitions = {});
  SyntheticExample generate(const std::string& task, util::Rng& rng) const;

 private:
  std::vector<Definition> definitions_;
};

struct SyntheticOptions {
  uint64_t seed = 1234;
  int64_t train = 6000;
  int64_t test = 300;
  int64_t preferences = 2000;
  std::vector<std::string> tasks = synthetic_tasks();  // round-robin over these
  std::filesystem::path wordnet_dir = "/usr/share/wordnet";
};

struct SyntheticData {
  std::vector<SyntheticExample> train, test, preferences;
};

// Test first (stream "synthetic/test"), then train ("synthetic/train") and
// preference pairs ("synthetic/preferences"), each split free of duplicate
// problems and the other two free of test problems; example i is of task
// tasks[i % tasks.size()]. The test set does not depend on the train/pair
// counts. Reads WordNet only when the definition task is asked for.
SyntheticData generate_synthetic(const SyntheticOptions& options);

// {"task": ..., "messages": [{"role": "user", ...}, {"role": "assistant", ...}]}
nlohmann::json chat_json(const SyntheticExample& example);
// {"task": ..., "prompt": ..., "chosen": answer, "rejected": wrong}
nlohmann::json preference_json(const SyntheticExample& example);

struct SyntheticSummary {
  // task -> {train, test, preferences}
  std::map<std::string, std::array<int64_t, 3>> per_task;
  std::string table() const;  // aligned text, one row per task plus a total
};
// Writes DIR/chat_train.jsonl, DIR/chat_test.jsonl, DIR/preferences.jsonl.
SyntheticSummary write_synthetic(const SyntheticOptions& options, const std::filesystem::path& dir);

// ---- English corpus ---------------------------------------------------------------------

struct EnglishCorpusOptions {
  std::filesystem::path fortunes_dir = "/usr/share/games/fortunes";
  std::filesystem::path wordnet_dir = "/usr/share/wordnet";
  int64_t max_documents = 0;  // 0 = all
  uint64_t seed = 1234;       // order of the documents (stream "english_corpus")
  int64_t glosses_per_document = 10;
};

struct EnglishCorpusReport {
  int64_t fortune_files = 0;
  int64_t fortunes = 0;          // documents from the fortune files
  int64_t skipped_fortunes = 0;  // entries with terminal control codes or invalid UTF-8
  int64_t wordnet_documents = 0;
  int64_t documents = 0;         // written
  int64_t bytes = 0;
  std::string summary() const;
};

// The entries of one fortune-format file (entries separated by lines holding a
// single "%"), each with trailing spaces and blank lines removed (so a
// blank line can separate documents); entries with control characters other
// than tab, or invalid UTF-8, are counted in `skipped` and left out.
std::vector<std::string> read_fortunes(const std::filesystem::path& file, int64_t* skipped = nullptr);

// Fortune files (every regular file of fortunes_dir except *.dat, *.u8 and
// ascii-art; subdirectories such as off/ are not read) and WordNet glosses
// ("word: gloss" lines, glosses_per_document per document), shuffled with the
// seed, cut to max_documents, written as plain text with one document per
// blank-line-separated block. Missing sources are a tess::Error naming the
// path and the Debian package to install.
EnglishCorpusReport write_english_corpus(const EnglishCorpusOptions& options, const std::filesystem::path& output);

}  // namespace tess::data
