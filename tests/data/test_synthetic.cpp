#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/rng.h"
#include "data/chat.h"
#include "data/jsonl.h"
#include "data/synthetic.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;
using tess::test::read_file;
using tess::test::run_tess;
using tess::test::TempDir;
using tess::util::Rng;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {


using tess::test::error_of;
using tess::test::shell_quote;

const char* kLicense =
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license.  \n"
    "  3   \n";

// A small WordNet in the real file format: 80 made-up unambiguous nouns
// ("wordaa" ...) plus lines that exercise the parser.
fs::path fake_wordnet(const TempDir& dir) {
  std::string noun = kLicense;
  noun += "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 | that which is perceived or known "
          "or inferred to have its own distinct existence (living or nonliving)  \n";
  int offset = 2000;
  for (char a = 'a'; a < 'e'; ++a)
    for (char b = 'a'; b < 'u'; ++b) {
      std::string w = std::string("word") + a + b;
      noun += std::to_string(offset++) + " 05 n 01 " + w + " 0 000 | the meaning of " + w + "; \"an example of " + w +
              "\"  \n";
    }
  // Two senses of "bank": ambiguous, never a definition question.
  noun += "09213565 17 n 02 bank 0 side 0 000 | sloping land beside a body of water  \n";
  noun += "08420278 14 n 01 bank 1 000 | a financial institution  \n";
  noun += "09300000 15 n 02 ant_bear 0 Paris 0 000 | a name with an underscore and a capital  \n";
  std::string verb = std::string(kLicense) + "00001740 29 v 01 breathe 0 005 | draw air into, and expel out of, the lungs  \n";
  std::string adj = std::string(kLicense) + "00001740 00 a 02 able(a) 0 capable 0 000 | having the necessary means; \"able to swim\"  \n";
  std::string adv = std::string(kLicense) + "00001740 02 r 01 merrily 0 000 | in a cheerful way  \n";
  auto d = dir / "wordnet";
  dir.write("wordnet/data.noun", noun);
  dir.write("wordnet/data.verb", verb);
  dir.write("wordnet/data.adj", adj);
  dir.write("wordnet/data.adv", adv);
  return d;
}

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t next = s.find(sep, pos);
    out.push_back(s.substr(pos, next - pos));
    if (next == std::string::npos) break;
    pos = next + sep.size();
  }
  return out;
}

std::vector<long> numbers(const std::string& s) {
  std::vector<long> out;
  for (const auto& p : split(s, ", ")) out.push_back(std::stol(p));
  return out;
}

std::string join_numbers(const std::vector<long>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
  return out;
}

// Solves a problem from its prompt alone: the independent check of each answer.
std::string solve(const std::string& task, const std::string& prompt, const std::map<std::string, std::string>& defs) {
  std::smatch m;
  if (task == "addition") {
    REQUIRE(std::regex_search(prompt, m, std::regex(R"((\d+)\D+(\d+))")));
    return std::to_string(std::stol(m[1]) + std::stol(m[2]));
  }
  if (task == "sorting") {
    auto v = numbers(prompt.substr(prompt.find(": ") + 2));
    std::sort(v.begin(), v.end());
    return join_numbers(v);
  }
  if (task == "reverse") {
    if (std::regex_search(prompt, m, std::regex(R"('([a-z]+)')"))) {
      std::string w = m[1];
      return std::string(w.rbegin(), w.rend());
    }
    auto items = split(prompt.substr(prompt.find(": ") + 2), ", ");
    std::reverse(items.begin(), items.end());
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
    return out;
  }
  if (task == "counting") {
    if (std::regex_search(prompt, m, std::regex(R"(letter '(.)' appear in '([a-z]+)')"))) {
      std::string w = m[2];
      return std::to_string(std::count(w.begin(), w.end(), std::string(m[1])[0]));
    }
    REQUIRE(std::regex_search(prompt, m, std::regex(R"(does (\d) appear in this list: ([\d, ]+)\?)")));
    auto v = numbers(m[2]);
    return std::to_string(std::count(v.begin(), v.end(), std::stol(m[1])));
  }
  if (task == "lookup") {
    REQUIRE(std::regex_search(prompt, m, std::regex(R"(records: (.*)\. What is the value of ([a-z]+)\?)")));
    std::map<std::string, std::string> kv;
    for (const auto& rec : split(m[1], ", ")) {
      auto eq = rec.find('=');
      kv[rec.substr(0, eq)] = rec.substr(eq + 1);
    }
    REQUIRE(kv.count(m[2]));
    return kv[m[2]];
  }
  if (task == "definition") {
    REQUIRE(std::regex_search(prompt, m, std::regex(R"('([a-z]+)')")));
    REQUIRE(defs.count(m[1]));
    return defs.at(m[1]);
  }
  FAIL("unknown task " << task);
  return "";
}

}  // namespace

