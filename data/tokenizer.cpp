#include "data/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/sha256.h"
#include "data/bpe_tokenizer.h"

namespace tess::data {
namespace fs = std::filesystem;

namespace {

constexpr const char* kModelFile = "tokenizer.model";
constexpr const char* kAddedTokensFile = "added_tokens.json";
constexpr const char* kSpecialTokensMapFile = "special_tokens_map.json";

std::string read_binary(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}'", file.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("failed reading '{}'", file.string()));
  return ss.str();
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `model_bytes` is a serialized SentencePiece ModelProto (a tokenizer.model
  // file's contents); `source` names it in error messages.
  SentencePieceTokenizer(std::string model_bytes, const fs::path& source)
      : model_bytes_(std::move(model_bytes)) {
    auto status = sp_.LoadFromSerializedProto(model_bytes_);
    if (!status.ok()) {
      std::string why = status.ToString();
      if (why.find("ParseFromArray") != std::string::npos) why = "the file is not a serialized ModelProto";
      throw Error(fmt::format("'{}' is not a valid SentencePiece model: {}", source.string(), why));
    }
    base_size_ = sp_.GetPieceSize();
    if (base_size_ <= 0)
      throw Error(fmt::format("'{}' is not a valid SentencePiece model: empty vocabulary",
                              source.string()));
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    if (added_.empty()) {
      encode_plain(text, ids);
      return ids;
    }
    // Added tokens written literally in the text map to their ids (as HF does
    // for added tokens); the text between them goes through SentencePiece.
    size_t start = 0, pos = 0;
    while (pos < text.size()) {
      int32_t match = -1;
      size_t match_len = 0;
      for (size_t i = 0; i < added_.size(); ++i) {
        const std::string& tok = added_[i];
        if (tok.size() > match_len && text.compare(pos, tok.size(), tok) == 0) {
          match = base_size_ + static_cast<int32_t>(i);
          match_len = tok.size();
        }
      }
      if (match < 0) {
        ++pos;
        continue;
      }
      encode_plain(text.substr(start, pos - start), ids);
      ids.push_back(match);
      pos += match_len;
      start = pos;
    }
    encode_plain(text.substr(start), ids);
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> kept;
    kept.reserve(ids.size());
    for (int32_t id : ids) {
      check_id(id);
      if (id >= base_size_) continue;  // added tokens are special
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) continue;
      kept.push_back(id);
    }
    std::string text;
    auto status = sp_.Decode(kept, &text);
    if (!status.ok()) throw Error(fmt::format("SentencePiece decoding failed: {}", status.ToString()));
    return text;
  }

  std::string piece(int32_t id) const override {
    check_id(id);
    if (id >= base_size_) return added_[static_cast<size_t>(id - base_size_)];
    return sp_.IdToPiece(id);
  }

