#pragma once
// HF-format model directories in and out: config.json + safetensors weights
// (one file or shards with model.safetensors.index.json) with HF's parameter
// names, so that a tess checkpoint opens in transformers and a downloaded
// Mistral/Llama (or a released TESS 2 diffusion checkpoint) opens in tess.
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "core/model/decoder.h"

namespace tess::model {

struct LoadOptions {
  std::optional<std::string> dtype;  // override config.json's dtype ("float32", "bfloat16")
  // Sequence classifiers (reward models) carry no LM head: the decoder is
  // built tied whatever config.json says, and an lm_head.weight that is
  // present anyway lands in extra_tensors.
  bool body_only = false;
};

struct LoadedModel {
  Decoder decoder{nullptr};
  // Tensors of the checkpoint that are not decoder parameters (e.g. TESS 2's
  // timestep_embed.weight). The caller (the diffusion head) takes what it
  // knows; anything left over is an error there, never silently dropped.
  std::map<std::string, torch::Tensor> extra_tensors;
};

// Loads `dir`. Every decoder parameter must be present with the shape the
// config implies (errors name the directory, the tensor and the expected
// shape); tied models need no lm_head.weight.
LoadedModel load_hf_model(const std::filesystem::path& dir, const LoadOptions& options = {});

// The decoder's parameters under HF names (lm_head.weight omitted when tied,
// as save_pretrained does).
std::map<std::string, torch::Tensor> hf_state_dict(DecoderImpl& decoder);

// A model as written to disk: its config.json and HF-named tensors (the live
// weights: an asynchronous checkpoint swaps them for deferred host copies,
// checkpoint/deferred_copy.h).
struct HfModelImage {
  ModelConfig config;  // torch_dtype set from the weights
  std::map<std::string, torch::Tensor> tensors;
  uint64_t max_shard_bytes = 0;  // shard above this size; 0 = one file
  // Writes config.json and the weights into `dir` (weight files already there are replaced).
  void write(const std::filesystem::path& dir) const;
};
// The decoder's image, plus `extra_tensors` (e.g. a diffusion model's timestep embedding).
HfModelImage hf_model_image(DecoderImpl& decoder, const std::map<std::string, torch::Tensor>& extra_tensors = {});

// Writes config.json and the weights (plus `extra_tensors`) into `dir`,
// sharded when `max_shard_bytes` > 0 and the weights are larger. Weight files
// already in `dir` are replaced.
void save_hf_model(const std::filesystem::path& dir, DecoderImpl& decoder,
                   const std::map<std::string, torch::Tensor>& extra_tensors = {},
                   uint64_t max_shard_bytes = 0);

}  // namespace tess::model
