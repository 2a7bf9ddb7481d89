#include "data/token_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/sha256.h"

namespace tess::data {
namespace fs = std::filesystem;
using nlohmann::json;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards are little-endian");

// ---- meta.json ----------------------------------------------------------------

const SplitInfo& DatasetMeta::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "validation") return validation;
  throw Error(fmt::format("unknown dataset split '{}' (expected train or validation)", name));
}

namespace {

using ojson = nlohmann::ordered_json;  // meta.json keeps the field order below

ojson file_json(const ShardInfo& s, bool with_tokens) {
  ojson j = {{"file", s.file}};
  if (with_tokens) j["tokens"] = s.tokens;
  j["bytes"] = s.bytes;
  j["sha256"] = s.sha256;
  return j;
}

ojson split_json(const SplitInfo& s) {
  ojson shards = ojson::array();
  for (const auto& sh : s.shards) shards.push_back(file_json(sh, true));
  return {{"documents", s.documents}, {"tokens", s.tokens}, {"index", file_json(s.index, false)},
          {"shards", shards}};
}

// Typed field access with errors naming the file and the field.
class Reader {
 public:
  explicit Reader(std::string where) : where_(std::move(where)) {}
  const json& field(const json& obj, const std::string& key, const std::string& path) const {
    if (!obj.is_object() || !obj.contains(key))
      throw Error(fmt::format("{}: missing field '{}'", where_, path + key));
    return obj.at(key);
  }
  int64_t integer(const json& obj, const std::string& key, const std::string& path = "") const {
    const auto& v = field(obj, key, path);
    if (!v.is_number_integer())
      throw Error(fmt::format("{}: field '{}' must be an integer, got {}", where_, path + key, v.dump()));
    return v.get<int64_t>();
  }
  double number(const json& obj, const std::string& key, const std::string& path = "") const {
    const auto& v = field(obj, key, path);
    if (!v.is_number()) throw Error(fmt::format("{}: field '{}' must be a number, got {}", where_, path + key, v.dump()));
    return v.get<double>();
  }
  std::string string(const json& obj, const std::string& key, const std::string& path = "") const {
    const auto& v = field(obj, key, path);
    if (!v.is_string()) throw Error(fmt::format("{}: field '{}' must be a string, got {}", where_, path + key, v.dump()));
    return v.get<std::string>();
  }
  ShardInfo file(const json& obj, const std::string& path, bool with_tokens) const {
    ShardInfo s;
    s.file = string(obj, "file", path);
    if (with_tokens) s.tokens = integer(obj, "tokens", path);
    s.bytes = integer(obj, "bytes", path);
    s.sha256 = string(obj, "sha256", path);
    if (s.file.empty() || s.file.find("..") != std::string::npos || s.file.front() == '/')
      throw Error(fmt::format("{}: field '{}file' must be a path inside the dataset, got '{}'", where_, path, s.file));
    return s;
  }
  SplitInfo split(const json& obj, const std::string& path) const {
    SplitInfo s;
    s.documents = integer(obj, "documents", path);
    s.tokens = integer(obj, "tokens", path);
    s.index = file(field(obj, "index", path), path + "index.", false);
    const auto& shards = field(obj, "shards", path);
    if (!shards.is_array()) throw Error(fmt::format("{}: field '{}shards' must be a list", where_, path));
    for (size_t i = 0; i < shards.size(); ++i)
      s.shards.push_back(file(shards[i], fmt::format("{}shards[{}].", path, i), true));
    return s;
  }
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

}  // namespace

std::string DatasetMeta::to_json() const {
  ojson sources_j = ojson::array();
  for (const auto& s : sources)
    sources_j.push_back({{"path", s.path},
                         {"role", s.role},
                         {"format", s.format},
                         {"documents", s.documents},
                         {"tokens", s.tokens},
                         {"empty_documents", s.empty_documents},
                         {"skipped_records", s.skipped_records}});
  ojson j = {{"format", "tess-token-dataset"},
            {"format_version", format_version},
            {"tokenizer",
             {{"kind", tokenizer_kind},
              {"content_hash", tokenizer_hash},
              {"vocab_size", vocab_size},
              {"bos_id", bos_id},
              {"eos_id", eos_id},
              {"pad_id", pad_id}}},
            {"dtype", dtype},
            {"shard_tokens", shard_tokens},
            {"doc_split", doc_split},
            {"validation_fraction", validation_fraction},
            {"split_seed", split_seed},
            {"splits", {{"train", split_json(train)}, {"validation", split_json(validation)}}},
            {"sources", sources_j}};
  return j.dump(2) + "\n";
}

DatasetMeta DatasetMeta::from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({})", where, e.what()));
  }
  Reader r(where);
  if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object", where));
  DatasetMeta m;
  if (r.string(j, "format") != "tess-token-dataset")
    throw Error(fmt::format("{}: 'format' is '{}', expected 'tess-token-dataset'", where, r.string(j, "format")));
  m.format_version = static_cast<int>(r.integer(j, "format_version"));
  if (m.format_version != kTokenDatasetFormatVersion)
    throw Error(fmt::format("{}: format_version {} is not supported (this tess reads version {}); re-run `tess tokenize corpus`",
                            where, m.format_version, kTokenDatasetFormatVersion));
  const auto& tok = r.field(j, "tokenizer", "");
  m.tokenizer_kind = r.string(tok, "kind", "tokenizer.");
  m.tokenizer_hash = r.string(tok, "content_hash", "tokenizer.");
  m.vocab_size = static_cast<int32_t>(r.integer(tok, "vocab_size", "tokenizer."));
  m.bos_id = static_cast<int32_t>(r.integer(tok, "bos_id", "tokenizer."));
  m.eos_id = static_cast<int32_t>(r.integer(tok, "eos_id", "tokenizer."));
  m.pad_id = static_cast<int32_t>(r.integer(tok, "pad_id", "tokenizer."));
  m.dtype = r.string(j, "dtype");
  if (m.dtype != "uint16" && m.dtype != "uint32")
    throw Error(fmt::format("{}: dtype '{}' is not supported (expected uint16 or uint32)", where, m.dtype));
  m.shard_tokens = r.integer(j, "shard_tokens");
  m.doc_split = r.string(j, "doc_split");
  m.validation_fraction = r.number(j, "validation_fraction");
  m.split_seed = static_cast<uint64_t>(r.integer(j, "split_seed"));
  const auto& splits = r.field(j, "splits", "");
  m.train = r.split(r.field(splits, "train", "splits."), "splits.train.");
  m.validation = r.split(r.field(splits, "validation", "splits."), "splits.validation.");
  const auto& sources = r.field(j, "sources", "");
  if (!sources.is_array()) throw Error(fmt::format("{}: field 'sources' must be a list", where));
  for (size_t i = 0; i < sources.size(); ++i) {
    std::string p = fmt::format("sources[{}].", i);
    SourceInfo s;
    s.path = r.string(sources[i], "path", p);
    s.role = r.string(sources[i], "role", p);
    s.format = r.string(sources[i], "format", p);
    s.documents = r.integer(sources[i], "documents", p);
    s.tokens = r.integer(sources[i], "tokens", p);
    s.empty_documents = r.integer(sources[i], "empty_documents", p);
    s.skipped_records = r.integer(sources[i], "skipped_records", p);
    m.sources.push_back(std::move(s));
  }
  return m;
}

