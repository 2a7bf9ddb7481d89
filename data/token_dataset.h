#pragma once
// Reading a token dataset directory written by tokenize_corpus (data/corpus.h)
// and packing its documents into fixed-length training sequences.
//
// A split ("train" or "validation") is one logical stream of document tokens
// stored across memory-mapped shard files, plus an index of document
// boundaries. Opening a split checks every file's size against meta.json
// (always) and its SHA-256 (when asked); a dataset tokenized with another
// tokenizer than the model's is caught by check_tokenizer().
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tess::config {
class Config;
}

namespace tess::data {

inline constexpr int kTokenDatasetFormatVersion = 1;
inline constexpr const char* kTokenDatasetMetaFile = "meta.json";

struct ShardInfo {
  std::string file;  // relative to the dataset directory, e.g. "train/shard-00000.bin"
  int64_t tokens = 0;
  int64_t bytes = 0;
  std::string sha256;
};

struct SplitInfo {
  int64_t documents = 0;
  int64_t tokens = 0;
  ShardInfo index;                 // document boundaries: documents + 1 int64 offsets
  std::vector<ShardInfo> shards;   // in stream order
};

struct SourceInfo {
  std::string path;
  std::string role;    // "train" (split by validation_fraction) | "validation"
  std::string format;  // "text" | "jsonl"
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t empty_documents = 0;
  int64_t skipped_records = 0;
};

// meta.json, the description of a dataset (docs/data.md lists every field).
struct DatasetMeta {
  int format_version = kTokenDatasetFormatVersion;
  std::string tokenizer_kind;   // "sentencepiece"
  std::string tokenizer_hash;   // Tokenizer::content_hash() of the tokenizer used
  int32_t vocab_size = 0;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  std::string dtype;            // "uint16" | "uint32"
  int64_t shard_tokens = 0;
  std::string doc_split;        // "blank-line" | "file"
  double validation_fraction = 0;
  uint64_t split_seed = 0;
  SplitInfo train;
  SplitInfo validation;
  std::vector<SourceInfo> sources;

  const SplitInfo& split(const std::string& name) const;  // "train" | "validation"
  int dtype_bytes() const { return dtype == "uint16" ? 2 : 4; }
  std::string to_json() const;  // pretty-printed
  // Parses and validates; `where` names the file in errors.
  static DatasetMeta from_json(const std::string& text, const std::string& where);
};

DatasetMeta read_dataset_meta(const std::filesystem::path& dir);

// Throws tess::Error naming both hashes when a dataset was tokenized with
// another tokenizer than the one a model uses (`what` names the dataset).
void check_tokenizer_hash(const std::string& dataset_hash, const std::string& tokenizer_hash,
                          const std::string& what);

struct OpenOptions {
  bool verify_checksums = false;  // hash every shard and the index (reads all the data once)
};

// One split of a dataset directory, memory-mapped. Reads are const and
// thread-safe.
class TokenDataset {
 public:
  TokenDataset(const std::filesystem::path& dir, const std::string& split = "train",
               OpenOptions options = {});
  ~TokenDataset();
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  const std::string& split() const { return split_; }
  const DatasetMeta& meta() const { return meta_; }
  const std::string& tokenizer_hash() const { return meta_.tokenizer_hash; }
  // Throws (naming both hashes and this dataset) unless they are equal.
  void check_tokenizer(const std::string& tokenizer_hash) const;

  int64_t num_documents() const { return info_->documents; }
  int64_t num_tokens() const { return info_->tokens; }
  // Start of document d in the split's token stream; d == num_documents()
  // gives num_tokens().
  int64_t document_offset(int64_t d) const;
  int64_t document_length(int64_t d) const { return document_offset(d + 1) - document_offset(d); }
  std::vector<int32_t> document(int64_t d) const;

  // Tokens [start, start + count) of the stream (may cross shards). An id
  // outside meta().vocab_size throws, naming the shard, offset and id.
  void read(int64_t start, int64_t count, int32_t* out) const;
  void read(int64_t start, int64_t count, int64_t* out) const;
  // Reads the whole split once, so that any out-of-vocabulary id throws now.
  void check_ids() const;

 private:
  struct Mapping;
  template <class T>
  void read_impl(int64_t start, int64_t count, T* out) const;
  template <class Id, class T>
  void copy_ids(size_t shard, int64_t local, int64_t n, const Id* p, T* out) const;
  std::filesystem::path dir_;
  std::string split_;
  DatasetMeta meta_;
  const SplitInfo* info_ = nullptr;
  std::vector<std::unique_ptr<Mapping>> shards_;
  std::vector<int64_t> shard_start_;  // stream offset of each shard, plus the end
  std::unique_ptr<Mapping> index_;
  const int64_t* offsets_ = nullptr;  // documents + 1 entries, inside index_
};

enum class PackingMode {
  Concat,   // documents joined (each followed by EOS) and cut every L tokens; the tail is dropped
  NoCross,  // a sequence never crosses a document boundary; tails padded with pad_id
};
PackingMode parse_packing_mode(const std::string& name);  // "concat" | "no_cross"

struct PackingOptions {
  int64_t seq_len = 512;       // L
  PackingMode mode = PackingMode::Concat;
  bool bos_per_document = false;  // put BOS before every document (as HF Llama tokenizers do)
  int64_t pad_id = -1;         // required by NoCross (the tokenizer's [PAD])
  // data.seq_len, data.packing, data.bos_per_document; pad_id from the caller.
  static PackingOptions from_config(const config::Config& config, int64_t pad_id);
};

// Fixed-length sequences over one or more datasets (in the given order; a
// sequence never spans two datasets). sequence(i) is O(log documents).
// Every document contributes [BOS] tokens EOS to the stream.
class PackedSequences {
 public:
  PackedSequences(std::vector<std::shared_ptr<const TokenDataset>> datasets, PackingOptions options);
  PackedSequences(std::shared_ptr<const TokenDataset> dataset, PackingOptions options)
      : PackedSequences(std::vector<std::shared_ptr<const TokenDataset>>{std::move(dataset)}, options) {}

  int64_t size() const { return total_; }
  int64_t seq_len() const { return opt_.seq_len; }
  const PackingOptions& options() const { return opt_; }

  // Writes the L ids of sequence i and returns how many are real tokens (the
  // rest are pad_id, at the end): always L in Concat mode.
  int64_t sequence(int64_t i, int64_t* out) const;
  int64_t sequence(int64_t i, int32_t* out) const;
  std::vector<int64_t> sequence(int64_t i) const;

  // Rows of a [indices.size(), L] batch (row-major); real_tokens (optional)
  // gets one count per row.
  void gather(const std::vector<int64_t>& indices, int64_t* out, int64_t* real_tokens = nullptr) const;

 private:
  struct Part;
  template <class T>
  int64_t sequence_impl(int64_t i, T* out) const;
  PackingOptions opt_;
  std::vector<std::shared_ptr<Part>> parts_;
  std::vector<int64_t> part_start_;  // first sequence of each part, plus the end
  int64_t total_ = 0;
};

}  // namespace tess::data
