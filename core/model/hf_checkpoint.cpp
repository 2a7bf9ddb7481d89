#include "core/model/hf_checkpoint.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include "core/model/safetensors.h"
#include "core/util/error.h"

namespace tess::model {
namespace fs = std::filesystem;
namespace {

// Buffers some HF checkpoints carry that are recomputed, not learned.
bool is_derived_buffer(const std::string& name) {
  return name.size() > 22 && name.compare(name.size() - 22, 22, "rotary_emb.inv_freq") == 0;
}

std::string shape_text(torch::IntArrayRef s) { return c10::str(s); }

}  // namespace

LoadedModel load_hf_model(const fs::path& dir, const LoadOptions& options) {
  if (!fs::is_directory(dir)) throw Error(fmt::format("model directory '{}' does not exist", dir.string()));
  auto config = ModelConfig::from_json_file(dir / "config.json");
  if (options.dtype) config.torch_dtype = *options.dtype;
  if (options.body_only) config.tie_word_embeddings = true;
  SafetensorsCheckpoint weights(dir);

  LoadedModel out;
  out.decoder = Decoder(config);
  auto& decoder = *out.decoder;
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& p : decoder.named_parameters()) {
    const std::string& name = p.key();
    if (!weights.contains(name))
      throw Error(fmt::format("{}: weight '{}' is missing (expected shape {})", dir.string(), name,
                              shape_text(p.value().sizes())));
    auto t = weights.load(name);
    if (t.sizes() != p.value().sizes())
      throw Error(fmt::format("{}: weight '{}' has shape {}, expected {} from config.json", weights.file_of(name).string(),
                              name, shape_text(t.sizes()), shape_text(p.value().sizes())));
    p.value().copy_(t);
    used.insert(name);
  }
  for (const auto& name : weights.names()) {
    if (used.count(name) || is_derived_buffer(name)) continue;
    if (name == "lm_head.weight" && config.tie_word_embeddings && !options.body_only) {
      // Some tied checkpoints store the head anyway; it must equal the embedding.
      if (!torch::equal(weights.load(name).to(decoder.embedding_weight().scalar_type()), decoder.embedding_weight()))
        throw Error(fmt::format("{}: tie_word_embeddings is true but lm_head.weight differs from the embedding", dir.string()));
      continue;
    }
    out.extra_tensors[name] = weights.load(name);
  }
  return out;
}

std::map<std::string, torch::Tensor> hf_state_dict(DecoderImpl& decoder) {
  std::map<std::string, torch::Tensor> out;
  for (auto& p : decoder.named_parameters()) out[p.key()] = p.value().detach();
  return out;
}

HfModelImage hf_model_image(DecoderImpl& decoder, const std::map<std::string, torch::Tensor>& extra_tensors) {
  HfModelImage image;
  image.tensors = hf_state_dict(decoder);
  for (const auto& [name, t] : extra_tensors) {
    if (image.tensors.count(name)) throw Error(fmt::format("extra tensor '{}' collides with a decoder parameter", name));
    image.tensors[name] = t.detach();
  }
  image.config = decoder.config();
  auto dtype = decoder.embedding_weight().scalar_type();
  image.config.torch_dtype = dtype == torch::kBFloat16 ? "bfloat16" : dtype == torch::kFloat16 ? "float16" : "float32";
  return image;
}

void HfModelImage::write(const fs::path& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create model directory '{}': {}", dir.string(), ec.message()));
  write_safetensors_checkpoint(dir, tensors, max_shard_bytes);
  config.write_json_file(dir / "config.json");
}

void save_hf_model(const fs::path& dir, DecoderImpl& decoder,
                   const std::map<std::string, torch::Tensor>& extra_tensors, uint64_t max_shard_bytes) {
  auto image = hf_model_image(decoder, extra_tensors);
  image.max_shard_bytes = max_shard_bytes;
  image.write(dir);
}

}  // namespace tess::model
