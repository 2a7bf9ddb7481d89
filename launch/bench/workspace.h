#pragma once
// Generated inputs for a benchmark run of the real trainer: a tokenizer of
// exactly V tokens (a small SentencePiece model, [PAD] and added tokens up to
// V, so the embeddings and LM head have the preset's size), a token dataset
// of random ids written as `tess tokenize corpus` writes one, and chat
// records whose prompt and response each fill about half a sequence.
#include <cstdint>
#include <filesystem>
#include <string>

#include "launch/bench/bench.h"

namespace tess::bench {

struct BenchWorkspace {
  std::filesystem::path root, tokenizer, corpus, chat;

  // Writes everything under `root` (existing files are replaced).
  static BenchWorkspace create(const std::filesystem::path& root, int64_t vocab, int64_t seq_len,
                               int64_t corpus_tokens, int64_t chat_records);
  // The same paths under a root create() filled (a child process's view).
  static BenchWorkspace at(const std::filesystem::path& root);

  // A training config (YAML) of `stage` on these inputs with the preset's
  // model shape, batch and length; `precision` fp32 | bf16 (bf16_autocast).
  // Writes into `run_dir`. Config::load_string's overrides adjust it.
  std::string config(const TrainPreset& preset, config::RunStage stage, const std::string& precision,
                     const std::filesystem::path& run_dir) const;
};

// A token dataset of random documents of ids in [3, vocab), as `tess
// tokenize corpus` writes one, recorded as made with `tokenizer_hash`.
void write_token_dataset(const std::filesystem::path& dir, int64_t tokens, int32_t vocab,
                         const std::string& tokenizer_hash, uint64_t seed);

}  // namespace tess::bench
