#pragma once
// Byte-level BPE read from a Hugging Face tokenizer.json (GPT-2, SmolLM2,
// Llama-3 and the like), behind the Tokenizer interface. It reproduces HF
// `tokenizers` id for id; tests/data/test_bpe_tokenizer.cpp checks that on a
// few thousand strings against goldens made by HF itself.
//
// What is read (anything else is a tess::Error naming the file and the JSON
// key, e.g. "unsupported pre_tokenizer type 'Metaspace' ... at
// pre_tokenizer.pretokenizers[1]"):
//   model       type "BPE": vocab, merges ("a b" strings or ["a", "b"] lists;
//               the later of two equal pairs wins, as in HF), ignore_merges,
//               unk_token, fuse_unk, byte_fallback; dropout must be null/0
//               (tess tokenizes deterministically) and continuing_subword_
//               prefix / end_of_word_suffix null or "".
//   normalizer  null only (NFC and the others would need a Unicode
//               normalisation library; the byte-level models tess targets
//               have none).
//   pre_tokenizer  ByteLevel(add_prefix_space, use_regex: the GPT-2 regex),
//               Split(pattern Regex|String, behavior, invert), Digits(
//               individual_digits), and Sequence of these. A ByteLevel must
//               be among them: this reader is for byte-level BPE only.
//   decoder     ByteLevel (or a Sequence holding only ByteLevel).
//   post_processor  ignored: encode() never adds BOS/EOS (see Tokenizer).
//   added_tokens  matched literally in the text before pre-tokenisation,
//               leftmost-longest, tokens with normalized=false first, as HF
//               does; lstrip/rstrip/single_word are honoured the way HF does.
//               `special` ones are left out by decode().
// Regexes run on PCRE2 with Unicode properties (\p{L}, \p{N}, ...), the
// same classes as HF's Oniguruma up to the Unicode version of each library.
// Text that is not valid UTF-8 (which HF cannot be given) is still encoded
// byte for byte: invalid bytes never match a regex class and end up in
// pieces of their own. decode() turns bytes that do not form UTF-8 into
// U+FFFD, one per maximal invalid subpart, like HF (Rust's from_utf8_lossy).
//
// Special ids: for each of bos/eos/pad/unk, the first of
//   1. tokenizer_config.json "<name>_token" (a string or {"content": ...}; a
//      null there means "none" and stops the search),
//   2. special_tokens_map.json "<name>_token",
//   3. unk only: the model's unk_token,
//   4. an added special token with a well-known spelling: bos "<s>",
//      "<|begin_of_text|>", "<|startoftext|>"; eos "</s>", "<|end_of_text|>",
//      "<|endoftext|>"; pad "<pad>", "[PAD]", "<|pad|>"; unk "<unk>", "[UNK]",
// or -1. A token named in a config file that the vocabulary lacks is an error.
//
// Hashes: base_hash() is the SHA-256 of tokenizer.json in a canonical form
// (the parsed document dumped compactly with sorted keys, with
// added_tokens sorted by id and without those beyond the model vocabulary);
// content_hash() adds the added tokens beyond the model vocabulary (e.g. a
// [PAD] from add_special_token). save() writes the same document back, so
// both hashes survive a save/load round trip, and token shards tokenized
// before a [PAD] was added still match base_hash().
#include <filesystem>
#include <memory>

#include "data/tokenizer.h"

namespace tess::data {

// Loads `tokenizer_json` (an HF tokenizer.json) and the tokenizer_config.json
// / special_tokens_map.json beside it, if any. save(dir) writes tokenizer.json
// (with every added token), tokenizer_config.json and special_tokens_map.json
// naming bos/eos/pad/unk, which HF's AutoTokenizer loads with the same ids.
std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path& tokenizer_json);

}  // namespace tess::data