TEST_CASE("WordNet data files are parsed and definition questions use unambiguous words only", "[unit][data]") {
  TempDir dir;
  auto synsets = read_wordnet(fake_wordnet(dir));
  REQUIRE(synsets.size() == 1 + 80 + 3 + 3);
  CHECK(synsets[0].pos == 'n');
  CHECK(synsets[0].words == std::vector<std::string>{"entity"});
  CHECK(synsets[0].definition ==
        "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)");
  CHECK(synsets[1].definition == "the meaning of wordaa");
  CHECK(synsets[1].gloss == "the meaning of wordaa; \"an example of wordaa\"");
  const auto& able = synsets[synsets.size() - 2];
  CHECK(able.pos == 'a');
  CHECK(able.words == std::vector<std::string>{"able", "capable"});  // "(a)" marker removed
  CHECK(able.definition == "having the necessary means");

  auto defs = unambiguous_definitions(synsets);
  std::map<std::string, std::string> by_word;
  for (const auto& d : defs) by_word[d.word] = d.definition;
  CHECK(by_word.count("entity"));
  CHECK(by_word["wordbc"] == "the meaning of wordbc");
  CHECK(by_word.count("bank") == 0);      // two senses
  CHECK(by_word.count("side") == 1);
  CHECK(by_word.count("ant_bear") == 0);  // not letters only
  CHECK(by_word.count("Paris") == 0);     // capitalised
  CHECK(by_word.count("able") == 1);
  CHECK(by_word.count("breathe") == 1);

  auto missing = error_of([&] { read_wordnet(dir / "nowhere"); });
  CHECK_THAT(missing, Contains((dir / "nowhere" / "data.noun").string()) && Contains("wordnet-base"));
}

// The quickstart reads Debian's WordNet (scripts/setup.sh installs it): CI
// fails without it rather than skipping.
TEST_CASE("the installed WordNet (wordnet-base) parses into >100k synsets of short unambiguous definitions",
          "[unit][data]") {
  const fs::path real = "/usr/share/wordnet";
  INFO("Debian package wordnet-base (scripts/setup.sh installs it)");
  REQUIRE(fs::exists(real / "data.noun"));
  auto all = read_wordnet(real);
  CHECK(all.size() > 100000);
  CHECK(all[0].words[0] == "entity");
  CHECK(all[0].definition ==
        "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)");
  auto real_defs = unambiguous_definitions(all);
  CHECK(real_defs.size() > 10000);
  for (const auto& d : real_defs) {
    REQUIRE(!d.definition.empty());
    REQUIRE(d.definition.size() <= 120);
    REQUIRE(d.definition.find('|') == std::string::npos);
  }
}