  int32_t vocab_size() const override { return base_size_ + static_cast<int32_t>(added_.size()); }
  int32_t bos_id() const override { return sp_.bos_id(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  int32_t pad_id() const override { return added_pad_ >= 0 ? added_pad_ : sp_.pad_id(); }
  int32_t unk_id() const override { return sp_.unk_id(); }

  int32_t add_special_token(const std::string& piece, bool as_pad) override {
    if (piece.empty()) throw Error("cannot add an empty special token");
    int32_t id = known_id(piece);
    if (id < 0) {
      id = vocab_size();
      added_.push_back(piece);
      added_ids_.emplace(piece, id);
    }
    if (as_pad) added_pad_ = id;
    return id;
  }

  std::string content_hash() const override {
    util::Sha256 h;
    h.update(model_bytes_);
    for (size_t i = 0; i < added_.size(); ++i)
      h.update(fmt::format("{}={}\n", added_[i], base_size_ + static_cast<int32_t>(i)));
    return h.hex_digest();
  }

  std::string base_hash() const override { return util::sha256_hex(model_bytes_); }

  std::string kind() const override { return "sentencepiece"; }

  void save(const fs::path& dir) const override {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(fmt::format("cannot create '{}': {}", dir.string(), ec.message()));
    util::write_file_atomic(dir / kModelFile, model_bytes_);
    auto added_file = dir / kAddedTokensFile;
    if (added_.empty()) {
      // A stale file from an earlier tokenizer would change the ids on load.
      fs::remove(added_file, ec);
      return;
    }
    nlohmann::json j = nlohmann::json::object();
    for (size_t i = 0; i < added_.size(); ++i) j[added_[i]] = base_size_ + static_cast<int32_t>(i);
    util::write_file_atomic(added_file, j.dump(2) + "\n");
  }

  // Applies a model directory's added_tokens.json ({"[PAD]": 32000}, as HF
  // writes it). Ids must continue the base vocabulary without gaps.
  void load_added_tokens(const fs::path& file, const fs::path& dir) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_binary(file));
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("'{}': not valid JSON: {}", file.string(), e.what()));
    }
    if (!j.is_object())
      throw Error(fmt::format("'{}': expected a JSON object {{\"token\": id, ...}}", file.string()));
    std::vector<std::pair<int64_t, std::string>> entries;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer())
        throw Error(fmt::format("'{}': the id of '{}' is not an integer", file.string(), it.key()));
      int64_t id = it.value().get<int64_t>();
      int32_t known = known_id(it.key());
      if (known >= 0) {
        // Older HF versions list base-vocabulary specials too; accept them
        // when they agree with the model.
        if (known == id) continue;
        throw Error(fmt::format("'{}': '{}' has id {} but the SentencePiece model already has it as id {}",
                                file.string(), it.key(), id, known));
      }
      entries.emplace_back(id, it.key());
    }
    std::sort(entries.begin(), entries.end());
    for (size_t i = 0; i < entries.size(); ++i) {
      int64_t expected = base_size_ + static_cast<int64_t>(i);
      if (entries[i].first != expected)
        throw Error(fmt::format(
            "'{}': added token ids must be consecutive after the base vocabulary (size {}): "
            "expected id {} but '{}' has id {}",
            file.string(), base_size_, expected, entries[i].second, entries[i].first));
      add_special_token(entries[i].second, false);
    }
    added_pad_ = find_added_pad(dir);
  }

 private:
  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
    if (text.empty()) return;
    std::vector<int> out;
    auto status = sp_.Encode(text, &out);
    if (!status.ok()) throw Error(fmt::format("SentencePiece encoding failed: {}", status.ToString()));
    ids.insert(ids.end(), out.begin(), out.end());
  }

  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size())
      throw Error(fmt::format("token id {} is outside the vocabulary (size {})", id, vocab_size()));
  }

  // The id of a piece already in the vocabulary, or -1.
  int32_t known_id(const std::string& piece) const {
    auto it = added_ids_.find(piece);
    if (it != added_ids_.end()) return it->second;
    int32_t id = sp_.PieceToId(piece);  // unknown pieces map to unk
    if (id >= 0 && id < base_size_ && sp_.IdToPiece(id) == piece) return id;
    return -1;
  }

  // Which added token pads: the one HF's special_tokens_map.json names as
  // pad_token, else (model without its own PAD) one spelled "[PAD]"/"<pad>".
  int32_t find_added_pad(const fs::path& dir) const {
    auto map_file = dir / kSpecialTokensMapFile;
    if (fs::exists(map_file)) {
      try {
        auto j = nlohmann::json::parse(read_binary(map_file));
        if (j.is_object() && j.contains("pad_token")) {
          const auto& p = j["pad_token"];
          std::string name = p.is_string() ? p.get<std::string>()
                             : (p.is_object() && p.contains("content") && p["content"].is_string())
                                 ? p["content"].get<std::string>()
                                 : std::string();
          auto it = added_ids_.find(name);
          if (it != added_ids_.end()) return it->second;
        }
      } catch (const nlohmann::json::exception& e) {
        throw Error(fmt::format("'{}': not valid JSON: {}", map_file.string(), e.what()));
      }
    }
    if (sp_.pad_id() >= 0) return -1;
    for (const char* name : {"[PAD]", "<pad>"}) {
      auto it = added_ids_.find(name);
      if (it != added_ids_.end()) return it->second;
    }
    return -1;
  }

  std::string model_bytes_;  // the tokenizer.model file, byte for byte
  sentencepiece::SentencePieceProcessor sp_;
  int32_t base_size_ = 0;
  std::vector<std::string> added_;  // id = base_size_ + index
  std::unordered_map<std::string, int32_t> added_ids_;
  int32_t added_pad_ = -1;
};

