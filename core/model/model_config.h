#pragma once
// Shape and conventions of a Llama-family decoder (HF model_type llama,
// mistral or qwen2), as HF's config.json describes it. Read from and written to config.json (both the
// transformers 4.x spelling, rope_theta/torch_dtype, and 5.x,
// rope_parameters/dtype), built from tess's model.* config keys for fresh
// models, or taken from a named preset (the real shapes construct with the
// same code as the tiny ones).
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/util/choices.h"

namespace tess::config {
class Config;
}

namespace tess::model {

enum class Attention { Causal, Bidirectional };
const util::Choices<Attention>& attention_choices();
Attention parse_attention(const std::string& name);  // "causal" | "bidirectional"
const char* attention_name(Attention a);

// Scaling of the rotary frequencies: config.json's rope_scaling (4.x) or
// rope_parameters (5.x). "default" = plain RoPE; "llama3" = Llama 3.1+'s
// frequency-dependent scaling (HF's _compute_llama3_parameters).
struct RopeScaling {
  std::string type = "default";  // "default" | "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  // "llama" | "mistral" | "qwen2" (Qwen2/Qwen2.5: the Llama layout plus biases
  // on the q/k/v projections, not on o_proj).
  std::string model_type = "llama";
  int64_t vocab_size = 32000;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;  // 0: full attention; restricts causal attention only
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;   // -1: none
  int64_t eos_token_id = -1;
  int64_t pad_token_id = -1;
  std::string torch_dtype = "float32";  // "float32" | "bfloat16" | "float16"
  double initializer_range = 0.02;
  // Default attention of the model. TESS 2 diffusion checkpoints say
  // "is_causal": false in config.json; AR checkpoints are causal.
  Attention attention = Attention::Causal;
  // config.json fields tess does not interpret (e.g. TESS 2's self_condition),
  // kept as raw JSON text so that a load -> save round trip preserves them.
  std::map<std::string, std::string> extra;

  // Largest shapes accepted (far above any released model; they keep every
  // size and parameter count well inside int64 arithmetic).
  static constexpr int64_t kMaxVocab = int64_t{1} << 22, kMaxHidden = int64_t{1} << 17,
                           kMaxIntermediate = int64_t{1} << 20, kMaxLayers = int64_t{1} << 12,
                           kMaxHeads = int64_t{1} << 12, kMaxPositions = int64_t{1} << 24;

  bool qkv_bias() const { return model_type == "qwen2"; }  // q/k/v projections carry biases
  // HF's class-name prefix: "Llama", "Mistral" or "Qwen2" (+ "ForCausalLM", ...).
  std::string hf_class_prefix() const;
  // Whether a model with `model_rows` embedding rows can serve a tokenizer of
  // `tokens` tokens unchanged: equal, or padded past it to at most the next
  // multiple of 1024 (Qwen2.5: 151,936 rows for 151,665 tokens). The padding
  // rows are never a label and never chosen by a sampler; a larger surplus
  // means another tokenizer.
  static bool vocab_padding_ok(int64_t model_rows, int64_t tokens) {
    return model_rows >= tokens && model_rows <= (tokens + 1023) / 1024 * 1024;
  }
  // The vocabulary a model of `model_rows` rows trains with under a tokenizer
  // of `tokens` tokens: grown to the tokenizer when smaller, its padding kept
  // when larger within vocab_padding_ok; beyond that a tess::Error naming
  // `source` ("another tokenizer?").
  static int64_t trained_vocab(const std::string& source, int64_t model_rows, int64_t tokens);
  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  // Parameter count of the decoder (embedding, layers with their q/k/v biases,
  // norm, untied LM head).
  int64_t num_parameters() const;
  // Their bytes in `dtype` ("float32" | "bfloat16" | "float16").
  int64_t parameter_bytes(const std::string& dtype) const;
  // Throws tess::Error naming `source` and the field when the shape is invalid.
  void validate(const std::string& source) const;

  static ModelConfig from_json_file(const std::filesystem::path& path);
  static ModelConfig from_json_text(const std::string& text, const std::string& source);
  std::string to_json_text() const;  // HF config.json
  void write_json_file(const std::filesystem::path& path) const;

  // A fresh model from the model.* keys of a run configuration.
  static ModelConfig from_run_config(const config::Config& cfg);
  // "tiny", "tinyllama-1.1b", "mistral-7b-v0.1", "llama-3-8b", "llama-3.2-1b",
  // "qwen2.5-0.5b" (preset_names() lists them).
  static const std::vector<std::string>& preset_names();
  static ModelConfig preset(const std::string& name);
};

}  // namespace tess::model
