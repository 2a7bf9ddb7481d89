#pragma once
// Plain-text and JSONL corpora -> a token dataset directory (binary shards,
// a document index and meta.json), as `tess tokenize corpus` writes it.
// Streaming: documents are read in chunks and tokenized by a pool of worker
// threads while one writer stores them in input order, so the output is the
// same for any thread count and memory stays bounded for any corpus size.
// The directory is built under a temporary name and renamed at the end: a
// crash or a full disk never leaves a half dataset that looks complete.
// Layout and meta.json fields: docs/data.md; reading: data/token_dataset.h.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tess::data {

class Tokenizer;

// How a plain-text file is cut into documents (JSONL: one record each).
enum class DocSplit {
  BlankLine,  // blocks of non-blank lines separated by blank lines
  File,       // the whole file is one document
};
DocSplit parse_doc_split(const std::string& name);  // "blank-line" | "file"
std::string doc_split_name(DocSplit split);

// What a file holds. Auto: *.jsonl, *.json, *.ndjson (optionally .gz) are
// JSONL with a text field, everything else plain text.
enum class InputFormat { Auto, Text, Jsonl };
InputFormat parse_input_format(const std::string& name);  // "auto" | "text" | "jsonl"

// Expands input arguments into files, in a deterministic order: a glob
// (*, ?, [...]) gives its matches sorted; a directory gives every regular file
// below it (recursive, hidden names skipped) sorted by path; a file is itself.
// A pattern matching nothing or a missing path is a tess::Error.
std::vector<std::filesystem::path> expand_inputs(const std::vector<std::string>& inputs);

struct CorpusOptions {
  std::vector<std::string> inputs;             // files, directories, globs (train, or split by fraction)
  std::vector<std::string> validation_inputs;  // a separate validation corpus (excludes the fraction)
  std::filesystem::path output;                // the dataset directory to create
  DocSplit doc_split = DocSplit::BlankLine;
  InputFormat format = InputFormat::Auto;
  std::string text_field = "text";             // JSONL field holding the document
  double validation_fraction = 0.0;            // share of --input documents sent to validation
  uint64_t split_seed = 1234;                  // seeds the "corpus_split" stream of tess::util::Rng
  bool skip_bad_records = false;               // malformed JSONL lines: skip (and report) instead of failing
  int threads = 0;                             // tokenizer threads; 0 = all cores
  int64_t shard_tokens = int64_t{1} << 28;     // tokens per shard file (the last one holds the rest)
  std::string dtype = "auto";                  // auto (uint16 when vocab <= 65536) | uint16 | uint32
  bool overwrite = false;                      // replace an existing dataset directory
  bool progress = true;                        // draw a progress line (tokens/s) on stderr
  // Work unit handed to a tokenizer thread; smaller chunks give finer
  // parallelism, larger ones less overhead (bounded memory: a few per thread).
  int64_t chunk_documents = 256;
  int64_t chunk_bytes = int64_t{4} << 20;
};

struct SplitCounts {
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t shards = 0;
};

struct CorpusReport {
  std::filesystem::path output;
  std::string dtype;             // "uint16" | "uint32"
  SplitCounts train;
  SplitCounts validation;
  int64_t files = 0;             // input files read
  int64_t empty_documents = 0;   // empty or whitespace-only, left out
  int64_t skipped_records = 0;   // malformed JSONL lines (only with skip_bad_records)
  double seconds = 0;
  std::string summary() const;   // the lines `tess tokenize corpus` prints
};

// Tokenizes the corpus into options.output (see the file comment). Errors are
// tess::Error naming the file (and line, for JSONL) and what was expected.
// The tokenizer is only read (encode from several threads at once).
CorpusReport tokenize_corpus(const Tokenizer& tokenizer, const CorpusOptions& options);

}  // namespace tess::data