// Feeds the trainer the lines of plain-text (or gzip) files, so the trained
// model does not record the input paths and its bytes depend only on the
// text and the options.
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(std::vector<fs::path> files) : files_(std::move(files)) { Next(); }
  ~LineIterator() override { close(); }

  bool done() const override { return done_; }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return status_; }

  void Next() override {
    while (!done_) {
      if (file_ == nullptr) {
        if (next_file_ >= files_.size()) {
          done_ = true;
          return;
        }
        current_ = files_[next_file_++];
        file_ = gzopen(current_.string().c_str(), "rb");
        if (file_ == nullptr) return fail(fmt::format("cannot open '{}'", current_.string()));
      }
      if (read_line()) return;
      close();
    }
  }

 private:
  // Reads the next line of the current file into line_; false at its end.
  bool read_line() {
    line_.clear();
    char buf[1 << 14];
    bool any = false;
    while (gzgets(file_, buf, sizeof buf) != nullptr) {
      any = true;
      line_ += buf;
      if (!line_.empty() && line_.back() == '\n') break;
    }
    int err = 0;
    const char* msg = gzerror(file_, &err);
    if (err != Z_OK && err != Z_STREAM_END) {
      fail(fmt::format("failed reading '{}': {}", current_.string(), msg ? msg : "unknown error"));
      return true;
    }
    if (!any) return false;
    while (!line_.empty() && (line_.back() == '\n' || line_.back() == '\r')) line_.pop_back();
    return true;
  }

  void fail(const std::string& message) {
    status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal, message);
    line_.clear();
    done_ = true;
  }

  void close() {
    if (file_ != nullptr) gzclose(file_);
    file_ = nullptr;
  }

  std::vector<fs::path> files_;
  size_t next_file_ = 0;
  fs::path current_;
  gzFile file_ = nullptr;
  std::string line_;
  bool done_ = false;
  sentencepiece::util::Status status_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir_or_file) {
  std::error_code ec;
  if (!fs::exists(dir_or_file, ec))
    throw Error(fmt::format("'{}' does not exist (expected a model directory with {} or tokenizer.json, or one "
                            "of those files)",
                            dir_or_file.string(), kModelFile));
  if (!fs::is_directory(dir_or_file, ec)) {
    if (dir_or_file.extension() == ".json") return load_bpe_tokenizer(dir_or_file);
    return std::make_unique<SentencePieceTokenizer>(read_binary(dir_or_file), dir_or_file);
  }
  // A SentencePiece model wins over a tokenizer.json (Llama/Mistral
  // directories often ship both; tess has always used the former).
  auto model = dir_or_file / kModelFile;
  if (!fs::exists(model, ec)) {
    auto json = dir_or_file / "tokenizer.json";
    if (fs::exists(json, ec)) return load_bpe_tokenizer(json);
    throw Error(fmt::format("model directory '{}' has no {} (SentencePiece) and no tokenizer.json "
                            "(byte-level BPE)",
                            dir_or_file.string(), kModelFile));
  }
  auto tok = std::make_unique<SentencePieceTokenizer>(read_binary(model), model);
  auto added = dir_or_file / kAddedTokensFile;
  if (fs::exists(added, ec)) tok->load_added_tokens(added, dir_or_file);
  return tok;
}

