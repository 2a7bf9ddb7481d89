#include "data/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <optional>
#include <queue>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <pcre2.h>

#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/sha256.h"
#include "core/util/utf8.h"

namespace tess::data {
namespace fs = std::filesystem;
// std::map-backed: ordered_json inserts in linear time per key, which takes
// seconds on a 50k-token vocabulary. Saved files therefore list keys sorted.
using ojson = nlohmann::json;

namespace {

constexpr const char* kConfigFile = "tokenizer_config.json";
constexpr const char* kSpecialTokensMapFile = "special_tokens_map.json";
// The pre-tokenisation regex of GPT-2, which HF's ByteLevel(use_regex) applies.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---- UTF-8 ------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence at s[i], or the negated length of
// its maximal invalid subpart (the bytes one U+FFFD replaces, as in Rust's
// String::from_utf8_lossy and the Unicode recommendation).
int utf8_sequence(std::string_view s, size_t i) {
  auto b = static_cast<uint8_t>(s[i]);
  if (b < 0x80) return 1;
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  int len = 1;
  for (int k = 0; k < need; ++k) {
    if (i + len >= s.size()) return -len;
    auto c = static_cast<uint8_t>(s[i + len]);
    if (c < lo || c > hi) return -len;
    lo = 0x80;
    hi = 0xBF;
    ++len;
  }
  return len;
}

// Bytes of the character at s[i] (1 for a byte that starts no valid one).
size_t char_len(std::string_view s, size_t i) {
  int n = utf8_sequence(s, i);
  return n > 0 ? static_cast<size_t>(n) : 1;
}

char32_t decode_char(std::string_view s, size_t i, size_t len) {
  auto b = static_cast<uint8_t>(s[i]);
  if (len == 1) return b;
  char32_t cp = b & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  return cp;
}


// Bytes -> text, each maximal invalid subpart replaced by U+FFFD.
std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    int n = utf8_sequence(bytes, i);
    if (n > 0) {
      out.append(bytes.substr(i, static_cast<size_t>(n)));
      i += static_cast<size_t>(n);
    } else {
      out += "\xEF\xBF\xBD";
      i += static_cast<size_t>(-n);
    }
  }
  return out;
}

// Rust's char::is_whitespace: the Unicode White_Space property.
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// ---- the byte-level alphabet ------------------------------------------------

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// others are shifted to U+0100.. in byte order.
struct ByteAlphabet {
  std::array<std::string, 256> encoded;  // byte -> UTF-8 of its character
  std::array<int16_t, 0x144> decoded;    // code point -> byte, -1 when not in the alphabet

  ByteAlphabet() {
    decoded.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      util::append_utf8(encoded[b], cp);
      decoded[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// ---- regexes ----------------------------------------------------------------

// HF compiles its regexes with Oniguruma (Ruby syntax); PCRE2 reads the same
// patterns except for a few escapes, rewritten here: \s/\S (Oniguruma: the
// White_Space property; PCRE2 10.42 also counts U+180E), \w/\W (Oniguruma:
// letters, marks, decimal digits, connector punctuation; PCRE2: \p{L}\p{N}_)
// and \h/\H (Oniguruma: a hex digit; PCRE2: horizontal space). \W and \H
// inside a character class are left to PCRE2.
std::string oniguruma_to_pcre2(const std::string& pattern) {
  static const char* kWord = R"(\p{L}\p{M}\p{Nd}\p{Pc})";
  static const char* kHex = "0-9a-fA-F";
  std::string out;
  bool in_class = false;
  size_t class_start = 0;  // index in `pattern` just after the opening [ (and ^)
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char n = pattern[++i];
      if (n == 'Q') {  // \Q...\E is literal
        size_t end = pattern.find("\\E", i + 1);
        size_t stop = end == std::string::npos ? pattern.size() : end + 2;
        out.append(pattern, i - 1, stop - (i - 1));
        i = stop - 1;
      } else if (n == 's') {
        out += R"(\p{White_Space})";
      } else if (n == 'S') {
        out += R"(\P{White_Space})";
      } else if (n == 'w') {
        out += in_class ? std::string(kWord) : fmt::format("[{}]", kWord);
      } else if (n == 'W' && !in_class) {
        out += fmt::format("[^{}]", kWord);
      } else if (n == 'h') {
        out += in_class ? std::string(kHex) : fmt::format("[{}]", kHex);
      } else if (n == 'H' && !in_class) {
        out += fmt::format("[^{}]", kHex);
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = i + 1;
      if (class_start < pattern.size() && pattern[class_start] == '^') ++class_start;
    } else if (in_class && c == ']' && i != class_start) {
      in_class = false;
    }
    out += c;
  }
  return out;
}

// A literal string as a PCRE2 pattern.
std::string escape_regex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out += '\\';
    out += c;
  }
  return out;
}

