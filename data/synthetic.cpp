#include "data/synthetic.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::data {
namespace fs = std::filesystem;

namespace {

// Common English words for the reverse, counting and lookup tasks.
const std::vector<std::string>& common_words() {
  static const std::vector<std::string> words = {
      "apple",   "river",   "stone",   "garden",  "window",  "pencil",  "orange",  "planet",  "forest",
      "castle",  "bridge",  "candle",  "mirror",  "pocket",  "rabbit",  "silver",  "summer",  "winter",
      "yellow",  "purple",  "basket",  "bottle",  "button",  "carpet",  "doctor",  "dragon",  "engine",
      "farmer",  "flower",  "friend",  "guitar",  "hammer",  "island",  "jacket",  "kitten",  "ladder",
      "lemon",   "market",  "monkey",  "needle",  "number",  "office",  "parrot",  "pepper",  "pillow",
      "rocket",  "saddle",  "school",  "shadow",  "spider",  "street",  "sugar",   "table",   "teacher",
      "ticket",  "tomato",  "tunnel",  "valley",  "wallet",  "water",   "wizard",  "yogurt",  "zebra",
      "anchor",  "bamboo",  "banana",  "beacon",  "blanket", "branch",  "bread",   "butter",  "cabin",
      "camera",  "canyon",  "cherry",  "circle",  "cloud",   "coffee",  "copper",  "cotton",  "desert",
      "dinner",  "dolphin", "donkey",  "eagle",   "falcon",  "feather", "finger",  "garlic",  "ginger",
      "glacier", "hollow",  "honey",   "horizon", "jungle",  "kettle",  "lantern", "lizard",  "magnet",
      "meadow",  "melon",   "morning", "mountain", "music",  "napkin",  "ocean",   "onion",   "orchard",
      "paddle",  "palace",  "panda",   "paper",   "peanut",  "pebble",  "piano",   "pirate",  "pumpkin",
      "puzzle",  "quilt",   "radio",   "raven",   "ribbon",  "saucer",  "sketch",  "spoon",   "squirrel",
      "station", "sunset",  "tiger",   "timber",  "trumpet", "turtle",  "velvet",  "village", "violin",
      "walnut",  "whistle", "willow",  "window",  "wolf",    "wonder",  "harbor",  "helmet",  "insect",
      "journey", "kingdom", "library", "machine", "marble",  "chimney", "cobweb",  "compass", "crystal",
      "diamond", "harvest", "lobster", "mustard", "oyster",  "plaster", "rainbow", "saffron", "thunder",
  };
  return words;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::vector<std::string> to_strings(const std::vector<int64_t>& v) {
  std::vector<std::string> out;
  for (int64_t x : v) out.push_back(std::to_string(x));
  return out;
}

template <typename T>
const T& pick(const std::vector<T>& v, util::Rng& rng) {
  return v[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(v.size()) - 1))];
}

// Distinct indices into a collection of `n`, in draw order.
std::vector<size_t> distinct(size_t count, size_t n, util::Rng& rng) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  for (size_t i = 0; i < count; ++i) {
    auto j = static_cast<size_t>(rng.uniform_int(static_cast<int64_t>(i), static_cast<int64_t>(n) - 1));
    std::swap(idx[i], idx[j]);
  }
  idx.resize(count);
  return idx;
}

std::string reversed(std::string s) {
  std::reverse(s.begin(), s.end());
  return s;
}

// ---- tasks -----------------------------------------------------------------------

SyntheticExample addition(util::Rng& rng) {
  auto number = [&] {
    int64_t digits = rng.uniform_int(2, 4);
    int64_t lo = digits == 2 ? 10 : digits == 3 ? 100 : 1000;
    return rng.uniform_int(lo, lo * 10 - 1);
  };
  int64_t a = number(), b = number();
  static const std::vector<std::string> forms = {"What is {} + {}?", "Add {} and {}.", "Compute the sum of {} and {}."};
  const std::string& form = pick(forms, rng);
  SyntheticExample ex;
  ex.task = "addition";
  ex.key = fmt::format("addition:{}+{}", std::min(a, b), std::max(a, b));
  ex.prompt = fmt::format(fmt::runtime(form), a, b);
  ex.answer = std::to_string(a + b);
  static const std::vector<int64_t> deltas = {1, -1, 10, -10};
  ex.wrong = std::to_string(a + b + pick(deltas, rng));  // a + b >= 20: never negative
  return ex;
}

