#pragma once
// Shape and conventions of a Mistral/Llama-family decoder, as HF's
// config.json describes it. Read from and written to config.json (both the
// transformers 4.x spelling, rope_theta/torch_dtype, and 5.x,
// rope_parameters/dtype), built from tess's model.* config keys for fresh
// models, or taken from a named preset (the real shapes construct with the
// same code as the tiny ones).
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "core/util/choices.h"

namespace tess::config {
class Config;
}

namespace tess::model {

enum class Attention { Causal, Bidirectional };
const util::Choices<Attention>& attention_choices();
Attention parse_attention(const std::string& name);  // "causal" | "bidirectional"
const char* attention_name(Attention a);

struct ModelConfig {
  std::string model_type = "llama";  // "llama" | "mistral"
  int64_t vocab_size = 32000;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
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

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  // Parameter count of the decoder (embedding, layers, norm, untied LM head).
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
  // "tiny", "tinyllama-1.1b", "mistral-7b-v0.1", "llama-3-8b".
  static ModelConfig preset(const std::string& name);
};

}  // namespace tess::model