TEST_CASE("every synthetic task's answer is correct, checked independently from the prompt", "[unit][data]") {
  TempDir dir;
  auto defs = unambiguous_definitions(read_wordnet(fake_wordnet(dir)));
  std::map<std::string, std::string> by_word;
  for (const auto& d : defs) by_word[d.word] = d.definition;
  SyntheticGenerator gen(defs);
  Rng rng(17, "synthetic/test");
  for (const auto& task : synthetic_tasks()) {
    std::set<std::string> prompts;
    for (int i = 0; i < 300; ++i) {
      auto ex = gen.generate(task, rng);
      INFO(task << ": " << ex.prompt << " -> " << ex.answer << " (wrong: " << ex.wrong << ")");
      REQUIRE(ex.task == task);
      REQUIRE(!ex.key.empty());
      REQUIRE(ex.answer == solve(task, ex.prompt, by_word));
      REQUIRE(!ex.wrong.empty());
      REQUIRE(ex.wrong != ex.answer);
      if (task == "addition" || task == "counting") {
        long diff = std::labs(std::stol(ex.wrong) - std::stol(ex.answer));
        REQUIRE((diff == 1 || diff == 10));
      }
      if (task == "sorting") {
        auto w = numbers(ex.wrong), a = numbers(ex.answer);
        std::sort(w.begin(), w.end());
        REQUIRE(w == a);  // the same numbers, not in order
        REQUIRE(numbers(ex.prompt.substr(ex.prompt.find(": ") + 2)) != a);  // the input was not sorted yet
      }
      prompts.insert(ex.prompt);
    }
    CHECK(prompts.size() > 50);  // varied problems
  }
  CHECK_THAT(error_of([&] { gen.generate("poetry", rng); }), Contains("unknown synthetic task 'poetry'"));
  SyntheticGenerator no_defs;
  CHECK_THAT(error_of([&] { no_defs.generate("definition", rng); }), Contains("WordNet"));
}

TEST_CASE("synthetic splits are deterministic, balanced and share no problem", "[unit][data]") {
  TempDir dir;
  SyntheticOptions o;
  o.seed = 5;
  o.train = 120;
  o.test = 30;
  o.preferences = 24;
  o.wordnet_dir = fake_wordnet(dir);
  auto a = generate_synthetic(o);
  auto b = generate_synthetic(o);
  REQUIRE(a.train.size() == 120);
  REQUIRE(a.test.size() == 30);
  REQUIRE(a.preferences.size() == 24);
  for (size_t i = 0; i < a.train.size(); ++i) CHECK(a.train[i].prompt == b.train[i].prompt);
  for (size_t i = 0; i < a.test.size(); ++i) CHECK(a.test[i].answer == b.test[i].answer);

  std::set<std::string> test_prompts, test_keys;
  std::map<std::string, int> per_task;
  for (const auto& ex : a.test) {
    test_prompts.insert(ex.prompt);
    test_keys.insert(ex.key);
    ++per_task[ex.task];
  }
  CHECK(test_keys.size() == a.test.size());  // no duplicates inside the split
  for (const auto& [task, n] : per_task) CHECK(n == 5);
  std::set<std::string> train_keys;
  for (const auto& ex : a.train) {
    CHECK(test_prompts.count(ex.prompt) == 0);
    CHECK(test_keys.count(ex.key) == 0);
    train_keys.insert(ex.key);
  }
  CHECK(train_keys.size() == a.train.size());
  for (const auto& ex : a.preferences) CHECK(test_keys.count(ex.key) == 0);

  // The test set does not depend on how much training data is asked for.
  auto more = o;
  more.train = 60;
  more.preferences = 0;
  auto c = generate_synthetic(more);
  REQUIRE(c.test.size() == a.test.size());
  for (size_t i = 0; i < c.test.size(); ++i) CHECK(c.test[i].prompt == a.test[i].prompt);
  // Another seed, other problems.
  auto other = o;
  other.seed = 6;
  auto d = generate_synthetic(other);
  int same = 0;
  for (size_t i = 0; i < d.test.size(); ++i) same += d.test[i].prompt == a.test[i].prompt;
  CHECK(same < 5);

  // A task subset needs no WordNet.
  auto plain = o;
  plain.tasks = {"addition", "lookup"};
  plain.wordnet_dir = dir / "nowhere";
  auto e = generate_synthetic(plain);
  for (const auto& ex : e.train) CHECK((ex.task == "addition" || ex.task == "lookup"));
  auto needs = o;
  needs.wordnet_dir = dir / "nowhere";
  CHECK_THAT(error_of([&] { generate_synthetic(needs); }), Contains("wordnet-base"));
  // More distinct problems than the task has.
  auto tiny = o;
  tiny.tasks = {"definition"};
  tiny.test = 70;
  tiny.train = 70;
  CHECK_THAT(error_of([&] { generate_synthetic(tiny); }), Contains("cannot draw enough distinct 'definition' problems"));
}