void train_sentencepiece(const SentencePieceTrainOptions& options) {
  if (options.inputs.empty()) throw Error("SentencePiece training needs at least one input file");
  for (const auto& f : options.inputs) {
    std::error_code ec;
    if (!fs::is_regular_file(f, ec))
      throw Error(fmt::format("SentencePiece training input '{}' does not exist or is not a file",
                              f.string()));
  }
  if (options.model_prefix.empty()) throw Error("SentencePiece training needs a model prefix");
  if (options.vocab_size <= 0)
    throw Error(fmt::format("SentencePiece vocab_size must be positive, got {}", options.vocab_size));
  if (options.model_type != "unigram" && options.model_type != "bpe")
    throw Error(fmt::format("SentencePiece model_type must be 'unigram' or 'bpe', got '{}'",
                            options.model_type));
  if (options.input_sentence_size < 0)
    throw Error(fmt::format("input_sentence_size must be >= 0, got {}", options.input_sentence_size));
  int threads = options.threads > 0 ? options.threads
                                    : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::clamp(threads, 1, 128);

  std::unordered_map<std::string, std::string> args = {
      {"model_type", options.model_type},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"character_coverage", fmt::format("{}", options.character_coverage)},
      {"input_sentence_size", std::to_string(options.input_sentence_size)},
      {"shuffle_input_sentence", options.input_sentence_size > 0 ? "true" : "false"},
      {"num_threads", std::to_string(threads)},
      // Llama convention.
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      // Every byte sequence is encodable; small corpora may end below vocab_size.
      {"byte_fallback", "true"},
      {"hard_vocab_limit", "false"},
      // Llama's normalisation: text round-trips exactly (no NFKC, whitespace kept).
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      // SentencePiece logs through its own logger; keep it quiet unless debugging.
      {"minloglevel", spdlog::get_level() <= spdlog::level::debug ? "0" : "1"},
  };
  // Seeds SentencePiece's random generators (a process-wide setting);
  // UINT32_MAX is reserved by SentencePiece for "random".
  sentencepiece::SetRandomGeneratorSeed(options.seed == UINT32_MAX ? 0 : options.seed);

  spdlog::info("training a {} SentencePiece model (vocab {}) on {} file(s) with {} thread(s)",
               options.model_type, options.vocab_size, options.inputs.size(), threads);
  LineIterator lines(options.inputs);
  std::string model_bytes;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model_bytes);
  if (!lines.status().ok()) throw Error(lines.status().error_message());
  if (!status.ok())
    throw Error(fmt::format("SentencePiece training on '{}'{} failed: {}", options.inputs[0].string(),
                            options.inputs.size() > 1 ? fmt::format(" (+{} more)", options.inputs.size() - 1) : "",
                            status.ToString()));

  // Check the result loads, then write <prefix>.model and <prefix>.vocab as
  // spm_train does.
  fs::path model_file = options.model_prefix;
  model_file += ".model";
  fs::path vocab_file = options.model_prefix;
  vocab_file += ".vocab";
  sentencepiece::SentencePieceProcessor sp;
  auto load = sp.LoadFromSerializedProto(model_bytes);
  if (!load.ok()) throw Error(fmt::format("SentencePiece produced an unusable model: {}", load.ToString()));
  if (model_file.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(model_file.parent_path(), ec);
    if (ec)
      throw Error(fmt::format("cannot create '{}': {}", model_file.parent_path().string(), ec.message()));
  }
  util::write_file_atomic(model_file, model_bytes);
  std::ostringstream vocab;
  for (int i = 0; i < sp.GetPieceSize(); ++i) vocab << sp.IdToPiece(i) << '\t' << sp.GetScore(i) << '\n';
  util::write_file_atomic(vocab_file, vocab.str());
  if (sp.GetPieceSize() < options.vocab_size)
    spdlog::warn("the corpus supports only {} pieces; the vocabulary is smaller than the requested {}",
                 sp.GetPieceSize(), options.vocab_size);
  spdlog::info("wrote {} ({} pieces)", model_file.string(), sp.GetPieceSize());
}

}  // namespace tess::data
