// Corpus -> token shards -> packed sequences (data/corpus.h, data/token_dataset.h).
#include <catch2/catch.hpp>

#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/sha256.h"
#include "data/corpus.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;
using tess::test::read_file;
using tess::test::run_tess;
using tess::test::TempDir;
namespace fs = std::filesystem;

namespace {

// One id per byte (id = byte value, so "a" is 97); 0/1/2 are UNK/BOS/EOS and
// never occur in text. `vocab` > 65536 is the large-vocabulary stand-in that
// makes the dataset use uint32.
class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(int32_t vocab = 256) : vocab_(vocab) {}
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(c == 0xFF ? vocab_ - 1 : c);  // 0xFF: the top id
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += id == vocab_ - 1 ? '\xFF' : static_cast<char>(id);
    return s;
  }
  std::string piece(int32_t id) const override { return std::string(1, static_cast<char>(id)); }
  int32_t vocab_size() const override { return vocab_; }
  int32_t bos_id() const override { return 1; }
  int32_t eos_id() const override { return 2; }
  int32_t pad_id() const override { return -1; }
  int32_t unk_id() const override { return 0; }
  int32_t add_special_token(const std::string&, bool) override { return -1; }
  std::string content_hash() const override { return "byte-tokenizer-" + std::to_string(vocab_); }
  std::string base_hash() const override { return content_hash(); }
  std::string kind() const override { return "bytes"; }
  void save(const fs::path&) const override {}

 private:
  int32_t vocab_;
};

std::string make_text(int lines, uint64_t seed) {
  static const char* words[] = {"the", "model", "learns", "to", "predict", "noisy", "simplex", "text", "and",
                                "it", "is", "trained", "on", "many", "small", "sentences", "river", "city",
                                "garden", "teacher", "reads", "book", "diffusion", "token", "step", "42"};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t state = seed * 2654435761ull + 1;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  std::string out;
  for (int l = 0; l < lines; ++l) {
    int n = 3 + static_cast<int>(next() % 8);
    for (int w = 0; w < n; ++w) {
      if (w) out += ' ';
      out += words[next() % n_words];
    }
    out += next() % 4 == 0 ? ".\n\n" : ".\n";  // blank lines separate documents
  }
  return out;
}

// A tiny SentencePiece model shared by the tests of this file.
const fs::path& spm_model() {
  static TempDir dir;
  static fs::path model = [] {
    dir.write("train.txt", make_text(1500, 99));
    SentencePieceTrainOptions o;
    o.inputs = {dir / "train.txt"};
    o.model_prefix = dir / "spm";
    o.vocab_size = 300;
    o.seed = 3;
    o.threads = 1;
    train_sentencepiece(o);
    return dir / "spm.model";
  }();
  return model;
}


using tess::test::error_of;
const auto& quote = tess::test::shell_quote;
void write_gz(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f);
  REQUIRE(gzwrite(f, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size()));
  gzclose(f);
}

CorpusOptions options_for(const fs::path& output, std::vector<std::string> inputs) {
  CorpusOptions o;
  o.inputs = std::move(inputs);
  o.output = output;
  o.progress = false;
  o.threads = 2;
  return o;
}

// A byte-tokenized dataset dir/ds of shards of 500 tokens (at least two).
void write_sharded_dataset(TempDir& dir) {
  dir.write("docs.txt", make_text(60, 1));
  ByteTokenizer tok;
  auto o = options_for(dir / "ds", {(dir / "docs.txt").string()});
  o.shard_tokens = 500;
  tokenize_corpus(tok, o);
}

// Documents of a text split on blank lines, as the corpus reader cuts them.
std::vector<std::string> blank_line_docs(const std::string& text) {
  std::vector<std::string> docs;
  std::string cur;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (!cur.empty()) docs.push_back(cur);
      cur.clear();
    } else {
      if (!cur.empty()) cur += '\n';
      cur += line;
    }
  }
  if (!cur.empty()) docs.push_back(cur);
  return docs;
}