TEST_CASE("synthetic files are chat JSONL with a task field, and preference pairs", "[unit][data]") {
  TempDir dir;
  SyntheticOptions o;
  o.seed = 9;
  o.train = 36;
  o.test = 12;
  o.preferences = 18;
  o.wordnet_dir = fake_wordnet(dir);
  auto out = dir / "synthetic";
  auto summary = write_synthetic(o, out);
  CHECK(summary.per_task.size() == 6);
  CHECK(summary.per_task["addition"] == std::array<int64_t, 3>{6, 2, 3});
  CHECK_THAT(summary.table(), Contains("total") && Contains("36") && Contains("12") && Contains("18"));

  ChatOptions co;
  co.progress = false;
  std::map<std::string, int> tasks;
  auto report = read_jsonl(out / "chat_train.jsonl", [&](const json& j, int64_t) {
    auto rec = parse_chat_record(j, co);
    ++tasks[rec.task];
    CHECK(j["messages"].size() == 2);
  });
  CHECK(report.records == 36);
  CHECK(tasks.size() == 6);
  auto evals = read_eval_records(out / "chat_test.jsonl", co);
  REQUIRE(evals.size() == 12);
  auto data = generate_synthetic(o);
  for (size_t i = 0; i < evals.size(); ++i) {
    CHECK(evals[i].prompt.user == data.test[i].prompt);
    CHECK(evals[i].reference == data.test[i].answer);
    CHECK(evals[i].task == data.test[i].task);
  }
  int pairs = 0;
  read_jsonl(out / "preferences.jsonl", [&](const json& j, int64_t) {
    auto rec = parse_preference_record(j);
    CHECK(rec.chosen != rec.rejected);
    CHECK(rec.chosen == data.preferences[static_cast<size_t>(pairs)].answer);
    ++pairs;
  });
  CHECK(pairs == 18);
  // Same seed, same bytes.
  write_synthetic(o, dir / "again");
  for (const char* f : {"chat_train.jsonl", "chat_test.jsonl", "preferences.jsonl"})
    CHECK(read_file(out / f) == read_file(dir / "again" / f));
}

TEST_CASE("fortune files are split into documents without blank lines or control codes", "[unit][data]") {
  TempDir dir;
  auto file = dir.write("f", "First fortune.\n%\nSecond one,\n\ntwo paragraphs.   \n\t\t-- Someone\n%\n%\n"
                             "Bell \x07 here.\n%\nBad \xff byte.\n%\nLast one without a percent line.\n");
  int64_t skipped = 0;
  auto entries = read_fortunes(file, &skipped);
  REQUIRE(entries.size() == 3);
  CHECK(entries[0] == "First fortune.");
  CHECK(entries[1] == "Second one,\ntwo paragraphs.\n\t\t-- Someone");
  CHECK(entries[2] == "Last one without a percent line.");
  CHECK(skipped == 2);
}

TEST_CASE("the English corpus comes from fortunes and WordNet glosses, one document per block", "[unit][data]") {
  TempDir dir;
  auto fortunes = dir / "fortunes";
  dir.write("fortunes/people", "A wise person.\n%\nAnother\n\nfortune.\n%\n");
  dir.write("fortunes/people.dat", std::string("\x00\x01\x02", 3));
  dir.write("fortunes/ascii-art", "  /\\_/\\\n%\n");
  dir.write("fortunes/off/rude", "Offensive.\n%\n");
  fs::create_symlink(fortunes / "people", fortunes / "people.u8");
  EnglishCorpusOptions o;
  o.fortunes_dir = fortunes;
  o.wordnet_dir = fake_wordnet(dir);
  o.seed = 2;
  auto out = dir / "corpus.txt";
  auto report = write_english_corpus(o, out);
  CHECK(report.fortune_files == 1);
  CHECK(report.fortunes == 2);
  // Glosses: 81 nouns (+3 parser lines) in groups of 10 per part of speech.
  CHECK(report.wordnet_documents == 9 + 1 + 1 + 1);
  CHECK(report.documents == 2 + 12);
  std::string text = read_file(out);
  CHECK(static_cast<int64_t>(text.size()) == report.bytes);
  auto docs = split(text.substr(0, text.size() - 1), "\n\n");
  CHECK(docs.size() == 14);
  for (const auto& d : docs) {
    CHECK(!d.empty());
    CHECK(d.front() != '\n');
  }
  CHECK_THAT(text, Contains("A wise person.") && Contains("Another\nfortune.") && Contains("entity: that which is"));
  CHECK_THAT(text, Contains("ant bear: a name with an underscore"));
  CHECK(text.find("Offensive") == std::string::npos);
  CHECK(text.find("/\\_/") == std::string::npos);
  // Deterministic for a seed; max_documents keeps the first N of that order.
  write_english_corpus(o, dir / "again.txt");
  CHECK(read_file(dir / "again.txt") == text);
  o.max_documents = 3;
  auto r3 = write_english_corpus(o, dir / "three.txt");
  CHECK(r3.documents == 3);
  CHECK(text.rfind(read_file(dir / "three.txt").substr(0, 20), 0) == 0);

  o.fortunes_dir = dir / "no-fortunes";
  auto msg = error_of([&] { write_english_corpus(o, dir / "x.txt"); });
  CHECK_THAT(msg, Contains((dir / "no-fortunes").string()) && Contains("fortunes-min"));
}

