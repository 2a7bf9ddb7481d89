#include <catch2/catch.hpp>

#include <functional>

#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/sha256.h"
#include "data/tokenizer.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;
using tess::test::read_file;
using tess::test::run_command;
using tess::test::run_tess;
using tess::test::TempDir;
namespace fs = std::filesystem;

namespace {

// A few thousand English-like lines (fixed pseudo-random sequence), with some
// digits and chat turns, so a tiny model learns real pieces.
std::string make_corpus() {
  static const char* words[] = {
      "the", "a", "model", "learns", "to", "predict", "words", "from", "noisy", "simplex", "text",
      "and", "it", "is", "trained", "on", "many", "small", "sentences", "with", "clear", "meaning",
      "people", "often", "write", "about", "weather", "cities", "rivers", "mountains", "history",
      "science", "every", "morning", "evening", "quickly", "slowly", "because", "when", "where",
      "question", "answer", "number", "good", "better", "best", "diffusion", "language", "token",
      "sample", "step", "data", "house", "garden", "teacher", "student", "reads", "writes", "book"};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  std::string out;
  for (int line = 0; line < 3000; ++line) {
    if (line % 50 == 0) out += "<|user|> ";
    if (line % 50 == 1) out += "<|assistant|> ";
    int n = 5 + static_cast<int>(next() % 11);
    for (int w = 0; w < n; ++w) {
      std::string word = words[next() % n_words];
      if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      if (next() % 17 == 0) word = std::to_string(next() % 2025);
      if (w) out += ' ';
      out += word;
      if (w + 1 < n && next() % 9 == 0) out += ",";
    }
    out += (next() % 5 == 0) ? "?\n" : ".\n";
  }
  return out;
}

SentencePieceTrainOptions tiny_options(const TempDir& dir, const std::string& prefix) {
  SentencePieceTrainOptions o;
  o.inputs = {dir.path() / "corpus.txt"};
  if (!fs::exists(o.inputs[0])) dir.write("corpus.txt", make_corpus());
  o.model_prefix = dir / prefix;
  o.vocab_size = 400;
  o.seed = 7;
  o.threads = 1;
  return o;
}

// One tiny model per test run, shared by the tests that only read it.
const fs::path& shared_model() {
  static TempDir dir;
  static fs::path model = [] {
    auto o = tiny_options(dir, "shared");
    train_sentencepiece(o);
    return dir / "shared.model";
  }();
  return model;
}


using tess::test::error_of;
using tess::test::shell_quote;

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

const std::vector<std::string> kRoundTrip = {
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "digits 0123456789 and 3.14159, also 2025",
    "  leading,  double   spaces and trailing  ",
    "tabs\tand\nnew lines\n",
    "<|user|>\nWhat is 2+2?\n<|assistant|>\nIt is 4.",
    "Привет, мир! 你好，世界 🙂",
    "",
    " ",
};

}  // namespace

TEST_CASE("a trained SentencePiece model follows the Llama convention and round-trips text",
          "[unit][data]") {
  auto tok = load_tokenizer(shared_model());
  CHECK(tok->kind() == "sentencepiece");
  CHECK(tok->unk_id() == 0);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK(tok->pad_id() == -1);
  CHECK(tok->piece(1) == "<s>");
  CHECK(tok->piece(2) == "</s>");
  CHECK(tok->vocab_size() > 300);
  CHECK(tok->vocab_size() <= 400);
  // Without added tokens the hash is that of the model file.
  CHECK(tok->content_hash() == tess::util::sha256_hex(read_file(shared_model())));
  for (const auto& text : kRoundTrip) {
    INFO(text);
    auto ids = tok->encode(text);
    for (int32_t id : ids) {
      CHECK(id > 2);  // no BOS/EOS/UNK: byte fallback covers everything
      CHECK(id < tok->vocab_size());
    }
    CHECK(tok->decode(ids) == text);
  }
  // BOS/EOS are left out when decoding.
  auto ids = tok->encode("the model learns");
  ids.insert(ids.begin(), tok->bos_id());
  ids.push_back(tok->eos_id());
  CHECK(tok->decode(ids) == "the model learns");
  CHECK_THAT(error_of([&] { tok->decode({tok->vocab_size()}); }), Contains("outside the vocabulary"));
}