std::vector<std::string> all_documents(const TokenDataset& ds, const Tokenizer& tok) {
  std::vector<std::string> out;
  for (int64_t d = 0; d < ds.num_documents(); ++d) out.push_back(tok.decode(ds.document(d)));
  return out;
}

std::map<std::string, std::string> directory_bytes(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_file(e.path());
  return files;
}

std::vector<int64_t> ids_of(const std::string& s) {
  std::vector<int64_t> v;
  for (unsigned char c : s) v.push_back(c);
  return v;
}

}  // namespace

TEST_CASE("packing concat joins documents with EOS and cuts every L tokens", "[unit][data]") {
  TempDir dir;
  dir.write("docs.txt", "abc\n\nde\n\nfghij\n");
  auto o = options_for(dir / "ds", {(dir / "docs.txt").string()});
  o.shard_tokens = 3;  // reads cross shard boundaries
  ByteTokenizer tok;
  auto report = tokenize_corpus(tok, o);
  CHECK(report.train.documents == 3);
  CHECK(report.train.tokens == 10);
  CHECK(report.train.shards == 4);
  auto ds = std::make_shared<TokenDataset>(dir / "ds");
  CHECK(ds->document_offset(0) == 0);
  CHECK(ds->document_offset(1) == 3);
  CHECK(ds->document_offset(2) == 5);
  CHECK(ds->document_offset(3) == 10);
  const int64_t E = 2, B = 1, a = 'a';

  PackingOptions p;
  p.seq_len = 4;
  // Stream: a b c E d e E f g h i j E (13 tokens) -> 3 sequences, [E] dropped.
  PackedSequences concat(ds, p);
  REQUIRE(concat.size() == 3);
  CHECK(concat.sequence(0) == std::vector<int64_t>{a, a + 1, a + 2, E});
  CHECK(concat.sequence(1) == std::vector<int64_t>{a + 3, a + 4, E, a + 5});
  CHECK(concat.sequence(2) == std::vector<int64_t>{a + 6, a + 7, a + 8, a + 9});
  int32_t buf32[4];
  CHECK(concat.sequence(1, buf32) == 4);
  CHECK(std::vector<int32_t>(buf32, buf32 + 4) == std::vector<int32_t>{'d', 'e', 2, 'f'});
  CHECK_THAT(error_of([&] { concat.sequence(3); }), Contains("out of range"));

  // With BOS: B a b c E B d e E B f g h i j E (16) -> 4 sequences.
  p.bos_per_document = true;
  PackedSequences with_bos(ds, p);
  REQUIRE(with_bos.size() == 4);
  CHECK(with_bos.sequence(0) == std::vector<int64_t>{B, a, a + 1, a + 2});
  CHECK(with_bos.sequence(1) == std::vector<int64_t>{E, B, a + 3, a + 4});
  CHECK(with_bos.sequence(2) == std::vector<int64_t>{E, B, a + 5, a + 6});
  CHECK(with_bos.sequence(3) == std::vector<int64_t>{a + 7, a + 8, a + 9, E});

  // Longer than the whole stream: no sequence at all.
  p.bos_per_document = false;
  p.seq_len = 14;
  CHECK(PackedSequences(ds, p).size() == 0);
  p.seq_len = 13;
  PackedSequences one(ds, p);
  REQUIRE(one.size() == 1);
  CHECK(one.sequence(0) == std::vector<int64_t>{a, a + 1, a + 2, E, a + 3, a + 4, E, a + 5, a + 6, a + 7, a + 8,
                                                a + 9, E});
}

