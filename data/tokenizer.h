#pragma once
// Tokenizers behind one interface: SentencePiece (the Mistral/Llama family's
// tokenizer.model) and byte-level BPE (an HF tokenizer.json: GPT-2, SmolLM2,
// Llama-3; see bpe_tokenizer.h). A model directory's tokenizer is chosen by
// what the directory holds. The chat markers
// (<|user|>, <|assistant|>) are plain text, as in the reference: they are
// encoded like any other text, not as special tokens.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tess::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text -> ids, without BOS/EOS (callers add them where a template says).
  // Added special tokens written literally in the text (e.g. "[PAD]") map to
  // their ids, as HF does for added tokens; all other text is tokenized.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Ids -> text; special tokens (BOS/EOS/PAD/UNK/added) are left out. An id
  // outside the vocabulary is a tess::Error.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string piece(int32_t id) const = 0;  // the token's surface form

  virtual int32_t vocab_size() const = 0;  // including added tokens
  virtual int32_t bos_id() const = 0;      // -1 when the tokenizer has none
  virtual int32_t eos_id() const = 0;
  virtual int32_t pad_id() const = 0;
  virtual int32_t unk_id() const = 0;

  // Appends a special token (e.g. "[PAD]") after the existing vocabulary and
  // returns its id; returns the existing id if the piece is already known.
  // `as_pad` makes it the padding token.
  virtual int32_t add_special_token(const std::string& piece, bool as_pad) = 0;

  // SHA-256 (hex) over the tokenizer's files and added tokens: two tokenizers
  // with the same hash map text to the same ids. Used in checkpoint manifests.
  virtual std::string content_hash() const = 0;
  // The hash of the base vocabulary alone (without added special tokens):
  // token shards tokenized before a [PAD] was added still match it.
  virtual std::string base_hash() const = 0;
  virtual std::string kind() const = 0;  // "sentencepiece" | "bpe"

  // Writes the tokenizer files into a model directory (SentencePiece:
  // tokenizer.model and, when tokens were added, added_tokens.json as HF
  // writes it; BPE: tokenizer.json with every added token, and the config
  // files naming bos/eos/pad/unk).
  virtual void save(const std::filesystem::path& dir) const = 0;
};

// Loads the tokenizer of a model directory or file:
//  - a directory with tokenizer.model: SentencePiece (+ optional
//    added_tokens.json), even when a tokenizer.json is there too;
//  - else a directory with tokenizer.json: byte-level BPE (bpe_tokenizer.h,
//    which also says where bos/eos/pad/unk come from);
//  - a *.json file: byte-level BPE (config files read beside it); any other
//    file: a SentencePiece model.
// Throws tess::Error naming the path and what was expected when nothing
// usable is there. SentencePiece: added token ids must continue the base
// vocabulary without gaps; the added token that pads is the pad_token of
// special_tokens_map.json when there is one, else (when the model has no PAD
// of its own) an added "[PAD]" or "<pad>".
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir_or_file);

struct SentencePieceTrainOptions {
  std::vector<std::filesystem::path> inputs;  // plain text files, one sentence per line
  std::filesystem::path model_prefix;          // writes <prefix>.model and <prefix>.vocab
  int32_t vocab_size = 8000;
  std::string model_type = "unigram";          // unigram | bpe
  double character_coverage = 0.9995;
  int64_t input_sentence_size = 1000000;       // sampled sentences; 0 = all
  int32_t threads = 0;                         // 0 = all cores
  uint32_t seed = 1234;                        // makes training reproducible
  // Llama convention: <unk>=0, <s>=1, </s>=2, no PAD (added later as [PAD]).
};

// Trains a SentencePiece model (deterministic for fixed inputs and seed) with
// Llama's settings: byte fallback, split digits, identity normalisation (text
// round-trips exactly). Input files may be gzip-compressed; their paths are
// not recorded in the model, so the bytes depend only on the text and the
// options (SentencePiece records them, the thread count included).
// Small corpora may yield fewer than vocab_size pieces (a warning is logged).
void train_sentencepiece(const SentencePieceTrainOptions& options);

}  // namespace tess::data