// Match data and JIT stack of the calling thread (PCRE2 code objects are
// shared; these are not).
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
  MatchScratch() {
    if (data == nullptr || context == nullptr || stack == nullptr) throw Error("out of memory for PCRE2 matching");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

MatchScratch& match_scratch() {
  thread_local MatchScratch scratch;
  return scratch;
}

struct Span {
  size_t start, end;
  bool match;
};

class Regex {
 public:
  // `where` names the pattern's origin in error messages.
  Regex(const std::string& pattern, const std::string& where) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    // MULTILINE: in Oniguruma's Ruby syntax ^ and $ match at line breaks.
    std::string translated = oniguruma_to_pcre2(pattern);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE, &code, &offset,
                          nullptr);
    if (code_ == nullptr)
      throw Error(fmt::format("{}: the regex '{}' does not compile at offset {}: {}", where, pattern, offset,
                              message(code)));
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The match starting exactly at `pos`, as its end, or nullopt.
  std::optional<size_t> match_at(std::string_view text, size_t pos) const {
    auto& s = match_scratch();
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, PCRE2_ANCHORED,
                         s.data, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
    if (rc < 0) throw Error(fmt::format("regex matching failed: {}", message(rc)));
    return pcre2_get_ovector_pointer(s.data)[1];
  }

  // HF's find_matches: `text` cut into consecutive spans, each a match of
  // the regex or the text between two matches. Empty matches follow
  // Oniguruma's iterator (the one HF uses): one right after the previous
  // match is skipped.
  void find_matches(std::string_view text, std::vector<Span>& out) const {
    out.clear();
    auto& s = match_scratch();
    size_t prev = 0, search = 0;
    std::optional<size_t> last_match_end;
    while (search <= text.size()) {
      int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), search, 0, s.data,
                           s.context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0)
        throw Error(fmt::format("regex matching failed on a piece of {} bytes: {}", text.size(), message(rc)));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
      size_t start = ov[0], end = std::max(ov[0], ov[1]);
      if (start == end && last_match_end == end) {
        search += search < text.size() ? char_len(text, search) : 1;
        continue;
      }
      search = end;
      last_match_end = end;
      if (prev != start) out.push_back({prev, start, false});
      out.push_back({start, end, true});
      prev = end;
    }
    if (prev != text.size()) out.push_back({prev, text.size(), false});
  }

 private:
  static std::string message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return reinterpret_cast<const char*>(buf);
  }
  pcre2_code* code_ = nullptr;
};

// ---- pre-tokenizers ---------------------------------------------------------

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizer {
  enum class Kind { ByteLevel, Split } kind = Kind::Split;  // Digits is a Split on \p{N}
  bool add_prefix_space = false;
  std::shared_ptr<const Regex> regex;  // null: ByteLevel without use_regex
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
};

// HF's NormalizedString::split: which spans of `spans` become pieces, as
// (start, end) pairs; empty ones are dropped.
void apply_behavior(std::vector<Span>& spans, Behavior behavior, bool invert,
                    std::vector<std::pair<size_t, size_t>>& out) {
  out.clear();
  if (invert)
    for (auto& s : spans) s.match = !s.match;
  auto keep = [&out](size_t a, size_t b) {
    if (a != b) out.emplace_back(a, b);
  };
  // Left to right: a span extends the last piece when `joins(span, previous match)`.
  auto merge_forward = [&](auto joins) {
    std::vector<std::pair<size_t, size_t>> acc;
    bool previous = false;
    for (const auto& s : spans) {
      if (joins(s, previous) && !acc.empty())
        acc.back().second = s.end;
      else
        acc.emplace_back(s.start, s.end);
      previous = s.match;
    }
    for (const auto& [a, b] : acc) keep(a, b);
  };
  switch (behavior) {
    case Behavior::Isolated:
      for (const auto& s : spans) keep(s.start, s.end);
      return;
    case Behavior::Removed:
      for (const auto& s : spans)
        if (!s.match) keep(s.start, s.end);
      return;
    case Behavior::Contiguous:  // runs of equal match state become one piece
      return merge_forward([](const Span& s, bool previous) { return s.match == previous; });
    case Behavior::MergedWithPrevious:  // a match joins the piece before it
      return merge_forward([](const Span& s, bool previous) { return s.match && !previous; });
    case Behavior::MergedWithNext: {
      std::vector<std::pair<size_t, size_t>> acc;
      bool previous = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous && !acc.empty())
          acc.back().first = it->start;
        else
          acc.emplace_back(it->start, it->end);
        previous = it->match;
      }
      for (auto it = acc.rbegin(); it != acc.rend(); ++it) keep(it->first, it->second);
      return;
    }
  }
}

// ---- tokenizer.json reading ---------------------------------------------------

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;

  // As HF serialises it (its key order), for save() and the hashes.
  ojson to_json() const {
    return ojson{{"id", id},         {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
                 {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}};
  }
};