TEST_CASE("packing no_cross never crosses a document and pads tails", "[unit][data]") {
  TempDir dir;
  dir.write("docs.txt", "abc\n\nde\n\nfghij\n");
  auto o = options_for(dir / "ds", {(dir / "docs.txt").string()});
  o.shard_tokens = 4;
  ByteTokenizer tok;
  tokenize_corpus(tok, o);
  auto ds = std::make_shared<TokenDataset>(dir / "ds");
  const int64_t E = 2, P = 0, a = 'a';
  PackingOptions p;
  p.seq_len = 4;
  p.mode = PackingMode::NoCross;
  CHECK_THAT(error_of([&] { PackedSequences(ds, p); }), Contains("pad id"));
  p.pad_id = P;
  PackedSequences packed(ds, p);
  REQUIRE(packed.size() == 4);
  std::vector<int64_t> seq(4);
  CHECK(packed.sequence(0, seq.data()) == 4);
  CHECK(seq == std::vector<int64_t>{a, a + 1, a + 2, E});  // exactly fills L: no pad
  CHECK(packed.sequence(1, seq.data()) == 3);
  CHECK(seq == std::vector<int64_t>{a + 3, a + 4, E, P});
  CHECK(packed.sequence(2, seq.data()) == 4);
  CHECK(seq == std::vector<int64_t>{a + 5, a + 6, a + 7, a + 8});  // a long document is chunked
  CHECK(packed.sequence(3, seq.data()) == 2);
  CHECK(seq == std::vector<int64_t>{a + 9, E, P, P});

  // A batch of rows with their real-token counts.
  std::vector<int64_t> batch(8), real(2);
  packed.gather({3, 1}, batch.data(), real.data());
  CHECK(batch == std::vector<int64_t>{a + 9, E, P, P, a + 3, a + 4, E, P});
  CHECK(real == std::vector<int64_t>{2, 3});

  // With BOS: [B a b c] [E P P P] [B d e E] [B f g h] [i j E P].
  p.bos_per_document = true;
  PackedSequences bos(ds, p);
  REQUIRE(bos.size() == 5);
  CHECK(bos.sequence(1, seq.data()) == 1);
  CHECK(seq == std::vector<int64_t>{E, P, P, P});
  CHECK(bos.sequence(4, seq.data()) == 3);
  CHECK(seq == std::vector<int64_t>{a + 8, a + 9, E, P});
}

TEST_CASE("packing several datasets: sequences of each in turn, same tokenizer required", "[unit][data]") {
  TempDir dir;
  dir.write("one.txt", "abcdef\n");
  dir.write("two.txt", "ghij\n");
  ByteTokenizer tok;
  tokenize_corpus(tok, options_for(dir / "one", {(dir / "one.txt").string()}));
  tokenize_corpus(tok, options_for(dir / "two", {(dir / "two.txt").string()}));
  std::vector<std::shared_ptr<const TokenDataset>> both = {std::make_shared<TokenDataset>(dir / "one"),
                                                           std::make_shared<TokenDataset>(dir / "two")};
  PackingOptions p;
  p.seq_len = 3;
  PackedSequences packed(both, p);
  // "abcdefE" -> 2 sequences ([E] dropped), "ghijE" -> 1.
  REQUIRE(packed.size() == 3);
  CHECK(packed.sequence(2) == ids_of("ghi"));

  ByteTokenizer other(300);
  tokenize_corpus(other, options_for(dir / "three", {(dir / "two.txt").string()}));
  both.push_back(std::make_shared<TokenDataset>(dir / "three"));
  CHECK_THAT(error_of([&] { PackedSequences(both, p); }), Contains("different tokenizers"));
}