TEST_CASE("chat markers are plain text, not special tokens", "[unit][data]") {
  auto tok = load_tokenizer(shared_model());
  for (std::string marker : {"<|user|>", "<|assistant|>"}) {
    INFO(marker);
    auto ids = tok->encode(marker);
    CHECK(ids.size() > 1);  // several ordinary pieces
    for (int32_t id : ids) CHECK(tok->piece(id) != marker);
    CHECK(tok->decode(ids) == marker);
    // The marker inside text tokenizes like the same characters anywhere:
    // encoding marker+text is the encoding of the concatenated string.
    std::string turn = marker + "\nHello there.";
    CHECK(tok->decode(tok->encode(turn)) == turn);
  }
  // Even after a [PAD] is added, the markers stay ordinary text.
  auto before = tok->encode("<|user|> hi <|assistant|> yes");
  tok->add_special_token("[PAD]", true);
  CHECK(tok->encode("<|user|> hi <|assistant|> yes") == before);
}

TEST_CASE("SentencePiece ids match the Python sentencepiece package", "[unit][data]") {
  auto tok = load_tokenizer(shared_model());
  std::vector<std::string> texts = kRoundTrip;
  for (const char* s : {"the student reads a book", "The Teacher writes about rivers and mountains.",
                        "number 42, number 1999 and 7", "Diffusion language models sample tokens.",
                        "unseen: xylophone quartz jukebox", "UPPER lower MiXeD", "a,b,c;d:e!f?g",
                        "<|user|> What is the weather? <|assistant|> Sunny.", "email@example.com",
                        "x", "xx  yy", "\n\n", "trailing space ", "ÄÖÜ äöü ß é",
                        "日本語のテキスト", "emoji 🙂🚀 mix", "tab\tseparated\tvalues",
                        "C++17 & LibTorch <3", "100% (sure) [yes] {no}", "---", "'quoted' \"double\"",
                        "http://example.org/a?b=c", "mountains rivers cities history science"})
    texts.emplace_back(s);

  TempDir dir;
  auto input = dir.write("texts.json", nlohmann::json(texts).dump());
  auto script = dir.write("ref.py",
                          "import json, sys\n"
                          "import sentencepiece as spm\n"
                          "sp = spm.SentencePieceProcessor(model_file=sys.argv[1])\n"
                          "texts = json.load(open(sys.argv[2], encoding='utf-8'))\n"
                          "print(json.dumps([sp.encode(t) for t in texts]))\n");
  auto r = run_command(std::string(TESS_PYTHON) + " " + shell_quote(script.string()) + " " +
                       shell_quote(shared_model().string()) + " " + shell_quote(input.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto expected = nlohmann::json::parse(r.out);
  REQUIRE(expected.size() == texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    INFO(texts[i]);
    CHECK(tok->encode(texts[i]) == expected[i].get<std::vector<int32_t>>());
  }
}

TEST_CASE("training is reproducible: same seed, byte-identical model and hash", "[unit][data]") {
  TempDir dir;
  auto a = tiny_options(dir, "a");
  auto b = tiny_options(dir, "sub/b");  // another directory: paths are not recorded
  train_sentencepiece(a);
  train_sentencepiece(b);
  auto bytes_a = read_file(dir / "a.model");
  REQUIRE(!bytes_a.empty());
  CHECK(bytes_a == read_file(dir / "sub/b.model"));
  CHECK(fs::exists(dir / "a.vocab"));
  CHECK(load_tokenizer(dir / "a.model")->content_hash() ==
        load_tokenizer(dir / "sub/b.model")->content_hash());
  CHECK(bytes_a == read_file(shared_model()));  // same text and options as the shared model

  auto bpe = tiny_options(dir, "bpe");
  bpe.model_type = "bpe";
  train_sentencepiece(bpe);
  auto tok = load_tokenizer(dir / "bpe.model");
  CHECK(tok->content_hash() != load_tokenizer(dir / "a.model")->content_hash());
  CHECK(tok->decode(tok->encode("Hello world, 12 rivers!")) == "Hello world, 12 rivers!");
}

TEST_CASE("an added [PAD] token extends the vocabulary and survives save/load", "[unit][data]") {
  auto tok = load_tokenizer(shared_model());
  const int32_t base = tok->vocab_size();
  const std::string hash_before = tok->content_hash();

  int32_t pad = tok->add_special_token("[PAD]", /*as_pad=*/true);
  CHECK(pad == base);
  CHECK(tok->pad_id() == base);
  CHECK(tok->vocab_size() == base + 1);
  CHECK(tok->piece(pad) == "[PAD]");
  CHECK(tok->add_special_token("[PAD]", true) == pad);  // already known
  CHECK(tok->add_special_token("</s>", false) == 2);    // a base piece keeps its id
  CHECK(tok->vocab_size() == base + 1);
  CHECK(tok->content_hash() != hash_before);

  // Written literally, the added token maps to its id; decode skips it.
  auto ids = tok->encode("the model[PAD][PAD]");
  REQUIRE(ids.size() >= 2);
  CHECK(ids[ids.size() - 1] == pad);
  CHECK(ids[ids.size() - 2] == pad);
  CHECK(tok->decode(ids) == "the model");
  auto plain = tok->encode("hello world");
  auto padded = plain;
  padded.insert(padded.end(), {pad, pad, pad});
  CHECK(tok->decode(padded) == "hello world");

  TempDir dir;
  auto out = dir / "model";
  tok->save(out);
  CHECK(read_file(out / "tokenizer.model") == read_file(shared_model()));
  auto added = nlohmann::json::parse(read_file(out / "added_tokens.json"));
  CHECK(added == nlohmann::json{{"[PAD]", base}});

  auto back = load_tokenizer(out);
  CHECK(back->vocab_size() == base + 1);
  CHECK(back->pad_id() == base);
  CHECK(back->piece(base) == "[PAD]");
  CHECK(back->content_hash() == tok->content_hash());
  CHECK(back->encode("the model[PAD]") == tok->encode("the model[PAD]"));

  // Without added tokens, save writes only tokenizer.model (and drops a stale list).
  auto fresh = load_tokenizer(shared_model());
  fresh->save(out);
  CHECK(!fs::exists(out / "added_tokens.json"));
  CHECK(load_tokenizer(out)->content_hash() == hash_before);
  CHECK(load_tokenizer(out)->pad_id() == -1);
}

TEST_CASE("tokenizer errors name the path and the problem", "[unit][data]") {
  TempDir dir;
  // A directory without tokenizer.model.
  auto empty = dir / "empty";
  fs::create_directories(empty);
  auto msg = error_of([&] { load_tokenizer(empty); });
  CHECK_THAT(msg, Contains(empty.string()));
  CHECK_THAT(msg, Contains("no tokenizer.model"));
  CHECK_THAT(msg, Contains("no tokenizer.json"));
  // ...holding a tokenizer.json, which is read as byte-level BPE.
  auto json = dir.write("bpe/tokenizer.json", "{}");
  CHECK_THAT(error_of([&] { load_tokenizer(dir / "bpe"); }), Contains(json.string()) && Contains("at model"));
  // A path that does not exist.
  CHECK_THAT(error_of([&] { load_tokenizer(dir / "nope"); }), Contains((dir / "nope").string()));
  // A corrupt model file, given as a directory and as the file.
  auto corrupt = dir.write("corrupt/tokenizer.model", "this is not a SentencePiece model\n");
  CHECK_THAT(error_of([&] { load_tokenizer(dir / "corrupt"); }), Contains(corrupt.string()));
  CHECK_THAT(error_of([&] { load_tokenizer(corrupt); }), Contains(corrupt.string()) && Contains("not a valid"));
  // Added token ids with a gap after the base vocabulary.
  auto base = load_tokenizer(shared_model())->vocab_size();
  fs::create_directories(dir / "gap");
  fs::copy_file(shared_model(), dir / "gap/tokenizer.model");
  auto gap = dir.write("gap/added_tokens.json", nlohmann::json{{"[PAD]", base + 1}}.dump());
  msg = error_of([&] { load_tokenizer(dir / "gap"); });
  CHECK_THAT(msg, Contains(gap.string()));
  CHECK_THAT(msg, Contains("consecutive"));
  dir.write("gap/added_tokens.json", nlohmann::json{{"[PAD]", base}, {"[MASK]", base + 2}}.dump());
  CHECK_THAT(error_of([&] { load_tokenizer(dir / "gap"); }), Contains(gap.string()) && Contains("'[MASK]' has id"));
  dir.write("gap/added_tokens.json", "{not json");
  CHECK_THAT(error_of([&] { load_tokenizer(dir / "gap"); }), Contains(gap.string()));
  // Training on a file that is not there.
  auto o = tiny_options(dir, "x");
  o.inputs.push_back(dir / "missing.txt");
  CHECK_THAT(error_of([&] { train_sentencepiece(o); }), Contains((dir / "missing.txt").string()));
}

TEST_CASE("tess tokenize train-spm/encode/decode agree with the library", "[unit][data]") {
  TempDir dir;
  auto corpus = dir.write("corpus.txt", make_corpus());
  auto out = dir / "tok";
  auto r = run_tess("tokenize train-spm --input " + shell_quote(corpus.string()) + " --output " +
                    shell_quote(out.string()) + " --vocab-size 400 --seed 7 --threads 1");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(fs::exists(out / "tokenizer.model"));
  CHECK(read_file(out / "tokenizer.model") == read_file(shared_model()));
  auto tok = load_tokenizer(out);
  CHECK_THAT(r.out, Contains("content hash: " + tok->content_hash()));
  CHECK_THAT(r.out, Contains("special ids: unk=0 bos=1 eos=2 pad=-1"));
  CHECK_THAT(r.out, Contains("vocab size: " + std::to_string(tok->vocab_size())));

  for (std::string text : {"Hello world, 123 rivers!", "<|user|>\nWhat is 2+2?\n<|assistant|>\n4",
                           "Привет 🙂"}) {
    INFO(text);
    auto ids = tok->encode(text);
    auto e = run_tess("tokenize encode --tokenizer " + shell_quote(out.string()) + " --text " +
                      shell_quote(text));
    INFO(e.err);
    CHECK(e.exit_code == 0);
    CHECK(e.out == join_ids(ids) + "\n");
    auto d = run_tess("tokenize decode --tokenizer " + shell_quote((out / "tokenizer.model").string()) +
                      " --ids " + shell_quote("1 " + join_ids(ids) + " 2"));
    CHECK(d.exit_code == 0);
    CHECK(d.out == text + "\n");
  }

  auto bad = run_tess("tokenize decode --tokenizer " + shell_quote(out.string()) + " --ids '1 x'");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Contains("'x'"));
  auto missing = run_tess("tokenize encode --tokenizer " + shell_quote((dir / "none").string()) + " --text hi");
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains((dir / "none").string()));
  auto no_input = run_tess("tokenize train-spm --input " + shell_quote((dir / "gone.txt").string()) +
                           " --output " + shell_quote(out.string()) + " --vocab-size 400");
  CHECK(no_input.exit_code == 1);
  CHECK_THAT(no_input.err, Contains((dir / "gone.txt").string()));
  auto bare = run_tess("tokenize");
  CHECK(bare.exit_code != 0);
  CHECK_THAT(bare.err, Contains("subcommand is required"));
  auto help = run_tess("tokenize --help");
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Contains("train-spm") && Contains("encode") && Contains("decode"));
}