// Errors name the file and the JSON key.
class JsonReader {
 public:
  explicit JsonReader(fs::path file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw Error(fmt::format("{} in '{}' at {}", what, file_.string(), where));
  }
  const ojson& member(const ojson& obj, const char* key, const std::string& where) const {
    if (!obj.is_object()) fail(where, "expected a JSON object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(join(where, key), "missing key");
    return *it;
  }
  std::string string_of(const ojson& obj, const char* key, const std::string& where) const {
    const auto& v = member(obj, key, where);
    if (!v.is_string()) fail(join(where, key), "expected a string");
    return v.get<std::string>();
  }
  // A string or null (nullopt); absent counts as null.
  std::optional<std::string> optional_string(const ojson& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) fail(join(where, key), "expected a string or null");
    return it->get<std::string>();
  }
  bool bool_of(const ojson& obj, const char* key, const std::string& where, bool fallback) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(join(where, key), "expected true or false");
    return it->get<bool>();
  }
  static std::string join(const std::string& where, const char* key) {
    return where.empty() ? std::string(key) : where + "." + key;
  }
  const fs::path& file() const { return file_; }

 private:
  fs::path file_;
};

ojson parse_json_file(const fs::path& file) {
  std::string text = util::read_file(file);
  try {
    return ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("'{}': not valid JSON: {}", file.string(), e.what()));
  }
}

