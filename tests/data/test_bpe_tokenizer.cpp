// Byte-level BPE (HF tokenizer.json) against HF `tokenizers` itself: the
// goldens in tests/data/bpe/ were made by tests/tools/bpe_reference.py with
// HF's library on three small tokenizers (GPT-2 style, SmolLM2 style,
// Llama-3 style Split) and a few thousand varied strings.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "data/jsonl.h"
#include "data/tokenizer.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;
using tess::test::error_of;
using tess::test::run_command;
using tess::test::run_tess;
using tess::test::shell_quote;
using tess::test::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kBpeData = fs::path(TESS_TEST_DATA) / "bpe";
const char* const kKinds[] = {"gpt2", "smollm", "llama3"};

struct Golden {
  std::string text;
  std::map<std::string, std::vector<int32_t>> ids;
  std::map<std::string, std::string> decoded;  // HF's decode (skip_special_tokens)
};

const std::vector<Golden>& goldens() {
  static const std::vector<Golden> all = [] {
    std::vector<Golden> out;
    read_jsonl(kBpeData / "golden.jsonl.gz", [&out](const nlohmann::json& j, int64_t) {
      Golden g;
      g.text = j.at("text").get<std::string>();
      for (const char* kind : kKinds) {
        g.ids[kind] = j.at(kind).get<std::vector<int32_t>>();
        auto d = j.find(std::string(kind) + "_decoded");
        g.decoded[kind] = d != j.end() ? d->get<std::string>() : g.text;
      }
      out.push_back(std::move(g));
    });
    return out;
  }();
  return all;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

nlohmann::ordered_json read_json(const fs::path& file) {
  return nlohmann::ordered_json::parse(tess::test::read_file(file));
}

// A copy of one of the committed tokenizers, edited by `edit`, in a new dir.
fs::path edited_copy(const TempDir& dir, const std::string& kind, const std::string& name,
                     const std::function<void(nlohmann::ordered_json&)>& edit) {
  auto j = read_json(kBpeData / kind / "tokenizer.json");
  edit(j);
  return dir.write(name + "/tokenizer.json", j.dump(1));
}

int32_t id_of(const Tokenizer& tok, const std::string& piece) {
  for (int32_t i = 0; i < tok.vocab_size(); ++i)
    if (tok.piece(i) == piece) return i;
  return -1;
}

}  // namespace

TEST_CASE("byte-level BPE gives HF's ids and decodes on thousands of varied strings", "[bpe][unit]") {
  const auto& all = goldens();
  REQUIRE(all.size() >= 3000);
  for (const char* kind : kKinds) {
    auto tok = load_tokenizer(kBpeData / kind);
    CHECK(tok->kind() == "bpe");
    int id_mismatches = 0, decode_mismatches = 0, round_trips = 0;
    for (const auto& g : all) {
      auto ids = tok->encode(g.text);
      if (ids != g.ids.at(kind) && ++id_mismatches <= 5) {
        INFO(kind << " text: " << nlohmann::json(g.text).dump() << "\n tess: " << join_ids(ids)
                  << "\n HF:   " << join_ids(g.ids.at(kind)));
        CHECK(ids == g.ids.at(kind));
      }
      auto text = tok->decode(g.ids.at(kind));
      if (text != g.decoded.at(kind) && ++decode_mismatches <= 5) {
        INFO(kind << " decode of: " << nlohmann::json(g.text).dump());
        CHECK(text == g.decoded.at(kind));
      }
      if (text == g.text) ++round_trips;
    }
    INFO(kind);
    CHECK(id_mismatches == 0);
    CHECK(decode_mismatches == 0);
    // Every string without special tokens in it comes back exactly.
    CHECK(round_trips > static_cast<int>(all.size() * 8 / 10));
  }
}