// One adjacent pair of `items` swapped (items has >= 2 entries, not all equal).
template <typename T>
std::vector<T> swap_adjacent(std::vector<T> items, util::Rng& rng) {
  for (int tries = 0; tries < 64; ++tries) {
    auto i = static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(items.size()) - 2));
    if (items[i] == items[i + 1]) continue;
    std::swap(items[i], items[i + 1]);
    return items;
  }
  for (size_t i = 0; i + 1 < items.size(); ++i)
    if (items[i] != items[i + 1]) {
      std::swap(items[i], items[i + 1]);
      break;
    }
  return items;
}

SyntheticExample sorting(util::Rng& rng) {
  std::vector<int64_t> values;
  const auto n = static_cast<size_t>(rng.uniform_int(3, 6));
  for (size_t i : distinct(n, 100, rng)) values.push_back(static_cast<int64_t>(i));
  auto sorted = values;
  std::sort(sorted.begin(), sorted.end());
  if (values == sorted) std::swap(values.front(), values.back());  // never already sorted
  static const std::vector<std::string> forms = {"Sort these numbers from smallest to largest: {}",
                                                 "Put the following numbers in ascending order: {}"};
  SyntheticExample ex;
  ex.task = "sorting";
  ex.key = "sorting:" + join(to_strings(sorted), ",");
  ex.prompt = fmt::format(fmt::runtime(pick(forms, rng)), join(to_strings(values), ", "));
  ex.answer = join(to_strings(sorted), ", ");
  ex.wrong = rng.bernoulli(0.5) ? join(to_strings(values), ", ") : join(to_strings(swap_adjacent(sorted, rng)), ", ");
  return ex;
}

SyntheticExample reverse(util::Rng& rng) {
  const auto& words = common_words();
  SyntheticExample ex;
  ex.task = "reverse";
  if (rng.bernoulli(0.5)) {
    const std::string& w = pick(words, rng);
    static const std::vector<std::string> forms = {"Spell the word '{}' backwards.", "Reverse the letters of '{}'."};
    ex.key = "reverse_word:" + w;
    ex.prompt = fmt::format(fmt::runtime(pick(forms, rng)), w);
    ex.answer = reversed(w);
    std::vector<char> letters(ex.answer.begin(), ex.answer.end());
    auto wrong = swap_adjacent(letters, rng);
    ex.wrong = std::string(wrong.begin(), wrong.end());
    if (ex.wrong == ex.answer) ex.wrong = w;
  } else {
    std::vector<std::string> items;
    const auto n = static_cast<size_t>(rng.uniform_int(3, 6));
    for (size_t i : distinct(n, words.size(), rng)) items.push_back(words[i]);
    auto rev = items;
    std::reverse(rev.begin(), rev.end());
    static const std::vector<std::string> forms = {"Reverse the order of this list: {}",
                                                   "Write this list in reverse order: {}"};
    ex.key = "reverse_list:" + join(items, ",");
    ex.prompt = fmt::format(fmt::runtime(pick(forms, rng)), join(items, ", "));
    ex.answer = join(rev, ", ");
    ex.wrong = rng.bernoulli(0.5) ? join(items, ", ") : join(swap_adjacent(rev, rng), ", ");
  }
  return ex;
}