DatasetMeta read_dataset_meta(const fs::path& dir) {
  auto file = dir / kTokenDatasetMetaFile;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    if (fs::is_directory(dir))
      throw Error(fmt::format("'{}' is not a token dataset: it has no {} (an unfinished `tess tokenize corpus` "
                              "leaves none; tokenize the corpus again)",
                              dir.string(), kTokenDatasetMetaFile));
    throw Error(fmt::format("token dataset '{}' does not exist", dir.string()));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return DatasetMeta::from_json(ss.str(), file.string());
}

void check_tokenizer_hash(const std::string& dataset_hash, const std::string& tokenizer_hash,
                          const std::string& what) {
  if (dataset_hash == tokenizer_hash) return;
  throw Error(fmt::format(
      "{} was tokenized with tokenizer {} but the model's tokenizer is {}: the token ids would not "
      "match; tokenize the corpus again with the model's tokenizer",
      what, dataset_hash, tokenizer_hash));
}

// ---- TokenDataset ---------------------------------------------------------------

struct TokenDataset::Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
  void* map = nullptr;

  Mapping(const fs::path& path, const std::string& what, int64_t expected_bytes) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw Error(fmt::format("{}: cannot open '{}': {}", what, path.string(), std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      throw Error(fmt::format("{}: cannot stat '{}': {}", what, path.string(), std::strerror(e)));
    }
    size = static_cast<size_t>(st.st_size);
    if (static_cast<int64_t>(size) != expected_bytes) {
      ::close(fd);
      throw Error(fmt::format("{} has {} bytes but meta.json says {} (a truncated or modified file; "
                              "tokenize the corpus again)",
                              what, size, expected_bytes));
    }
    if (size > 0) {
      map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
      if (map == MAP_FAILED) {
        int e = errno;
        ::close(fd);
        map = nullptr;
        throw Error(fmt::format("{}: cannot mmap '{}': {}", what, path.string(), std::strerror(e)));
      }
      data = static_cast<const uint8_t*>(map);
    }
    ::close(fd);
  }
  ~Mapping() {
    if (map) ::munmap(map, size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

namespace {

void verify_sha(const fs::path& path, const std::string& what, const std::string& expected) {
  std::string actual = util::sha256_file_hex(path);
  if (actual != expected)
    throw Error(fmt::format("{}: sha256 is {} but meta.json says {} (the file is corrupt or was modified; "
                            "tokenize the corpus again)",
                            what, actual, expected));
}

}  // namespace

TokenDataset::TokenDataset(const fs::path& dir, const std::string& split, OpenOptions options)
    : dir_(dir), split_(split), meta_(read_dataset_meta(dir)) {
  info_ = &meta_.split(split);
  const int bytes = meta_.dtype_bytes();
  auto where = [&](const ShardInfo& s, const char* kind) {
    return fmt::format("{} '{}' of dataset '{}'", kind, s.file, dir_.string());
  };
  int64_t start = 0;
  for (const auto& s : info_->shards) {
    auto what = where(s, "shard");
    if (s.tokens <= 0 || s.bytes != s.tokens * bytes)
      throw Error(fmt::format("{}: meta.json says {} tokens and {} bytes, which disagree for dtype {}", what,
                              s.tokens, s.bytes, meta_.dtype));
    shards_.push_back(std::make_unique<Mapping>(dir_ / s.file, what, s.bytes));
    if (options.verify_checksums) verify_sha(dir_ / s.file, what, s.sha256);
    shard_start_.push_back(start);
    start += s.tokens;
  }
  shard_start_.push_back(start);
  if (start != info_->tokens)
    throw Error(fmt::format("dataset '{}': the {} shards of split {} hold {} tokens but meta.json says {}",
                            dir_.string(), info_->shards.size(), split_, start, info_->tokens));

  auto what = where(info_->index, "document index");
  int64_t entries = info_->documents + 1;
  if (info_->documents < 0 || info_->index.bytes != entries * 8)
    throw Error(fmt::format("{}: meta.json says {} bytes for {} documents (expected {})", what,
                            info_->index.bytes, info_->documents, entries * 8));
  index_ = std::make_unique<Mapping>(dir_ / info_->index.file, what, info_->index.bytes);
  if (options.verify_checksums) verify_sha(dir_ / info_->index.file, what, info_->index.sha256);
  offsets_ = reinterpret_cast<const int64_t*>(index_->data);
  if (offsets_[0] != 0 || offsets_[info_->documents] != info_->tokens)
    throw Error(fmt::format("{}: the offsets run from {} to {} but the split holds {} tokens", what, offsets_[0],
                            offsets_[info_->documents], info_->tokens));
  for (int64_t d = 0; d < info_->documents; ++d)
    if (offsets_[d + 1] <= offsets_[d])
      throw Error(fmt::format("{}: document {} is empty or has a negative length (offsets {} then {})", what, d,
                              offsets_[d], offsets_[d + 1]));
}

TokenDataset::~TokenDataset() = default;

void TokenDataset::check_tokenizer(const std::string& tokenizer_hash) const {
  check_tokenizer_hash(meta_.tokenizer_hash, tokenizer_hash, fmt::format("dataset '{}'", dir_.string()));
}

int64_t TokenDataset::document_offset(int64_t d) const {
  if (d < 0 || d > info_->documents)
    throw Error(fmt::format("dataset '{}' ({}): document {} out of range [0, {})", dir_.string(), split_, d,
                            info_->documents));
  return offsets_[d];
}

std::vector<int32_t> TokenDataset::document(int64_t d) const {
  int64_t start = document_offset(d);
  std::vector<int32_t> out(static_cast<size_t>(document_offset(d + 1) - start));
  read(start, static_cast<int64_t>(out.size()), out.data());
  return out;
}

template <class T>
void TokenDataset::read_impl(int64_t start, int64_t count, T* out) const {
  if (start < 0 || count < 0 || start + count > info_->tokens)
    throw Error(fmt::format("dataset '{}' ({}): tokens [{}, {}) out of range [0, {})", dir_.string(), split_, start,
                            start + count, info_->tokens));
  if (count == 0) return;
  size_t s = static_cast<size_t>(std::upper_bound(shard_start_.begin(), shard_start_.end(), start) -
                                 shard_start_.begin()) - 1;
  const bool u16 = meta_.dtype == "uint16";
  while (count > 0) {
    int64_t local = start - shard_start_[s];
    int64_t n = std::min(count, shard_start_[s + 1] - start);
    const uint8_t* base = shards_[s]->data;
    if (u16) copy_ids(s, local, n, reinterpret_cast<const uint16_t*>(base) + local, out);
    else copy_ids(s, local, n, reinterpret_cast<const uint32_t*>(base) + local, out);
    out += n;
    start += n;
    count -= n;
    ++s;
  }
}

// Copies n ids and checks them against the vocabulary on the way (one max
// per run of ids): an id the model cannot embed names its shard and offset
// here rather than failing later inside an embedding lookup.
template <class Id, class T>
void TokenDataset::copy_ids(size_t shard, int64_t local, int64_t n, const Id* p, T* out) const {
  Id largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(p[i]);
    largest = std::max(largest, p[i]);
  }
  if (static_cast<int64_t>(largest) < meta_.vocab_size) return;
  int64_t at = std::find_if(p, p + n, [&](Id id) { return static_cast<int64_t>(id) >= meta_.vocab_size; }) - p;
  throw Error(fmt::format("dataset '{}' ({}): token {} of shard '{}' (byte {}) is id {}, outside the tokenizer's "
                          "vocabulary of {} (meta.json tokenizer.vocab_size): the shard is corrupt or was written "
                          "with another tokenizer; `tess tokenize inspect --dataset {} --verify` checks every shard",
                          dir_.string(), split_, local + at, info_->shards[shard].file,
                          (local + at) * static_cast<int64_t>(sizeof(Id)), static_cast<int64_t>(p[at]),
                          meta_.vocab_size, dir_.string()));
}

void TokenDataset::check_ids() const {
  std::vector<int32_t> buf(1 << 20);
  for (int64_t start = 0; start < info_->tokens; start += static_cast<int64_t>(buf.size()))
    read(start, std::min<int64_t>(static_cast<int64_t>(buf.size()), info_->tokens - start), buf.data());
}

void TokenDataset::read(int64_t start, int64_t count, int32_t* out) const { read_impl(start, count, out); }
void TokenDataset::read(int64_t start, int64_t count, int64_t* out) const { read_impl(start, count, out); }

// ---- packing ------------------------------------------------------------------------

PackingMode parse_packing_mode(const std::string& name) {
  if (name == "concat") return PackingMode::Concat;
  if (name == "no_cross") return PackingMode::NoCross;
  throw Error(fmt::format("unknown packing mode '{}' (expected concat or no_cross)", name));
}

PackingOptions PackingOptions::from_config(const config::Config& config, int64_t pad_id) {
  PackingOptions o;
  o.seq_len = config.get_int("data.seq_len");
  o.mode = parse_packing_mode(config.get_string("data.packing"));
  o.bos_per_document = config.get_bool("data.bos_per_document");
  o.pad_id = pad_id;
  return o;
}

// One dataset's share of the sequences. Document d occupies a segment of
// extra + length(d) stream positions: [BOS] tokens EOS.
struct PackedSequences::Part {
  std::shared_ptr<const TokenDataset> data;
  int64_t extra = 1;
  int64_t count = 0;                 // sequences
  std::vector<int64_t> seq_prefix;   // NoCross: first sequence of each document, plus the end

  int64_t segment_start(int64_t d) const { return data->document_offset(d) + d * extra; }

  // Writes n positions of document d's segment starting at q.
  template <class T>
  void fill(int64_t d, int64_t q, int64_t n, T* out, bool bos, int64_t bos_id, int64_t eos_id) const {
    int64_t len = data->document_length(d);
    int64_t lead = bos ? 1 : 0;
    while (n > 0) {
      if (q < lead) {
        *out++ = static_cast<T>(bos_id);
        ++q;
        --n;
      } else if (q - lead < len) {
        int64_t k = std::min(n, len - (q - lead));
        data->read(data->document_offset(d) + (q - lead), k, out);
        out += k;
        q += k;
        n -= k;
      } else {
        *out++ = static_cast<T>(eos_id);
        ++q;
        --n;
      }
    }
  }
};

PackedSequences::PackedSequences(std::vector<std::shared_ptr<const TokenDataset>> datasets, PackingOptions options)
    : opt_(options) {
  if (opt_.seq_len < 1) throw Error(fmt::format("packing: seq_len must be >= 1, got {}", opt_.seq_len));
  if (datasets.empty()) throw Error("packing: no dataset given");
  const auto& first = datasets.front()->meta();
  if (first.eos_id < 0)
    throw Error(fmt::format("dataset '{}': its tokenizer has no EOS id, which packing puts after every document",
                            datasets.front()->dir().string()));
  if (opt_.bos_per_document && first.bos_id < 0)
    throw Error(fmt::format("dataset '{}': bos_per_document is set but its tokenizer has no BOS id",
                            datasets.front()->dir().string()));
  if (opt_.mode == PackingMode::NoCross && opt_.pad_id < 0)
    throw Error("packing no_cross pads sequences but no pad id was given (the tokenizer has no [PAD]; "
                "add one, e.g. model.add_pad_token: true)");
  part_start_.push_back(0);
  for (const auto& ds : datasets) {
    if (!ds) throw Error("packing: null dataset");
    if (ds->tokenizer_hash() != first.tokenizer_hash)
      throw Error(fmt::format("datasets '{}' and '{}' were tokenized with different tokenizers ({} and {})",
                              datasets.front()->dir().string(), ds->dir().string(), first.tokenizer_hash,
                              ds->tokenizer_hash()));
    auto part = std::make_shared<Part>();
    part->data = ds;
    part->extra = 1 + (opt_.bos_per_document ? 1 : 0);
    int64_t docs = ds->num_documents();
    if (opt_.mode == PackingMode::Concat) {
      part->count = (ds->num_tokens() + docs * part->extra) / opt_.seq_len;
    } else {
      part->seq_prefix.resize(static_cast<size_t>(docs) + 1);
      int64_t n = 0;
      for (int64_t d = 0; d < docs; ++d) {
        part->seq_prefix[static_cast<size_t>(d)] = n;
        int64_t m = ds->document_length(d) + part->extra;
        n += (m + opt_.seq_len - 1) / opt_.seq_len;
      }
      part->seq_prefix[static_cast<size_t>(docs)] = n;
      part->count = n;
    }
    total_ += part->count;
    part_start_.push_back(total_);
    parts_.push_back(std::move(part));
  }
}

template <class T>
int64_t PackedSequences::sequence_impl(int64_t i, T* out) const {
  if (i < 0 || i >= total_) throw Error(fmt::format("packed sequence {} out of range [0, {})", i, total_));
  size_t p = static_cast<size_t>(std::upper_bound(part_start_.begin(), part_start_.end(), i) -
                                 part_start_.begin()) - 1;
  const Part& part = *parts_[p];
  int64_t local = i - part_start_[p];
  const int64_t L = opt_.seq_len;
  const auto& meta = part.data->meta();
  const bool bos = opt_.bos_per_document;
  if (opt_.mode == PackingMode::Concat) {
    // The last document whose segment starts at or before the sequence start.
    int64_t pos = local * L;
    int64_t lo = 0, hi = part.data->num_documents() - 1;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo + 1) / 2;
      if (part.segment_start(mid) <= pos) lo = mid;
      else hi = mid - 1;
    }
    int64_t filled = 0;
    for (int64_t d = lo; filled < L; ++d) {
      int64_t q = filled == 0 ? pos - part.segment_start(d) : 0;
      int64_t seg = part.data->document_length(d) + part.extra;
      int64_t n = std::min(seg - q, L - filled);
      part.fill(d, q, n, out + filled, bos, meta.bos_id, meta.eos_id);
      filled += n;
    }
    return L;
  }
  auto it = std::upper_bound(part.seq_prefix.begin(), part.seq_prefix.end(), local);
  int64_t d = static_cast<int64_t>(it - part.seq_prefix.begin()) - 1;
  int64_t q = (local - part.seq_prefix[static_cast<size_t>(d)]) * L;
  int64_t seg = part.data->document_length(d) + part.extra;
  int64_t real = std::min(L, seg - q);
  part.fill(d, q, real, out, bos, meta.bos_id, meta.eos_id);
  std::fill(out + real, out + L, static_cast<T>(opt_.pad_id));
  return real;
}

int64_t PackedSequences::sequence(int64_t i, int64_t* out) const { return sequence_impl(i, out); }
int64_t PackedSequences::sequence(int64_t i, int32_t* out) const { return sequence_impl(i, out); }

std::vector<int64_t> PackedSequences::sequence(int64_t i) const {
  std::vector<int64_t> out(static_cast<size_t>(opt_.seq_len));
  sequence_impl(i, out.data());
  return out;
}

void PackedSequences::gather(const std::vector<int64_t>& indices, int64_t* out, int64_t* real_tokens) const {
  for (size_t r = 0; r < indices.size(); ++r) {
    int64_t real = sequence_impl(indices[r], out + static_cast<int64_t>(r) * opt_.seq_len);
    if (real_tokens) real_tokens[r] = real;
  }
}

}  // namespace tess::data