TEST_CASE("shards round-trip the documents (uint16, and uint32 forced or from a large vocabulary)",
          "[unit][data]") {
  TempDir dir;
  std::string text = make_text(120, 5) + "\n\n  \n\nlast document without a newline";
  dir.write("corpus.txt", text);
  auto expected = blank_line_docs(text);
  REQUIRE(expected.size() > 20);
  auto spm = load_tokenizer(spm_model());

  for (std::string dtype : {"auto", "uint32"}) {
    INFO(dtype);
    auto o = options_for(dir / ("ds-" + dtype), {(dir / "corpus.txt").string()});
    o.dtype = dtype;
    o.shard_tokens = 100;
    auto report = tokenize_corpus(*spm, o);
    CHECK(report.dtype == (dtype == "auto" ? "uint16" : "uint32"));
    TokenDataset ds(dir / ("ds-" + dtype), "train", OpenOptions{true});
    CHECK(ds.meta().dtype == report.dtype);
    CHECK(ds.num_documents() == static_cast<int64_t>(expected.size()));
    CHECK(all_documents(ds, *spm) == expected);
    int64_t tokens = 0;
    for (const auto& d : expected) tokens += static_cast<int64_t>(spm->encode(d).size());
    CHECK(ds.num_tokens() == tokens);
    CHECK(ds.meta().train.shards.size() == static_cast<size_t>((tokens + 99) / 100));
    for (const auto& s : ds.meta().train.shards)
      CHECK(fs::file_size(dir / ("ds-" + dtype) / s.file) == static_cast<uintmax_t>(s.tokens * (dtype == "auto" ? 2 : 4)));
  }

  // A vocabulary beyond uint16 picks uint32 by itself and keeps the top id.
  ByteTokenizer big(70000);
  dir.write("big.txt", "ab\xFF" "c\n\nxyz\n");
  auto report = tokenize_corpus(big, options_for(dir / "big", {(dir / "big.txt").string()}));
  CHECK(report.dtype == "uint32");
  TokenDataset ds(dir / "big");
  CHECK(ds.document(0) == std::vector<int32_t>{'a', 'b', 69999, 'c'});
  CHECK(big.decode(ds.document(1)) == "xyz");
  auto o = options_for(dir / "big16", {(dir / "big.txt").string()});
  o.dtype = "uint16";
  CHECK_THAT(error_of([&] { tokenize_corpus(big, o); }), Contains("uint16 cannot hold"));
}

TEST_CASE("meta.json describes the dataset", "[unit][data]") {
  TempDir dir;
  dir.write("a.txt", "hello\n\nworld\n");
  dir.write("b.jsonl", "{\"text\": \"json doc\"}\n\n{\"text\": \"   \"}\n");
  ByteTokenizer tok;
  auto o = options_for(dir / "ds", {(dir / "a.txt").string(), (dir / "b.jsonl").string()});
  o.shard_tokens = 8;
  tokenize_corpus(tok, o);
  auto j = nlohmann::json::parse(read_file(dir / "ds" / "meta.json"));
  CHECK(j["format"] == "tess-token-dataset");
  CHECK(j["format_version"] == 1);
  CHECK(j["tokenizer"]["content_hash"] == "byte-tokenizer-256");
  CHECK(j["tokenizer"]["kind"] == "bytes");
  CHECK(j["tokenizer"]["vocab_size"] == 256);
  CHECK(j["tokenizer"]["eos_id"] == 2);
  CHECK(j["dtype"] == "uint16");
  CHECK(j["splits"]["train"]["documents"] == 3);
  CHECK(j["splits"]["train"]["tokens"] == 18);
  CHECK(j["splits"]["validation"]["documents"] == 0);
  CHECK(j["splits"]["validation"]["shards"].empty());
  auto shards = j["splits"]["train"]["shards"];
  REQUIRE(shards.size() == 3);
  CHECK(shards[0]["file"] == "train/shard-00000.bin");
  CHECK(shards[2]["tokens"] == 2);
  CHECK(shards[2]["bytes"] == 4);
  CHECK(shards[1]["sha256"] == tess::util::sha256_hex(read_file(dir / "ds" / "train" / "shard-00001.bin")));
  CHECK(j["splits"]["train"]["index"]["file"] == "train/docs.bin");
  REQUIRE(j["sources"].size() == 2);
  CHECK(j["sources"][0]["format"] == "text");
  CHECK(j["sources"][0]["documents"] == 2);
  CHECK(j["sources"][1]["format"] == "jsonl");
  CHECK(j["sources"][1]["documents"] == 1);
  CHECK(j["sources"][1]["empty_documents"] == 1);
  // Nothing but the dataset is left next to it.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) entries += e.path().filename().string()[0] == '.';
  CHECK(entries == 0);
}