SyntheticExample counting(util::Rng& rng) {
  SyntheticExample ex;
  ex.task = "counting";
  int64_t count = 0;
  if (rng.bernoulli(0.5)) {
    const std::string& w = pick(common_words(), rng);
    char c = w[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(w.size()) - 1))];
    count = std::count(w.begin(), w.end(), c);
    ex.key = fmt::format("count_letter:{}:{}", w, c);
    ex.prompt = fmt::format("How many times does the letter '{}' appear in '{}'?", c, w);
  } else {
    const auto n = rng.uniform_int(5, 9);
    std::vector<int64_t> digits;
    for (int64_t i = 0; i < n; ++i) digits.push_back(rng.uniform_int(0, 9));
    int64_t d = digits[static_cast<size_t>(rng.uniform_int(0, n - 1))];
    count = std::count(digits.begin(), digits.end(), d);
    ex.key = fmt::format("count_list:{}:{}", join(to_strings(digits), ","), d);
    ex.prompt = fmt::format("How many times does {} appear in this list: {}?", d, join(to_strings(digits), ", "));
  }
  ex.answer = std::to_string(count);
  ex.wrong = std::to_string(count == 1 || rng.bernoulli(0.5) ? count + 1 : count - 1);
  return ex;
}

SyntheticExample lookup(util::Rng& rng) {
  const auto& words = common_words();
  const auto n = static_cast<size_t>(rng.uniform_int(3, 5));
  std::vector<std::string> keys;
  for (size_t i : distinct(n, words.size(), rng)) keys.push_back(words[i]);
  std::vector<int64_t> values;
  std::vector<std::string> records;
  for (const auto& k : keys) {
    values.push_back(rng.uniform_int(1, 99));
    records.push_back(fmt::format("{}={}", k, values.back()));
  }
  auto q = static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(n) - 1));
  SyntheticExample ex;
  ex.task = "lookup";
  ex.key = "lookup:" + join(records, ",") + "?" + keys[q];
  ex.prompt = fmt::format("Here are some records: {}. What is the value of {}?", join(records, ", "), keys[q]);
  ex.answer = std::to_string(values[q]);
  // The value of another key (or the right one off by one when they coincide).
  auto other = (q + 1 + static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(n) - 2))) % n;
  ex.wrong = values[other] != values[q] ? std::to_string(values[other]) : std::to_string(values[q] + 1);
  return ex;
}

SyntheticExample definition(const std::vector<Definition>& defs, util::Rng& rng) {
  if (defs.size() < 2) throw Error("the definition task needs WordNet definitions (none were loaded)");
  auto i = static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(defs.size()) - 1));
  const auto& d = defs[i];
  static const std::vector<std::string> forms = {"What does the word '{}' mean?", "Define the word '{}'."};
  SyntheticExample ex;
  ex.task = "definition";
  ex.key = "definition:" + d.word;
  ex.prompt = fmt::format(fmt::runtime(pick(forms, rng)), d.word);
  ex.answer = d.definition;
  // Another word's definition (synonyms share one: draw again then).
  for (int tries = 0; tries < 16 && (ex.wrong.empty() || ex.wrong == ex.answer); ++tries) {
    auto j = (i + 1 + static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(defs.size()) - 2))) % defs.size();
    ex.wrong = defs[j].definition;
  }
  if (ex.wrong == ex.answer) ex.wrong = "a kind of " + d.word;
  return ex;
}

std::vector<SyntheticExample> generate_split(const SyntheticGenerator& gen, const std::vector<std::string>& tasks,
                                             int64_t count, util::Rng& rng,
                                             const std::unordered_set<std::string>* forbidden, const char* split) {
  std::vector<SyntheticExample> out;
  std::unordered_set<std::string> own;
  constexpr int kAttempts = 1000;
  for (int64_t i = 0; i < count; ++i) {
    const std::string& task = tasks[static_cast<size_t>(i) % tasks.size()];
    bool found = false;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      auto ex = gen.generate(task, rng);
      if (own.count(ex.key) || (forbidden && forbidden->count(ex.key))) continue;
      own.insert(ex.key);
      out.push_back(std::move(ex));
      found = true;
      break;
    }
    if (!found)
      throw Error(fmt::format("cannot draw enough distinct '{}' problems for the {} split ({} examples asked); "
                              "ask for fewer examples",
                              task, split, count));
  }
  return out;
}