TEST_CASE("exact round trips: decode(encode(text)) == text without special tokens", "[bpe][unit]") {
  auto tok = load_tokenizer(kBpeData / "smollm");
  for (const std::string text :
       {"", " ", "Hello  world\t\n", "日本語 مرحبا नमस्ते", "e\u0301\u0302", "👩‍👩‍👧 🇫🇷 1️⃣", "12345678901234567890",
        "   trailing   ", "\r\n\r\n", "<|im_start|", "\xC3\xA9t\xC3\xA9"})
    CHECK(tok->decode(tok->encode(text)) == text);
  // Bytes that are not UTF-8 are encoded byte for byte; decode replaces each
  // maximal invalid subpart by U+FFFD like HF (Rust's from_utf8_lossy).
  std::string bad = "a\xFF\xC3 b\xE2\x82";
  auto ids = tok->encode(bad);
  CHECK(tok->decode(ids) == "a\xEF\xBF\xBD\xEF\xBF\xBD b\xEF\xBF\xBD");
  // Special tokens are matched in the text and left out by decode.
  auto chat = tok->encode("<|im_start|>user\nhi<|im_end|>");
  CHECK(chat.front() == id_of(*tok, "<|im_start|>"));
  CHECK(chat.back() == id_of(*tok, "<|im_end|>"));
  CHECK(tok->decode(chat) == "user\nhi");
  CHECK_THAT(error_of([&] { tok->decode({tok->vocab_size()}); }), Contains("outside the vocabulary"));
}

TEST_CASE("BPE special ids come from tokenizer_config.json, then the added tokens", "[bpe][unit]") {
  auto smol = load_tokenizer(kBpeData / "smollm");
  CHECK(smol->bos_id() == id_of(*smol, "<|im_start|>"));
  CHECK(smol->eos_id() == id_of(*smol, "<|im_end|>"));
  CHECK(smol->pad_id() == id_of(*smol, "<|im_end|>"));
  CHECK(smol->unk_id() == id_of(*smol, "<|endoftext|>"));
  CHECK(smol->bos_id() >= 0);
  // No config file: the well-known spellings among the added special tokens.
  auto gpt2 = load_tokenizer(kBpeData / "gpt2" / "tokenizer.json");
  CHECK(gpt2->eos_id() == id_of(*gpt2, "<|endoftext|>"));
  CHECK(gpt2->eos_id() >= 0);
  CHECK(gpt2->bos_id() == -1);
  CHECK(gpt2->pad_id() == -1);
  auto llama3 = load_tokenizer(kBpeData / "llama3");
  CHECK(llama3->bos_id() == id_of(*llama3, "<|begin_of_text|>"));
  CHECK(llama3->vocab_size() == id_of(*llama3, "<W>") + 1);

  TempDir dir;
  // special_tokens_map.json when tokenizer_config.json is silent; a null stops the search.
  auto file = edited_copy(dir, "smollm", "map", [](auto&) {});
  dir.write("map/special_tokens_map.json", R"({"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<file_sep>"})");
  dir.write("map/tokenizer_config.json", R"({"eos_token": null})");
  auto mapped = load_tokenizer(dir / "map");
  CHECK(mapped->bos_id() == id_of(*mapped, "<|endoftext|>"));
  CHECK(mapped->eos_id() == -1);
  // A name the vocabulary lacks is an error naming the file and the key.
  dir.write("map/tokenizer_config.json", R"({"pad_token": "<nope>"})");
  auto msg = error_of([&] { load_tokenizer(file); });
  CHECK_THAT(msg, Contains((dir / "map" / "tokenizer_config.json").string()) && Contains("pad_token") &&
                      Contains("<nope>"));
}

TEST_CASE("load_tokenizer picks SentencePiece over tokenizer.json, BPE otherwise", "[bpe][unit]") {
  TempDir dir;
  auto json = kBpeData / "gpt2" / "tokenizer.json";
  // A SentencePiece model trained here, next to a tokenizer.json.
  SentencePieceTrainOptions o;
  o.inputs = {dir.write("corpus.txt", [] {
    std::string s;
    for (int i = 0; i < 400; ++i) s += "the model reads " + std::to_string(i * 7919 % 1000) + " words today\n";
    return s;
  }())};
  o.model_prefix = dir / "both" / "tokenizer";
  o.vocab_size = 300;
  o.threads = 1;
  train_sentencepiece(o);
  fs::copy_file(json, dir / "both" / "tokenizer.json");
  CHECK(load_tokenizer(dir / "both")->kind() == "sentencepiece");
  fs::remove(dir / "both" / "tokenizer.model");
  CHECK(load_tokenizer(dir / "both")->kind() == "bpe");
  CHECK(load_tokenizer(json)->kind() == "bpe");
  fs::remove(dir / "both" / "tokenizer.json");
  auto msg = error_of([&] { load_tokenizer(dir / "both"); });
  CHECK_THAT(msg, Contains("no tokenizer.model") && Contains("no tokenizer.json"));
}