TEST_CASE("gzip, JSONL, directories and globs are read as inputs", "[unit][data]") {
  TempDir dir;
  ByteTokenizer tok;
  write_gz(dir / "in" / "a.txt.gz", "first doc\nline two\n\nsecond doc\n");
  fs::create_directories(dir / "in" / "sub");
  write_gz(dir / "in" / "sub" / "c.jsonl.gz", "{\"text\": \"gz json\", \"id\": 1}\n");
  dir.write("in/sub/b.jsonl", "{\"text\": \"plain json\"}\r\n{\"body\": \"other field\", \"text\": \"x\"}\n");
  dir.write("in/.hidden.txt", "never read\n");
  dir.write("in/sub/d.txt", "  \n\n\n");  // only blank lines: no document

  auto o = options_for(dir / "ds", {(dir / "in").string()});
  auto report = tokenize_corpus(tok, o);
  CHECK(report.files == 4);
  TokenDataset ds(dir / "ds");
  // Sorted paths: a.txt.gz, sub/b.jsonl, sub/c.jsonl.gz, sub/d.txt.
  CHECK(all_documents(ds, tok) ==
        std::vector<std::string>{"first doc\nline two", "second doc", "plain json", "x", "gz json"});

  // A glob; and the whole file as one document.
  o = options_for(dir / "ds2", {(dir / "in" / "sub" / "*.jsonl*").string(), (dir / "in" / "a.txt.gz").string()});
  o.doc_split = DocSplit::File;
  tokenize_corpus(tok, o);
  TokenDataset ds2(dir / "ds2");
  CHECK(all_documents(ds2, tok) ==
        std::vector<std::string>{"plain json", "x", "gz json", "first doc\nline two\n\nsecond doc\n"});

  // Another text field; the format forced.
  dir.write("body.data", "{\"body\": \"B\"}\n");
  o = options_for(dir / "ds3", {(dir / "body.data").string()});
  o.format = InputFormat::Jsonl;
  o.text_field = "body";
  tokenize_corpus(tok, o);
  CHECK(all_documents(TokenDataset(dir / "ds3"), tok) == std::vector<std::string>{"B"});

  CHECK_THAT(error_of([&] { expand_inputs({(dir / "nothing*.txt").string()}); }), Contains("matches no file"));
  CHECK_THAT(error_of([&] { expand_inputs({(dir / "missing.txt").string()}); }), Contains("does not exist"));
  fs::create_directories(dir / "empty");
  CHECK_THAT(error_of([&] { expand_inputs({(dir / "empty").string()}); }), Contains("holds no input file"));

  // A corrupt gzip file is named.
  std::string gz = read_file(dir / "in" / "a.txt.gz");
  dir.write("broken.txt.gz", gz.substr(0, gz.size() / 2));
  auto msg = error_of([&] { tokenize_corpus(tok, options_for(dir / "ds4", {(dir / "broken.txt.gz").string()})); });
  CHECK_THAT(msg, Contains("broken.txt.gz") && Contains("gzip"));
  CHECK_FALSE(fs::exists(dir / "ds4"));
}