// ---- the tokenizer ------------------------------------------------------------

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(const fs::path& file) : source_(file) {
    doc_ = parse_json_file(file);
    JsonReader r(file);
    if (!doc_.is_object()) r.fail("the top level", "expected a JSON object (an HF tokenizer.json)");
    read_model(r, r.member(doc_, "model", ""));
    read_added_tokens(r);
    if (auto it = doc_.find("normalizer"); it != doc_.end() && !it->is_null()) {
      std::string type = it->is_object() && it->contains("type") && (*it)["type"].is_string()
                             ? (*it)["type"].get<std::string>()
                             : it->dump();
      r.fail("normalizer", fmt::format("unsupported normalizer type '{}' (tess reads byte-level BPE "
                                       "tokenizers without a normalizer)", type));
    }
    auto pre = doc_.find("pre_tokenizer");
    if (pre == doc_.end() || pre->is_null())
      r.fail("pre_tokenizer", "no pre_tokenizer: tess reads byte-level BPE tokenizers, which need a ByteLevel one");
    read_pre_tokenizer(r, *pre, "pre_tokenizer");
    if (std::none_of(pre_.begin(), pre_.end(), [](const auto& p) { return p.kind == PreTokenizer::Kind::ByteLevel; }))
      r.fail("pre_tokenizer", "no ByteLevel pre-tokenizer: tess reads byte-level BPE tokenizers only");
    read_decoder(r);
    resolve_special_ids(file.parent_path());
    update_hashes();
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    // Added tokens first: normalized=false ones on the raw text, then the
    // others on what is left (with no normalizer the text is the same).
    std::vector<std::pair<std::string_view, int32_t>> segments = {{text, -1}};
    split_added(segments, false);
    split_added(segments, true);
    std::vector<std::string> pieces;
    for (const auto& [segment, id] : segments) {
      if (id >= 0) {
        ids.push_back(id);
        continue;
      }
      pre_tokenize(segment, pieces);
      for (const auto& p : pieces) bpe(p, ids);
    }
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    const auto& alphabet = byte_alphabet();
    std::string bytes;
    for (int32_t id : ids) {
      check_id(id);
      if (is_special(id)) continue;
      const std::string& token = tokens_[static_cast<size_t>(id)];
      // HF's ByteLevel decoder: a token spelled in the byte alphabet stands for
      // those bytes; any other (an added token such as "a b") for its own text.
      std::string mapped;
      bool in_alphabet = true;
      for (size_t i = 0; i < token.size() && in_alphabet;) {
        size_t n = char_len(token, i);
        char32_t cp = decode_char(token, i, n);
        if (cp < alphabet.decoded.size() && alphabet.decoded[cp] >= 0)
          mapped += static_cast<char>(alphabet.decoded[cp]);
        else
          in_alphabet = false;
        i += n;
      }
      bytes += in_alphabet ? mapped : token;
    }
    return utf8_lossy(bytes);
  }

  std::string piece(int32_t id) const override {
    check_id(id);
    return tokens_[static_cast<size_t>(id)];
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const override { return special_ids_[0]; }
  int32_t eos_id() const override { return special_ids_[1]; }
  int32_t pad_id() const override { return special_ids_[2]; }
  int32_t unk_id() const override { return special_ids_[3]; }

  int32_t add_special_token(const std::string& piece, bool as_pad) override {
    if (piece.empty()) throw Error("cannot add an empty special token");
    int32_t id = known_id(piece);
    if (id < 0) {
      AddedToken t;
      t.id = vocab_size();
      t.content = piece;
      t.special = true;
      add_token(t);
      id = t.id;
      build_matchers();
      update_hashes();
    }
    if (as_pad) special_ids_[2] = id;
    return id;
  }

  std::string content_hash() const override { return content_hash_; }
  std::string base_hash() const override { return base_hash_; }
  std::string kind() const override { return "bpe"; }

  void save(const fs::path& dir) const override {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(fmt::format("cannot create '{}': {}", dir.string(), ec.message()));
    ojson doc = doc_;
    doc["added_tokens"] = added_json(false);
    util::write_file_atomic(dir / "tokenizer.json", doc.dump(2) + "\n");

    ojson config = config_.is_object() ? config_ : ojson::object();
    // A model-specific class (SmolLM2 says GPT2Tokenizer) makes transformers
    // rebuild the pipeline from vocab and merges and drop parts of
    // tokenizer.json (e.g. a Digits pre-tokenizer); this one reads it as is.
    config["tokenizer_class"] = "PreTrainedTokenizerFast";
    ojson map = special_map_.is_object() ? special_map_ : ojson::object();
    for (size_t k = 0; k < kSpecialNames.size(); ++k) {
      std::string key = std::string(kSpecialNames[k]) + "_token";
      if (special_ids_[k] >= 0) {
        config[key] = tokens_[static_cast<size_t>(special_ids_[k])];
        map[key] = tokens_[static_cast<size_t>(special_ids_[k])];
      } else if (config.contains(key)) {
        config[key] = nullptr;
        map.erase(key);
      }
    }
    if (config.contains("added_tokens_decoder")) {
      ojson decoder = ojson::object();
      for (const auto& t : added_) {
        ojson j = t.to_json();
        j.erase("id");
        decoder[std::to_string(t.id)] = j;
      }
      config["added_tokens_decoder"] = decoder;
    }
    util::write_file_atomic(dir / kConfigFile, config.dump(2) + "\n");
    util::write_file_atomic(dir / kSpecialTokensMapFile, map.dump(2) + "\n");
    // Stale files would change the tokenizer on load: a tokenizer.model takes
    // precedence over tokenizer.json, an added_tokens.json adds tokens.
    for (const char* stale : {"tokenizer.model", "added_tokens.json"}) fs::remove(dir / stale, ec);
  }

 private:
  static constexpr std::array<const char*, 4> kSpecialNames = {"bos", "eos", "pad", "unk"};

  void read_model(const JsonReader& r, const ojson& model) {
    std::string type = r.string_of(model, "type", "model");
    if (type != "BPE") r.fail("model.type", fmt::format("unsupported model type '{}' (tess reads BPE)", type));
    const auto& vocab = r.member(model, "vocab", "model");
    if (!vocab.is_object()) r.fail("model.vocab", "expected an object {\"token\": id, ...}");
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() >= INT32_MAX)
        r.fail("model.vocab", fmt::format("the id of '{}' is not a non-negative integer", it.key()));
      max_id = std::max(max_id, it.value().get<int64_t>());
    }
    model_size_ = static_cast<int32_t>(max_id + 1);
    tokens_.assign(static_cast<size_t>(model_size_), std::string());
    present_.assign(static_cast<size_t>(model_size_), false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      auto id = it.value().get<int32_t>();
      if (present_[static_cast<size_t>(id)])
        r.fail("model.vocab", fmt::format("'{}' and '{}' share the id {}", tokens_[static_cast<size_t>(id)],
                                          it.key(), id));
      tokens_[static_cast<size_t>(id)] = it.key();
      present_[static_cast<size_t>(id)] = true;
      vocab_.emplace(it.key(), id);
    }

    if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
      if (!it->is_number() || it->get<double>() != 0.0)
        r.fail("model.dropout", "BPE dropout must be null or 0 (tess tokenizes deterministically)");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      auto v = r.optional_string(model, key, "model");
      if (v && !v->empty())
        r.fail(JsonReader::join("model", key), fmt::format("'{}' is not supported with byte-level BPE (expected null)", *v));
    }
    fuse_unk_ = r.bool_of(model, "fuse_unk", "model", false);
    byte_fallback_ = r.bool_of(model, "byte_fallback", "model", false);
    ignore_merges_ = r.bool_of(model, "ignore_merges", "model", false);
    if (auto unk = r.optional_string(model, "unk_token", "model")) {
      auto it = vocab_.find(*unk);
      if (it == vocab_.end()) r.fail("model.unk_token", fmt::format("'{}' is not in model.vocab", *unk));
      model_unk_ = it->second;
    }

    const auto& merges = r.member(model, "merges", "model");
    if (!merges.is_array()) r.fail("model.merges", "expected an array of \"a b\" strings or [\"a\", \"b\"] pairs");
    merges_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const auto& m = merges[i];
      std::string where = fmt::format("model.merges[{}]", i);
      std::string a, b;
      if (m.is_string()) {
        auto s = m.get<std::string>();
        auto space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          r.fail(where, fmt::format("'{}' is not two tokens separated by one space", s));
        a = s.substr(0, space);
        b = s.substr(space + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        r.fail(where, "expected a string \"a b\" or a pair [\"a\", \"b\"]");
      }
      auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
      if (ia == vocab_.end()) r.fail(where, fmt::format("'{}' is not in model.vocab", a));
      if (ib == vocab_.end()) r.fail(where, fmt::format("'{}' is not in model.vocab", b));
      if (ic == vocab_.end()) r.fail(where, fmt::format("the merged token '{}' is not in model.vocab", a + b));
      merges_[pair_key(ia->second, ib->second)] = {static_cast<int32_t>(i), ic->second};  // a later duplicate wins
    }
  }

  void read_added_tokens(const JsonReader& r) {
    auto it = doc_.find("added_tokens");
    if (it == doc_.end() || it->is_null()) return;
    if (!it->is_array()) r.fail("added_tokens", "expected an array");
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& j = (*it)[i];
      std::string where = fmt::format("added_tokens[{}]", i);
      const auto& id = r.member(j, "id", where);
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX)
        r.fail(where + ".id", "expected a non-negative integer");
      AddedToken t;
      t.id = id.get<int32_t>();
      t.content = r.string_of(j, "content", where);
      if (t.content.empty()) r.fail(where + ".content", "an added token cannot be empty");
      t.single_word = r.bool_of(j, "single_word", where, false);
      t.lstrip = r.bool_of(j, "lstrip", where, false);
      t.rstrip = r.bool_of(j, "rstrip", where, false);
      t.normalized = r.bool_of(j, "normalized", where, false);
      t.special = r.bool_of(j, "special", where, false);
      for (const auto& other : added_)
        if (other.id == t.id || other.content == t.content)
          r.fail(where, fmt::format("'{}' (id {}) repeats the added token '{}' (id {})", t.content, t.id,
                                    other.content, other.id));
      add_token(t);
    }
    build_matchers();
  }

  void add_token(const AddedToken& t) {
    auto id = static_cast<size_t>(t.id);
    if (id >= tokens_.size()) {
      tokens_.resize(id + 1);
      present_.resize(id + 1, false);
    }
    tokens_[id] = t.content;
    present_[id] = true;
    added_.push_back(t);
    std::sort(added_.begin(), added_.end(), [](const auto& x, const auto& y) { return x.id < y.id; });
    added_ids_[t.content] = t.id;
  }

  void read_pre_tokenizer(const JsonReader& r, const ojson& j, const std::string& where) {
    std::string type = r.string_of(j, "type", where);
    if (type == "Sequence") {
      const auto& list = r.member(j, "pretokenizers", where);
      if (!list.is_array()) r.fail(where + ".pretokenizers", "expected an array");
      for (size_t i = 0; i < list.size(); ++i)
        read_pre_tokenizer(r, list[i], fmt::format("{}.pretokenizers[{}]", where, i));
      return;
    }
    PreTokenizer p;
    if (type == "ByteLevel") {
      p.kind = PreTokenizer::Kind::ByteLevel;
      p.add_prefix_space = r.bool_of(j, "add_prefix_space", where, true);
      if (r.bool_of(j, "use_regex", where, true)) p.regex = regex(kGpt2Pattern, where);
    } else if (type == "Digits") {
      p.regex = regex(R"(\p{N})", where);
      p.behavior = r.bool_of(j, "individual_digits", where, false) ? Behavior::Isolated : Behavior::Contiguous;
    } else if (type == "Split") {
      const auto& pattern = r.member(j, "pattern", where);
      if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string())
        p.regex = regex(pattern["Regex"].get<std::string>(), where + ".pattern.Regex");
      else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string())
        p.regex = regex(escape_regex(pattern["String"].get<std::string>()), where + ".pattern.String");
      else
        r.fail(where + ".pattern", "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}");
      std::string behavior = r.string_of(j, "behavior", where);
      static const std::vector<std::pair<std::string, Behavior>> kBehaviors = {
          {"Removed", Behavior::Removed},
          {"Isolated", Behavior::Isolated},
          {"MergedWithPrevious", Behavior::MergedWithPrevious},
          {"MergedWithNext", Behavior::MergedWithNext},
          {"Contiguous", Behavior::Contiguous}};
      auto b = std::find_if(kBehaviors.begin(), kBehaviors.end(), [&](const auto& x) { return x.first == behavior; });
      if (b == kBehaviors.end())
        r.fail(where + ".behavior", fmt::format("unknown split behavior '{}' (expected Removed, Isolated, "
                                                "MergedWithPrevious, MergedWithNext or Contiguous)", behavior));
      p.behavior = b->second;
      p.invert = r.bool_of(j, "invert", where, false);
    } else {
      r.fail(where, fmt::format("unsupported pre_tokenizer type '{}' (tess reads ByteLevel, Split, Digits and "
                                "Sequence)", type));
    }
    pre_.push_back(std::move(p));
  }

  // Regexes are compiled once per pattern.
  std::shared_ptr<const Regex> regex(const std::string& pattern, const std::string& where) {
    auto it = regexes_.find(pattern);
    if (it != regexes_.end()) return it->second;
    auto re = std::make_shared<const Regex>(pattern, fmt::format("'{}' at {}", source_.string(), where));
    regexes_.emplace(pattern, re);
    return re;
  }

  void read_decoder(const JsonReader& r) {
    const auto& d = r.member(doc_, "decoder", "");
    if (d.is_null()) r.fail("decoder", "no decoder: tess reads byte-level BPE tokenizers, which need a ByteLevel one");
    std::string type = r.string_of(d, "type", "decoder");
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
      const auto& list = r.member(d, "decoders", "decoder");
      if (!list.is_array() || list.empty()) r.fail("decoder.decoders", "expected a non-empty array");
      for (size_t i = 0; i < list.size(); ++i) {
        std::string where = fmt::format("decoder.decoders[{}]", i);
        std::string t = r.string_of(list[i], "type", where);
        if (t != "ByteLevel")
          r.fail(where, fmt::format("unsupported decoder type '{}' (tess reads ByteLevel)", t));
      }
      return;
    }
    r.fail("decoder", fmt::format("unsupported decoder type '{}' (tess reads ByteLevel)", type));
  }

  // See the header for the rule.
  void resolve_special_ids(const fs::path& dir) {
    auto config_file = dir / kConfigFile, map_file = dir / kSpecialTokensMapFile;
    std::error_code ec;
    if (fs::exists(config_file, ec)) config_ = parse_json_file(config_file);
    if (fs::exists(map_file, ec)) special_map_ = parse_json_file(map_file);
    static const std::array<std::vector<const char*>, 4> kWellKnown = {
        std::vector<const char*>{"<s>", "<|begin_of_text|>", "<|startoftext|>"},
        std::vector<const char*>{"</s>", "<|end_of_text|>", "<|endoftext|>"},
        std::vector<const char*>{"<pad>", "[PAD]", "<|pad|>"},
        std::vector<const char*>{"<unk>", "[UNK]"}};
    for (size_t k = 0; k < kSpecialNames.size(); ++k) {
      std::string key = std::string(kSpecialNames[k]) + "_token";
      int32_t id = -1;
      bool decided = false;
      for (const auto& [json, file] : {std::pair{&config_, &config_file}, std::pair{&special_map_, &map_file}}) {
        if (decided || !json->is_object() || !json->contains(key)) continue;
        decided = true;
        const auto& v = (*json)[key];
        if (v.is_null()) break;
        std::string name;
        if (v.is_string())
          name = v.get<std::string>();
        else if (v.is_object() && v.contains("content") && v["content"].is_string())
          name = v["content"].get<std::string>();
        else
          throw Error(fmt::format("'{}': {} must be a string, {{\"content\": ...}} or null", file->string(), key));
        id = known_id(name);
        if (id < 0)
          throw Error(fmt::format("'{}': {} '{}' is not in the vocabulary of '{}'", file->string(), key, name,
                                  source_.string()));
      }
      if (!decided && k == 3 && model_unk_ >= 0) {
        id = model_unk_;
        decided = true;
      }
      if (!decided) {
        for (const char* name : kWellKnown[k]) {
          auto it = added_ids_.find(name);
          if (it != added_ids_.end() && special_added(it->second)) {
            id = it->second;
            break;
          }
        }
      }
      special_ids_[k] = id;
    }
  }

  // ---- hashing ----

  ojson added_json(bool base_only) const {
    ojson list = ojson::array();
    for (const auto& t : added_)
      if (!base_only || t.id < model_size_) list.push_back(t.to_json());
    return list;
  }

  void update_hashes() {
    ojson base = doc_;
    base["added_tokens"] = added_json(true);
    std::string canonical = base.dump();
    base_hash_ = util::sha256_hex(canonical);
    util::Sha256 h;
    h.update(canonical);
    for (const auto& t : added_)
      if (t.id >= model_size_) {
        h.update("\n");
        h.update(t.to_json().dump());
      }
    content_hash_ = h.hex_digest();
  }

  // ---- encoding ----

  struct Matcher {
    std::array<std::vector<const AddedToken*>, 256> by_first_byte;  // longest first
    bool empty = true;
  };

  void build_matchers() {
    for (bool normalized : {false, true}) {
      Matcher& m = matchers_[normalized ? 1 : 0];
      m = Matcher();
      for (const auto& t : added_) {
        if (t.normalized != normalized) continue;
        m.by_first_byte[static_cast<uint8_t>(t.content[0])].push_back(&t);
        m.empty = false;
      }
      for (auto& list : m.by_first_byte)
        std::stable_sort(list.begin(), list.end(),
                         [](const auto* a, const auto* b) { return a->content.size() > b->content.size(); });
    }
    // The Rust regex crate's \w, which HF's single_word check uses.
    if (!word_char_)
      word_char_ = std::make_shared<const Regex>(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", "tess");
  }

  // Whether the character before `pos` (before=true) or at `pos` is a word
  // character (Unicode \w).
  bool word_char_near(std::string_view s, size_t pos, bool before) const {
    if (before) {
      if (pos == 0) return false;
      size_t start = pos - 1;
      while (start > 0 && pos - start < 4 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
      auto end = word_char_->match_at(s, start);
      return end && *end == pos;
    }
    return pos < s.size() && word_char_->match_at(s, pos).has_value();
  }

  // HF's AddedVocabulary::find_matches on each text segment (id -1): cuts out
  // the added tokens of one kind, leftmost-longest, honouring single_word,
  // lstrip and rstrip.
  void split_added(std::vector<std::pair<std::string_view, int32_t>>& segments, bool normalized) const {
    const Matcher& m = matchers_[normalized ? 1 : 0];
    if (m.empty) return;
    std::vector<std::pair<std::string_view, int32_t>> out;
    for (const auto& [s, seg_id] : segments) {
      if (seg_id >= 0) {
        out.emplace_back(s, seg_id);
        continue;
      }
      size_t start_offset = 0, pos = 0;
      while (pos < s.size()) {
        const AddedToken* found = nullptr;
        size_t at = pos;
        for (; at < s.size() && found == nullptr; ++at)
          for (const AddedToken* t : m.by_first_byte[static_cast<uint8_t>(s[at])])
            if (s.compare(at, t->content.size(), t->content) == 0) {
              found = t;
              break;
            }
        if (found == nullptr) break;
        size_t start = at - 1, stop = start + found->content.size();
        pos = stop;
        if (start < start_offset) continue;  // inside whitespace an rstrip took
        if (found->single_word && (word_char_near(s, start, true) || word_char_near(s, stop, false))) continue;
        if (found->lstrip) {
          size_t k = start;
          while (k > start_offset) {
            size_t c = k - 1;
            while (c > 0 && (static_cast<uint8_t>(s[c]) & 0xC0) == 0x80 && k - c < 4) --c;
            size_t n = char_len(s, c);
            if (c + n != k || !is_white_space(decode_char(s, c, n))) break;
            k = c;
          }
          start = k;
        }
        if (found->rstrip) {
          while (stop < s.size()) {
            size_t n = char_len(s, stop);
            if (utf8_sequence(s, stop) <= 0 || !is_white_space(decode_char(s, stop, n))) break;
            stop += n;
          }
        }
        if (start > start_offset) out.emplace_back(s.substr(start_offset, start - start_offset), -1);
        out.emplace_back(s.substr(start, stop - start), found->id);
        start_offset = stop;
      }
      if (start_offset < s.size()) out.emplace_back(s.substr(start_offset), -1);
    }
    segments = std::move(out);
  }

  void pre_tokenize(std::string_view text, std::vector<std::string>& pieces) const {
    pieces.clear();
    if (text.empty()) return;
    pieces.emplace_back(text);
    std::vector<std::string> next;
    std::vector<Span> spans;
    std::vector<std::pair<size_t, size_t>> kept;
    const auto& alphabet = byte_alphabet();
    for (const auto& p : pre_) {
      next.clear();
      for (auto& piece : pieces) {
        if (p.kind == PreTokenizer::Kind::ByteLevel && p.add_prefix_space && piece[0] != ' ') piece = " " + piece;
        if (p.regex) {
          p.regex->find_matches(piece, spans);
          apply_behavior(spans, p.kind == PreTokenizer::Kind::ByteLevel ? Behavior::Isolated : p.behavior,
                         p.invert, kept);
        } else {
          kept.assign(1, {0, piece.size()});
        }
        for (const auto& [a, b] : kept) {
          if (p.kind != PreTokenizer::Kind::ByteLevel) {
            next.emplace_back(piece, a, b - a);
            continue;
          }
          std::string mapped;
          mapped.reserve(2 * (b - a));
          for (size_t i = a; i < b; ++i) mapped += alphabet.encoded[static_cast<uint8_t>(piece[i])];
          next.push_back(std::move(mapped));
        }
      }
      pieces.swap(next);
    }
  }

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  // One pre-token through the BPE model (HF's BPE::tokenize), cached.
  void bpe(const std::string& word, std::vector<int32_t>& ids) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    {
      std::shared_lock lock(cache_mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> out = merge_word(word);
    ids.insert(ids.end(), out.begin(), out.end());
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(word, std::move(out));
  }

  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool removed;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  // Characters -> ids (unknown ones through byte fallback or unk), then the
  // merges by rank, the leftmost first among equal ranks: HF's
  // Word::merge_all, O(n log n) in the word's length.
  std::vector<int32_t> merge_word(std::string_view w) const {
    std::vector<Symbol> symbols;
    symbols.reserve(w.size());
    auto push = [&symbols](int32_t id) {
      auto n = static_cast<int32_t>(symbols.size());
      symbols.push_back({id, n - 1, n + 1, false});
    };
    int32_t unk = -1;  // a pending unk (fused across unknown characters with fuse_unk)
    for (size_t i = 0; i < w.size();) {
      size_t n = char_len(w, i);
      std::string c(w.substr(i, n));
      i += n;
      auto it = vocab_.find(c);
      if (it != vocab_.end()) {
        if (unk >= 0) push(unk), unk = -1;
        push(it->second);
        continue;
      }
      if (byte_fallback_) {
        std::vector<int32_t> bytes;
        for (unsigned char b : c) {
          auto bt = vocab_.find(fmt::format("<0x{:02X}>", b));
          if (bt == vocab_.end()) break;
          bytes.push_back(bt->second);
        }
        if (bytes.size() == c.size()) {
          if (unk >= 0) push(unk), unk = -1;
          for (int32_t id : bytes) push(id);
          continue;
        }
      }
      if (model_unk_ >= 0) {
        if (unk >= 0 && !fuse_unk_) push(unk);
        unk = model_unk_;
      }
      // Without unk_token HF drops the character; byte-level vocabularies
      // hold all 256 byte characters, so this does not happen there.
    }
    if (unk >= 0) push(unk);
    if (symbols.empty()) return {};
    symbols.back().next = -1;

    std::priority_queue<Candidate> queue;
    auto consider = [&](int32_t pos) {
      int32_t next = symbols[static_cast<size_t>(pos)].next;
      if (next < 0) return;
      auto it = merges_.find(pair_key(symbols[static_cast<size_t>(pos)].id, symbols[static_cast<size_t>(next)].id));
      if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
    while (!queue.empty()) {
      Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[static_cast<size_t>(top.pos)];
      if (left.removed || left.next < 0) continue;
      Symbol& right = symbols[static_cast<size_t>(left.next)];
      // Skip entries made stale by earlier merges.
      auto it = merges_.find(pair_key(left.id, right.id));
      if (it == merges_.end() || it->second.second != top.new_id) continue;
      left.id = top.new_id;
      right.removed = true;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.pos;
      if (left.prev >= 0) consider(left.prev);
      consider(top.pos);
    }
    std::vector<int32_t> out;
    for (const auto& s : symbols)
      if (!s.removed) out.push_back(s.id);
    return out;
  }

  // ---- ids ----

  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size())
      throw Error(fmt::format("token id {} is outside the vocabulary (size {})", id, vocab_size()));
    if (!present_[static_cast<size_t>(id)])
      throw Error(fmt::format("token id {} is not assigned in '{}'", id, source_.string()));
  }

  bool special_added(int32_t id) const {
    for (const auto& t : added_)
      if (t.id == id) return t.special;
    return false;
  }

  bool is_special(int32_t id) const {
    return std::find(special_ids_.begin(), special_ids_.end(), id) != special_ids_.end() || special_added(id);
  }

  int32_t known_id(const std::string& piece) const {
    auto a = added_ids_.find(piece);
    if (a != added_ids_.end()) return a->second;
    auto v = vocab_.find(piece);
    return v != vocab_.end() ? v->second : -1;
  }

  static constexpr size_t kCacheEntries = 1 << 16;

  fs::path source_;
  ojson doc_;                     // tokenizer.json as read (added_tokens rewritten on save)
  ojson config_, special_map_;    // tokenizer_config.json / special_tokens_map.json, if any
  std::unordered_map<std::string, int32_t> vocab_;  // the model's vocabulary
  int32_t model_size_ = 0;        // max model id + 1
  std::vector<std::string> tokens_;  // id -> token, model and added
  std::vector<bool> present_;        // ids with a token
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a, b) -> (rank, merged id)
  bool ignore_merges_ = false, fuse_unk_ = false, byte_fallback_ = false;
  int32_t model_unk_ = -1;
  std::vector<AddedToken> added_;  // by id
  std::unordered_map<std::string, int32_t> added_ids_;
  std::array<Matcher, 2> matchers_;  // normalized=false, normalized=true
  std::shared_ptr<const Regex> word_char_;
  std::unordered_map<std::string, std::shared_ptr<const Regex>> regexes_;
  std::vector<PreTokenizer> pre_;  // a Sequence flattened
  std::array<int32_t, 4> special_ids_ = {-1, -1, -1, -1};  // bos, eos, pad, unk
  std::string base_hash_, content_hash_;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const fs::path& tokenizer_json) {
  return std::make_unique<BpeTokenizer>(tokenizer_json);
}

}  // namespace tess::data