TEST_CASE("tess tokenize synthetic and english-corpus write the quickstart data", "[unit][data]") {
  TempDir dir;
  auto wn = fake_wordnet(dir);
  auto out = dir / "data";
  auto r = run_tess("tokenize synthetic --output " + shell_quote(out.string()) + " --seed 4 --train 30 --test 12 "
                    "--preferences 6 --wordnet-dir " + shell_quote(wn.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("chat_train.jsonl") && Contains("chat_test.jsonl") && Contains("preferences.jsonl"));
  CHECK(std::regex_search(r.out, std::regex(R"(addition\s+5\s+2\s+1)")));
  CHECK(std::regex_search(r.out, std::regex(R"(total\s+30\s+12\s+6)")));
  SyntheticOptions o;
  o.seed = 4;
  o.train = 30;
  o.test = 12;
  o.preferences = 6;
  o.wordnet_dir = wn;
  write_synthetic(o, dir / "lib");
  CHECK(read_file(out / "chat_test.jsonl") == read_file(dir / "lib" / "chat_test.jsonl"));

  auto subset = run_tess("tokenize synthetic --output " + shell_quote((dir / "s").string()) +
                         " --train 4 --test 2 --preferences 0 --tasks addition,sorting --wordnet-dir /nonexistent");
  CHECK(subset.exit_code == 0);
  auto missing = run_tess("tokenize synthetic --output " + shell_quote((dir / "m").string()) +
                          " --train 4 --test 2 --wordnet-dir /nonexistent");
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains("/nonexistent/data.noun") && Contains("wordnet-base"));

  dir.write("fortunes/fortunes", "Hello fortune.\n%\n");
  auto c = run_tess("tokenize english-corpus --output " + shell_quote((dir / "c.txt").string()) + " --fortunes-dir " +
                    shell_quote((dir / "fortunes").string()) + " --wordnet-dir " + shell_quote(wn.string()) +
                    " --max-documents 5");
  INFO(c.err);
  CHECK(c.exit_code == 0);
  CHECK_THAT(c.out, Contains("5 document(s)"));
  auto nf = run_tess("tokenize english-corpus --output " + shell_quote((dir / "c.txt").string()) +
                     " --fortunes-dir /nonexistent --wordnet-dir " + shell_quote(wn.string()));
  CHECK(nf.exit_code == 1);
  CHECK_THAT(nf.err, Contains("/nonexistent") && Contains("fortunes"));
}

TEST_CASE("tess tokenize english-corpus reads the installed fortunes and WordNet", "[integration][data]") {
  TempDir dir;
  INFO("Debian packages fortunes-min, fortunes and wordnet-base (scripts/setup.sh installs them)");
  REQUIRE(fs::exists("/usr/share/games/fortunes/fortunes"));
  REQUIRE(fs::exists("/usr/share/wordnet/data.noun"));
  auto real = run_tess("tokenize english-corpus --output " + shell_quote((dir / "real.txt").string()) +
                       " --max-documents 200");
  INFO(real.err);
  CHECK(real.exit_code == 0);
  CHECK_THAT(real.out, Contains("200 document(s)"));
}