TEST_CASE("a malformed JSONL line is an error naming file:line, or skipped on request", "[unit][data]") {
  TempDir dir;
  ByteTokenizer tok;
  auto file = dir.write("bad.jsonl",
                        "{\"text\": \"one\"}\n{\"text\": \"two\"}\n\n{\"text\": 3}\n{not json\n[1, 2]\n{\"other\": \"x\"}\n"
                        "{\"text\": \"last\"}\n");
  auto o = options_for(dir / "ds", {file.string()});
  o.chunk_documents = 2;
  auto msg = error_of([&] { tokenize_corpus(tok, o); });
  CHECK_THAT(msg, Contains(file.string() + ":4:") && Contains("field 'text' must be a string"));
  CHECK_FALSE(fs::exists(dir / "ds"));
  for (const auto& e : fs::directory_iterator(dir.path())) CHECK(e.path().filename().string()[0] != '.');

  dir.write("bad2.jsonl", "{\"text\": \"one\"}\n{not json\n");
  CHECK_THAT(error_of([&] { tokenize_corpus(tok, options_for(dir / "ds", {(dir / "bad2.jsonl").string()})); }),
             Contains("bad2.jsonl:2: not valid JSON"));

  o.skip_bad_records = true;
  auto report = tokenize_corpus(tok, o);
  CHECK(report.skipped_records == 4);
  CHECK(report.train.documents == 3);
  CHECK(all_documents(TokenDataset(dir / "ds"), tok) == std::vector<std::string>{"one", "two", "last"});
  CHECK(TokenDataset(dir / "ds").meta().sources[0].skipped_records == 4);
}

TEST_CASE("a shard whose size or checksum disagrees with meta.json is an error naming it", "[unit][data]") {
  TempDir dir;
  write_sharded_dataset(dir);
  REQUIRE(TokenDataset(dir / "ds", "train", OpenOptions{true}).meta().train.shards.size() >= 2);
  auto shard = dir / "ds" / "train" / "shard-00001.bin";
  std::string bytes = read_file(shard);

  // Same size, one byte changed: only the checksum sees it.
  std::string changed = bytes;
  changed[10] = static_cast<char>(changed[10] ^ 1);
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << changed;
  CHECK_NOTHROW(TokenDataset(dir / "ds"));
  auto msg = error_of([&] { TokenDataset(dir / "ds", "train", OpenOptions{true}); });
  CHECK_THAT(msg, Contains("shard 'train/shard-00001.bin'") && Contains("sha256") && Contains("meta.json"));

  // Truncated: always an error.
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 2);
  msg = error_of([&] { TokenDataset(dir / "ds"); });
  CHECK_THAT(msg, Contains("shard 'train/shard-00001.bin'") && Contains("bytes but meta.json says"));

  fs::remove(shard);
  CHECK_THAT(error_of([&] { TokenDataset(dir / "ds"); }), Contains("shard-00001.bin") && Contains("cannot open"));

  // A corrupt index.
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  auto index = dir / "ds" / "train" / "docs.bin";
  std::string idx = read_file(index);
  idx[15] = static_cast<char>(0x7f);  // document 1 would end far beyond document 2
  std::ofstream(index, std::ios::binary | std::ios::trunc) << idx;
  CHECK_THAT(error_of([&] { TokenDataset(dir / "ds"); }), Contains("document index 'train/docs.bin'"));

  // No meta.json: not a dataset (what an interrupted run would leave).
  fs::remove(dir / "ds" / "meta.json");
  CHECK_THAT(error_of([&] { TokenDataset(dir / "ds"); }), Contains("no meta.json"));
}