// Writes through a temporary file and a rename.
void write_text(const fs::path& file, const std::string& text) {
  if (file.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (ec) throw Error(fmt::format("cannot create '{}': {}", file.parent_path().string(), ec.message()));
  }
  fs::path tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write '{}'", file.string()));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) throw Error(fmt::format("failed writing '{}' (disk full?)", file.string()));
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) throw Error(fmt::format("cannot write '{}': {}", file.string(), ec.message()));
}

std::string read_file_or_fail(const fs::path& file, const char* package) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw Error(fmt::format("'{}' not found: install the Debian package {} (apt-get install {}; "
                            "scripts/setup.sh does)",
                            file.string(), package, package));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}'", file.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    if (c < 0x80) n = 0;
    else if ((c >> 5) == 0x6) n = 1;
    else if ((c >> 4) == 0xE) n = 2;
    else if ((c >> 3) == 0x1E) n = 3;
    else return false;
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

std::string rtrim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

// ---- WordNet -------------------------------------------------------------------------

std::vector<WordNetSynset> read_wordnet(const fs::path& dir) {
  std::vector<WordNetSynset> out;
  for (const char* name : {"data.noun", "data.verb", "data.adj", "data.adv"}) {
    const fs::path file = dir / name;
    const std::string text = read_file_or_fail(file, "wordnet-base");
    size_t pos = 0;
    int64_t line_no = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (line.empty() || line.rfind("  ", 0) == 0) continue;  // license header
      size_t bar = line.find(" | ");
      std::istringstream fields(line.substr(0, bar));
      std::string offset, lex_file, type, count_hex;
      if (bar == std::string::npos || !(fields >> offset >> lex_file >> type >> count_hex) || type.size() != 1)
        throw Error(fmt::format("{}:{}: not a WordNet data line", file.string(), line_no));
      WordNetSynset s;
      s.pos = type[0];
      const auto count = std::stoul(count_hex, nullptr, 16);
      for (unsigned long k = 0; k < count; ++k) {
        std::string word, lex_id;
        if (!(fields >> word >> lex_id)) throw Error(fmt::format("{}:{}: truncated word list", file.string(), line_no));
        auto paren = word.find('(');
        if (paren != std::string::npos) word.resize(paren);  // adjective markers: (a), (p), (ip)
        s.words.push_back(word);
      }
      s.gloss = rtrim(line.substr(bar + 3));
      size_t quote = s.gloss.find("; \"");
      s.definition = s.gloss.substr(0, quote);
      if (quote == std::string::npos && !s.gloss.empty() && s.gloss[0] == '"') s.definition.clear();
      s.definition = rtrim(s.definition);
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::vector<Definition> unambiguous_definitions(const std::vector<WordNetSynset>& synsets) {
  std::unordered_map<std::string, int> senses;
  for (const auto& s : synsets) {
    std::set<std::string> seen;
    for (auto w : s.words) {
      std::transform(w.begin(), w.end(), w.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (seen.insert(w).second) ++senses[w];
    }
  }
  std::vector<Definition> out;
  for (const auto& s : synsets) {
    if (s.definition.empty() || s.definition.size() > 120) continue;
    for (const auto& w : s.words) {
      if (w.size() < 4 || w.size() > 14) continue;
      if (!std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; })) continue;
      if (senses[w] != 1) continue;
      out.push_back({w, s.definition});
    }
  }
  return out;
}

// ---- synthetic tasks ------------------------------------------------------------------

const std::vector<std::string>& synthetic_tasks() {
  static const std::vector<std::string> tasks = {"addition", "sorting", "reverse", "counting", "lookup", "definition"};
  return tasks;
}

SyntheticGenerator::SyntheticGenerator(std::vector<Definition> definitions) : definitions_(std::move(definitions)) {}

SyntheticExample SyntheticGenerator::generate(const std::string& task, util::Rng& rng) const {
  if (task == "addition") return addition(rng);
  if (task == "sorting") return sorting(rng);
  if (task == "reverse") return reverse(rng);
  if (task == "counting") return counting(rng);
  if (task == "lookup") return lookup(rng);
  if (task == "definition") return definition(definitions_, rng);
  throw Error(fmt::format("unknown synthetic task '{}' (known: {})", task, join(synthetic_tasks(), ", ")));
}

SyntheticData generate_synthetic(const SyntheticOptions& options) {
  if (options.tasks.empty()) throw Error("no synthetic tasks selected");
  for (const auto& t : options.tasks)
    if (std::find(synthetic_tasks().begin(), synthetic_tasks().end(), t) == synthetic_tasks().end())
      throw Error(fmt::format("unknown synthetic task '{}' (known: {})", t, join(synthetic_tasks(), ", ")));
  if (options.train < 0 || options.test < 0 || options.preferences < 0)
    throw Error("synthetic example counts must be >= 0");
  std::vector<Definition> defs;
  if (std::find(options.tasks.begin(), options.tasks.end(), "definition") != options.tasks.end())
    defs = unambiguous_definitions(read_wordnet(options.wordnet_dir));
  SyntheticGenerator gen(std::move(defs));
  SyntheticData data;
  util::Rng test_rng(options.seed, "synthetic/test");
  data.test = generate_split(gen, options.tasks, options.test, test_rng, nullptr, "test");
  std::unordered_set<std::string> test_keys;
  for (const auto& ex : data.test) test_keys.insert(ex.key);
  util::Rng train_rng(options.seed, "synthetic/train");
  data.train = generate_split(gen, options.tasks, options.train, train_rng, &test_keys, "train");
  util::Rng pref_rng(options.seed, "synthetic/preferences");
  data.preferences = generate_split(gen, options.tasks, options.preferences, pref_rng, &test_keys, "preferences");
  return data;
}

nlohmann::json chat_json(const SyntheticExample& ex) {
  nlohmann::json j;
  j["task"] = ex.task;
  j["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", ex.prompt}},
                                         {{"role", "assistant"}, {"content", ex.answer}}});
  return j;
}