TEST_CASE("a malformed tokenizer.json is an error naming the file and the key", "[bpe][unit]") {
  TempDir dir;
  using J = nlohmann::ordered_json;
  struct Case {
    std::string name;
    std::function<void(J&)> edit;
    std::vector<std::string> expected;
  };
  std::vector<Case> cases = {
      {"metaspace", [](J& j) { j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Metaspace"; },
       {"unsupported pre_tokenizer type 'Metaspace'", "at pre_tokenizer.pretokenizers[1]"}},
      {"model_type", [](J& j) { j["model"]["type"] = "WordPiece"; }, {"unsupported model type 'WordPiece'", "at model.type"}},
      {"no_vocab", [](J& j) { j["model"].erase("vocab"); }, {"missing key", "at model.vocab"}},
      {"merge", [](J& j) { j["model"]["merges"][3] = J::array({"Ġ", "no-such-token"}); },
       {"'no-such-token' is not in model.vocab", "at model.merges[3]"}},
      {"merge_string", [](J& j) { j["model"]["merges"][0] = "a b c"; }, {"at model.merges[0]", "one space"}},
      {"normalizer", [](J& j) { j["normalizer"] = J{{"type", "NFC"}}; }, {"unsupported normalizer type 'NFC'", "at normalizer"}},
      {"regex", [](J& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
       {"at pre_tokenizer.pretokenizers[0].pattern.Regex", "does not compile"}},
      {"behavior", [](J& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; },
       {"unknown split behavior 'Sideways'", "at pre_tokenizer.pretokenizers[0].behavior"}},
      {"decoder", [](J& j) { j["decoder"] = J{{"type", "WordPiece"}}; }, {"unsupported decoder type 'WordPiece'", "at decoder"}},
      {"dropout", [](J& j) { j["model"]["dropout"] = 0.1; }, {"dropout", "at model.dropout"}},
      {"added", [](J& j) { j["added_tokens"][2].erase("content"); }, {"missing key", "at added_tokens[2].content"}},
      {"no_byte_level", [](J& j) { j["pre_tokenizer"] = J{{"type", "Digits"}, {"individual_digits", true}}; },
       {"no ByteLevel pre-tokenizer", "at pre_tokenizer"}},
  };
  for (const auto& c : cases) {
    auto file = edited_copy(dir, "llama3", c.name, c.edit);
    auto msg = error_of([&] { load_tokenizer(dir / c.name); });
    INFO(c.name << ": " << msg);
    CHECK_THAT(msg, Contains(file.string()));
    for (const auto& e : c.expected) CHECK_THAT(msg, Contains(e));
  }
  auto junk = dir.write("junk/tokenizer.json", "{\"model\": ");
  CHECK_THAT(error_of([&] { load_tokenizer(dir / "junk"); }), Contains(junk.string()) && Contains("not valid JSON"));
}

TEST_CASE("BPE hashes: stable per content, [PAD] changes only content_hash, save keeps both", "[bpe][unit]") {
  auto a = load_tokenizer(kBpeData / "gpt2");
  auto b = load_tokenizer(kBpeData / "gpt2" / "tokenizer.json");
  auto c = load_tokenizer(kBpeData / "llama3");  // same vocabulary, other pre-tokenizer
  CHECK(a->content_hash() == b->content_hash());
  CHECK(a->base_hash() == a->content_hash());
  CHECK(a->base_hash() != c->base_hash());
  CHECK(c->base_hash() != c->content_hash());  // llama3's tokens beyond the model vocabulary

  std::string base = a->base_hash(), before = a->content_hash();
  int32_t size = a->vocab_size();
  int32_t pad = a->add_special_token("[PAD]", true);
  CHECK(pad == size);
  CHECK(a->add_special_token("[PAD]", false) == pad);
  CHECK(a->add_special_token("<|endoftext|>", false) == a->eos_id());
  CHECK(a->pad_id() == pad);
  CHECK(a->base_hash() == base);
  CHECK(a->content_hash() != before);
  CHECK(a->encode("x[PAD]y") == std::vector<int32_t>{a->encode("x")[0], pad, a->encode("y")[0]});
  CHECK(a->decode({pad}).empty());

  TempDir dir;
  dir.write("out/tokenizer.model", "stale");
  a->save(dir / "out");
  CHECK(!fs::exists(dir / "out" / "tokenizer.model"));
  auto back = load_tokenizer(dir / "out");
  CHECK(back->kind() == "bpe");
  CHECK(back->base_hash() == base);
  CHECK(back->content_hash() == a->content_hash());
  CHECK(back->pad_id() == pad);
  CHECK(back->eos_id() == a->eos_id());
  CHECK(back->vocab_size() == size + 1);
}

TEST_CASE("a saved BPE tokenizer loads in HF transformers with the same ids", "[bpe][unit]") {
  TempDir dir;
  auto tok = load_tokenizer(kBpeData / "smollm");
  int32_t pad = tok->add_special_token("[PAD]", true);
  tok->save(dir / "model");
  // Test strings: a slice of the goldens, [PAD] in text, and long inputs
  // (a 5000-letter word, a long whitespace run).
  std::vector<std::string> texts = {"a[PAD]b [PAD]", "<|im_start|>user\n[PAD]x<|im_end|>"};
  const auto& all = goldens();
  for (size_t i = 0; i < all.size(); i += 10) texts.push_back(all[i].text);
  std::string word;
  uint32_t state = 1;
  for (int i = 0; i < 5000; ++i) {
    state = state * 1103515245u + 12345u;
    word += static_cast<char>('a' + (state >> 16) % 26);
  }
  texts.push_back(word);
  std::string spaces(3000, ' ');
  spaces.append("y\t\t\n\n").append(2000, '7');
  texts.push_back(spaces);
  {
    std::ofstream out(dir / "texts.jsonl", std::ios::binary);
    for (const auto& t : texts) out << nlohmann::json{{"text", t}}.dump() << '\n';
  }
  auto r = run_command(std::string(TESS_PYTHON) + " " + TESS_SOURCE_DIR + "/tests/tools/bpe_reference.py encode " +
                       shell_quote((dir / "model").string()) + " " + shell_quote((dir / "texts.jsonl").string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.out);
  std::string line;
  REQUIRE(std::getline(lines, line));
  auto head = nlohmann::json::parse(line);
  CHECK(head.at("pad").get<int32_t>() == pad);
  CHECK(head.at("bos").get<int32_t>() == tok->bos_id());
  CHECK(head.at("eos").get<int32_t>() == tok->eos_id());
  CHECK(head.at("unk").get<int32_t>() == tok->unk_id());
  CHECK(head.at("size").get<int32_t>() == tok->vocab_size());
  size_t n = 0, mismatches = 0;
  for (; std::getline(lines, line) && n < texts.size(); ++n) {
    auto hf = nlohmann::json::parse(line).at("ids").get<std::vector<int32_t>>();
    auto ids = tok->encode(texts[n]);
    if (ids != hf && ++mismatches <= 3) {
      INFO(nlohmann::json(texts[n]).dump().substr(0, 200));
      CHECK(join_ids(ids) == join_ids(hf));
    }
  }
  CHECK(n == texts.size());
  CHECK(mismatches == 0);
}

TEST_CASE("BPE encoding is thread-safe and fast on long words", "[bpe][unit]") {
  auto tok = load_tokenizer(kBpeData / "gpt2");
  const auto& all = goldens();
  // Two threads encode the goldens at once (the word cache is shared).
  std::vector<int> bad(2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < all.size(); ++i)
        if (tok->encode(all[i].text) != all[i].ids.at("gpt2")) ++bad[static_cast<size_t>(t)];
    });
  for (auto& th : threads) th.join();
  CHECK(bad[0] == 0);
  CHECK(bad[1] == 0);
  // A 200,000-byte word: the rank-queue merge loop is O(n log n) (well under a
  // second); a loop rescanning the word after each merge would take many
  // minutes. The bound only separates the two, it is no speed figure.
  std::string word;
  for (int i = 0; i < 200000; ++i) word += "abcdefghij"[(i * 7 + i / 13) % 10];
  auto start = std::chrono::steady_clock::now();
  auto ids = tok->encode(word);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(tok->decode(ids) == word);
  CHECK(seconds < 60.0);
}

TEST_CASE("tess tokenize encode/decode work with a tokenizer.json model directory", "[bpe][unit]") {
  const auto& g = goldens()[70];
  auto dir = (kBpeData / "smollm").string();
  auto e = run_tess("tokenize encode --tokenizer " + shell_quote(dir) + " --text " + shell_quote(g.text));
  INFO(e.err);
  REQUIRE(e.exit_code == 0);
  CHECK(e.out == join_ids(g.ids.at("smollm")) + "\n");
  auto d = run_tess("tokenize decode --tokenizer " + shell_quote(dir) + " --ids " + shell_quote(join_ids(g.ids.at("smollm"))));
  REQUIRE(d.exit_code == 0);
  CHECK(d.out == g.decoded.at("smollm") + "\n");
  auto p = run_tess("tokenize encode --pieces --tokenizer " + shell_quote(dir) + " --text " + shell_quote("Hi 42"));
  REQUIRE(p.exit_code == 0);
  CHECK(p.out == "H i Ġ 4 2\n");
}

// Manual check against a real model's tokenizer (not run by ctest: hidden):
//   TESS_BPE_MODEL_DIR=/path/to/smollm2 ./build/tests/test_data "[bpe_model]"
// compares tess's ids with HF transformers loading the same directory on the
// golden strings, and reports the encoding speed.
TEST_CASE("a real model's tokenizer.json gives HF's ids", "[.][bpe_model]") {
  const char* env = std::getenv("TESS_BPE_MODEL_DIR");
  REQUIRE(env != nullptr);
  fs::path model_dir = env;
  TempDir dir;
  {
    std::ofstream out(dir / "texts.jsonl", std::ios::binary);
    for (const auto& g : goldens()) out << nlohmann::json{{"text", g.text}}.dump() << '\n';
  }
  auto r = run_command(std::string(TESS_PYTHON) + " " + TESS_SOURCE_DIR + "/tests/tools/bpe_reference.py encode " +
                       shell_quote(model_dir.string()) + " " + shell_quote((dir / "texts.jsonl").string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto start = std::chrono::steady_clock::now();
  auto tok = load_tokenizer(model_dir);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::istringstream lines(r.out);
  std::string line;
  REQUIRE(std::getline(lines, line));
  auto head = nlohmann::json::parse(line);
  CHECK(head.at("size").get<int32_t>() == tok->vocab_size());
  size_t n = 0, mismatches = 0, tokens = 0, bytes = 0, round_trips = 0;
  double encode_s = 0;
  for (; std::getline(lines, line); ++n) {
    auto hf = nlohmann::json::parse(line).at("ids").get<std::vector<int32_t>>();
    const auto& text = goldens()[n].text;
    auto t0 = std::chrono::steady_clock::now();
    auto ids = tok->encode(text);
    encode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens += ids.size();
    bytes += text.size();
    if (tok->decode(ids) == text) ++round_trips;
    if (ids != hf && ++mismatches <= 3) {
      INFO(nlohmann::json(text).dump().substr(0, 300));
      CHECK(join_ids(ids) == join_ids(hf));
    }
  }
  WARN(fmt::format("{}: {} strings, {} mismatches, {} exact round trips, {} tokens; load {:.2f}s, encode "
                   "{:.1f} MB/s (cold cache)",
                   model_dir.string(), n, mismatches, round_trips, tokens, load_s, bytes / 1e6 / encode_s));
  CHECK(n == goldens().size());
  CHECK(mismatches == 0);
}