// Used to: LibTorch's "index out of range in self" and a stack trace at the
// step that first sampled the id, naming no file.
TEST_CASE("an id outside the vocabulary in a shard is an error naming the shard and offset and id", "[unit][data]") {
  TempDir dir;
  write_sharded_dataset(dir);
  TokenDataset clean(dir / "ds");
  REQUIRE(clean.meta().dtype == "uint16");
  CHECK_NOTHROW(clean.check_ids());
  auto shard = dir / "ds" / "train" / "shard-00001.bin";
  std::string bytes = read_file(shard);
  bytes[2 * 7] = static_cast<char>(0x60);  // token 7 of the shard becomes id 0xea60 = 60000 (little-endian)
  bytes[2 * 7 + 1] = static_cast<char>(0xea);
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  TokenDataset ds(dir / "ds");
  std::vector<int64_t> out(static_cast<size_t>(ds.num_tokens()));
  auto msg = error_of([&] { ds.read(0, ds.num_tokens(), out.data()); });
  CHECK_THAT(msg, Contains("token 7 of shard 'train/shard-00001.bin' (byte 14) is id 60000, outside the tokenizer's "
                           "vocabulary of " + std::to_string(ds.meta().vocab_size)));
  CHECK_THAT(msg, Contains("tokenize inspect"));
  CHECK_NOTHROW(ds.read(0, 500, out.data()));  // shard 0 alone is fine
  CHECK_THAT(error_of([&] { ds.check_ids(); }), Contains("is id 60000"));
  // The checksums cannot see a shard written wrong in the first place (its
  // meta.json hashes agree); `tess tokenize inspect --verify` still does.
  auto meta = read_file(dir / "ds" / "meta.json");
  auto old_hash = clean.meta().train.shards[1].sha256;
  meta.replace(meta.find(old_hash), old_hash.size(), tess::util::sha256_file_hex(shard));
  std::ofstream(dir / "ds" / "meta.json", std::ios::trunc) << meta;
  auto r = run_tess("tokenize inspect --verify --dataset " + quote((dir / "ds").string()));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("shard 'train/shard-00001.bin' (byte 14) is id 60000"));
  CHECK_THAT(r.err, !Contains("Exception raised from"));
}

TEST_CASE("a dataset of another tokenizer is detected, naming both hashes", "[unit][data]") {
  TempDir dir;
  dir.write("docs.txt", "abc\n");
  ByteTokenizer tok;
  tokenize_corpus(tok, options_for(dir / "ds", {(dir / "docs.txt").string()}));
  TokenDataset ds(dir / "ds");
  CHECK(ds.tokenizer_hash() == tok.content_hash());
  CHECK_NOTHROW(ds.check_tokenizer(tok.content_hash()));
  auto msg = error_of([&] { ds.check_tokenizer("0123abcd"); });
  CHECK_THAT(msg, Contains("byte-tokenizer-256") && Contains("0123abcd") && Contains((dir / "ds").string()));
}

TEST_CASE("the output is byte-identical for 1 and 2 threads", "[unit][data]") {
  TempDir dir;
  dir.write("a.txt", make_text(300, 11));
  dir.write("b.txt", make_text(200, 12));
  auto spm = load_tokenizer(spm_model());
  std::map<std::string, std::string> first;
  for (int threads : {1, 2, 3}) {
    auto o = options_for(dir / ("ds" + std::to_string(threads)), {(dir / "a.txt").string(), (dir / "b.txt").string()});
    o.threads = threads;
    o.chunk_documents = 3;  // many chunks in flight, finishing out of order
    o.shard_tokens = 700;
    o.validation_fraction = 0.2;
    tokenize_corpus(*spm, o);
    auto files = directory_bytes(dir / ("ds" + std::to_string(threads)));
    if (first.empty()) {
      first = files;
      CHECK(files.size() > 6);
    } else {
      CHECK(files == first);
    }
  }
}

TEST_CASE("the validation split is deterministic per document, or a separate input", "[unit][data]") {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "doc " + std::to_string(i) + "\n\n";
  dir.write("docs.txt", text);
  ByteTokenizer tok;
  auto run = [&](const std::string& name, uint64_t seed, int threads) {
    auto o = options_for(dir / name, {(dir / "docs.txt").string()});
    o.validation_fraction = 0.25;
    o.split_seed = seed;
    o.threads = threads;
    o.chunk_documents = 7;
    tokenize_corpus(tok, o);
    return std::make_pair(all_documents(TokenDataset(dir / name, "train"), tok),
                          all_documents(TokenDataset(dir / name, "validation"), tok));
  };
  auto a = run("a", 1, 1);
  auto b = run("b", 1, 2);
  auto c = run("c", 2, 2);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(a.first.size() + a.second.size() == 400);
  CHECK(a.second.size() > 60);
  CHECK(a.second.size() < 140);
  // Every document lands in exactly one split, in input order within it.
  std::vector<std::string> merged = a.first;
  merged.insert(merged.end(), a.second.begin(), a.second.end());
  std::sort(merged.begin(), merged.end());
  CHECK(std::adjacent_find(merged.begin(), merged.end()) == merged.end());

  dir.write("val.txt", "held out one\n\nheld out two\n");
  auto o = options_for(dir / "d", {(dir / "docs.txt").string()});
  o.validation_inputs = {(dir / "val.txt").string()};
  auto report = tokenize_corpus(tok, o);
  CHECK(report.train.documents == 400);
  CHECK(report.validation.documents == 2);
  CHECK(all_documents(TokenDataset(dir / "d", "validation"), tok) ==
        std::vector<std::string>{"held out one", "held out two"});
  CHECK(TokenDataset(dir / "d").meta().sources[1].role == "validation");
  o.validation_fraction = 0.1;
  CHECK_THAT(error_of([&] { tokenize_corpus(tok, o); }), Contains("not both"));
}