nlohmann::json preference_json(const SyntheticExample& ex) {
  nlohmann::json j;
  j["task"] = ex.task;
  j["prompt"] = ex.prompt;
  j["chosen"] = ex.answer;
  j["rejected"] = ex.wrong;
  return j;
}

std::string SyntheticSummary::table() const {
  std::string out = fmt::format("{:<12} {:>8} {:>8} {:>12}\n", "task", "train", "test", "preferences");
  std::array<int64_t, 3> total{0, 0, 0};
  // Rows in the canonical task order, then any others.
  std::vector<std::string> order;
  for (const auto& t : synthetic_tasks())
    if (per_task.count(t)) order.push_back(t);
  for (const auto& [task, n] : per_task)
    if (std::find(order.begin(), order.end(), task) == order.end()) order.push_back(task);
  for (const auto& task : order) {
    const auto& n = per_task.at(task);
    out += fmt::format("{:<12} {:>8} {:>8} {:>12}\n", task, n[0], n[1], n[2]);
    for (int k = 0; k < 3; ++k) total[static_cast<size_t>(k)] += n[static_cast<size_t>(k)];
  }
  out += fmt::format("{:<12} {:>8} {:>8} {:>12}\n", "total", total[0], total[1], total[2]);
  return out;
}

SyntheticSummary write_synthetic(const SyntheticOptions& options, const fs::path& dir) {
  auto data = generate_synthetic(options);
  SyntheticSummary summary;
  for (const auto& t : options.tasks) summary.per_task[t] = {0, 0, 0};
  auto dump = [&](const std::vector<SyntheticExample>& examples, bool pairs, size_t column) {
    std::string text;
    for (const auto& ex : examples) {
      text += (pairs ? preference_json(ex) : chat_json(ex)).dump() + "\n";
      ++summary.per_task[ex.task][column];
    }
    return text;
  };
  write_text(dir / "chat_train.jsonl", dump(data.train, false, 0));
  write_text(dir / "chat_test.jsonl", dump(data.test, false, 1));
  write_text(dir / "preferences.jsonl", dump(data.preferences, true, 2));
  return summary;
}

// ---- English corpus ---------------------------------------------------------------------