TEST_CASE("an existing dataset is replaced only with overwrite, and only when complete", "[unit][data]") {
  TempDir dir;
  dir.write("one.txt", "one\n");
  dir.write("two.txt", "two\n");
  dir.write("bad.jsonl", "nope\n");
  ByteTokenizer tok;
  tokenize_corpus(tok, options_for(dir / "ds", {(dir / "one.txt").string()}));
  CHECK_THAT(error_of([&] { tokenize_corpus(tok, options_for(dir / "ds", {(dir / "two.txt").string()})); }),
             Contains("already exists"));
  auto o = options_for(dir / "ds", {(dir / "bad.jsonl").string()});
  o.overwrite = true;
  CHECK_THAT(error_of([&] { tokenize_corpus(tok, o); }), Contains("bad.jsonl:1"));
  CHECK(all_documents(TokenDataset(dir / "ds"), tok) == std::vector<std::string>{"one"});  // untouched
  o.inputs = {(dir / "two.txt").string()};
  tokenize_corpus(tok, o);
  CHECK(all_documents(TokenDataset(dir / "ds"), tok) == std::vector<std::string>{"two"});
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"bad.jsonl", "ds", "one.txt", "two.txt"});

  dir.write("empty.txt", "\n\n");
  CHECK_THAT(error_of([&] { tokenize_corpus(tok, options_for(dir / "e", {(dir / "empty.txt").string()})); }),
             Contains("no training document"));
  CHECK_FALSE(fs::exists(dir / "e"));
}

TEST_CASE("tess tokenize corpus tokenizes a tiny corpus end to end", "[unit][data]") {
  TempDir dir;
  std::string text = make_text(40, 3);
  dir.write("corpus.txt", text);
  auto out = dir / "ds";
  auto r = run_tess("tokenize corpus --tokenizer " + quote(spm_model().string()) + " --input " +
                    quote((dir / "corpus.txt").string()) + " --output " + quote(out.string()) +
                    " --threads 2 --validation-fraction 0.2 --no-progress");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto docs = blank_line_docs(text);
  TokenDataset train(out, "train"), validation(out, "validation");
  CHECK(train.num_documents() + validation.num_documents() == static_cast<int64_t>(docs.size()));
  CHECK_THAT(r.out, Contains(fmt::format("train: {} documents, {} tokens", train.num_documents(),
                                         train.num_tokens())));
  CHECK_THAT(r.out, Contains(fmt::format("validation: {} documents", validation.num_documents())));
  auto spm = load_tokenizer(spm_model());
  CHECK_THAT(r.out, Contains(spm->content_hash()));

  auto info = run_tess("tokenize inspect --verify --dataset " + quote(out.string()));
  INFO(info.err);
  CHECK(info.exit_code == 0);
  CHECK_THAT(info.out, Contains("checksums: ok"));

  dir.write("bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": 1}\n");
  auto bad = run_tess("tokenize corpus --tokenizer " + quote(spm_model().string()) + " --input " +
                      quote((dir / "bad.jsonl").string()) + " --output " + quote((dir / "bad").string()));
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Contains("bad.jsonl:2:"));
}