std::vector<std::string> read_fortunes(const fs::path& file, int64_t* skipped) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}'", file.string()));
  std::vector<std::string> out;
  std::string entry, line;
  auto flush = [&] {
    if (!entry.empty()) {
      bool control = std::any_of(entry.begin(), entry.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\t' && c != '\n') || u == 0x7F;
      });
      if (control || !valid_utf8(entry)) {
        if (skipped) ++*skipped;
      } else {
        out.push_back(entry);
      }
    }
    entry.clear();
  };
  while (std::getline(in, line)) {
    line = rtrim(line);
    if (line == "%") {
      flush();
      continue;
    }
    if (line.empty()) continue;  // blank lines separate documents in the corpus
    if (!entry.empty()) entry += '\n';
    entry += line;
  }
  flush();
  return out;
}

std::string EnglishCorpusReport::summary() const {
  return fmt::format(
      "{} document(s), {} bytes: {} fortune(s) from {} file(s) ({} skipped: control codes or invalid UTF-8), "
      "{} WordNet gloss document(s) available",
      documents, bytes, fortunes, fortune_files, skipped_fortunes, wordnet_documents);
}

EnglishCorpusReport write_english_corpus(const EnglishCorpusOptions& options, const fs::path& output) {
  if (options.max_documents < 0) throw Error("max_documents must be >= 0");
  if (options.glosses_per_document < 1) throw Error("glosses_per_document must be >= 1");
  EnglishCorpusReport report;
  std::vector<std::string> docs;

  std::error_code ec;
  const char* fortune_pkg = "fortunes and fortunes-min (apt-get install fortunes fortunes-min; scripts/setup.sh does)";
  if (!fs::is_directory(options.fortunes_dir, ec))
    throw Error(fmt::format("fortune directory '{}' not found: install the Debian packages {}",
                            options.fortunes_dir.string(), fortune_pkg));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(options.fortunes_dir, ec)) {
    const auto name = e.path().filename().string();
    if (!e.is_regular_file() || e.is_symlink()) continue;  // off/ etc. and the *.u8 links
    if (e.path().extension() == ".dat" || e.path().extension() == ".u8" || name == "ascii-art") continue;
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw Error(fmt::format("no fortune files in '{}': install the Debian packages {}",
                            options.fortunes_dir.string(), fortune_pkg));
  for (const auto& f : files) {
    auto entries = read_fortunes(f, &report.skipped_fortunes);
    report.fortunes += static_cast<int64_t>(entries.size());
    docs.insert(docs.end(), std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end()));
  }
  report.fortune_files = static_cast<int64_t>(files.size());

  auto synsets = read_wordnet(options.wordnet_dir);
  std::string doc;
  int64_t in_doc = 0;
  char pos = 0;
  auto flush = [&] {
    if (!doc.empty()) docs.push_back(doc), ++report.wordnet_documents;
    doc.clear();
    in_doc = 0;
  };
  for (const auto& s : synsets) {
    if (s.words.empty() || s.gloss.empty()) continue;
    if (s.pos != pos || in_doc == options.glosses_per_document) flush();
    pos = s.pos;
    std::string word = s.words[0];
    std::replace(word.begin(), word.end(), '_', ' ');
    if (!doc.empty()) doc += '\n';
    doc += word + ": " + s.gloss;
    ++in_doc;
  }
  flush();

  util::Rng rng(options.seed, "english_corpus");
  for (size_t i = docs.size(); i > 1; --i)
    std::swap(docs[i - 1], docs[static_cast<size_t>(rng.uniform_int(0, static_cast<int64_t>(i) - 1))]);
  if (options.max_documents > 0 && static_cast<int64_t>(docs.size()) > options.max_documents)
    docs.resize(static_cast<size_t>(options.max_documents));

  std::string text;
  for (size_t i = 0; i < docs.size(); ++i) text += (i ? "\n\n" : "") + docs[i];
  if (!text.empty()) text += '\n';
  write_text(output, text);
  report.documents = static_cast<int64_t>(docs.size());
  report.bytes = static_cast<int64_t>(text.size());
  return report;
}

}  // namespace tess::data
