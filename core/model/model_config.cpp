#include "core/model/model_config.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/file.h"

namespace tess::model {
namespace {

using nlohmann::json;

// Fields tess reads or writes itself; everything else goes to `extra`.
const std::set<std::string> kKnownFields = {
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "rms_norm_eps", "rope_theta", "rope_parameters", "rope_scaling", "max_position_embeddings",
    "sliding_window", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
    "torch_dtype", "dtype", "initializer_range", "hidden_act", "attention_bias", "mlp_bias",
    "is_causal", "pretraining_tp", "use_cache", "attention_dropout", "transformers_version",
    "use_sliding_window", "max_window_layers"};

int64_t token_id(const json& j, const std::string& key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return -1;
  const json& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();  // Llama 3 lists several EOS ids
  throw Error(fmt::format("{}: '{}' must be an integer id, got {}", source, key, v.dump()));
}

template <typename T>
T field(const json& j, const std::string& key, const std::string& source, T fallback, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) throw Error(fmt::format("{}: missing required field '{}'", source, key));
    return fallback;
  }
  const json& v = j[key];
  // nlohmann would truncate 2.9 to 2 for an integer field: a non-integer is an error instead.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!v.is_number_integer())
      throw Error(fmt::format("{}: field '{}' must be an integer, got {}", source, key, v.dump()));
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (v.is_number() && !std::isfinite(v.get<double>()))
      throw Error(fmt::format("{}: field '{}' must be a finite number, got {}", source, key, v.dump()));
  }
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw Error(fmt::format("{}: field '{}' has the wrong type ({})", source, key, v.dump()));
  }
}

}  // namespace

const util::Choices<Attention>& attention_choices() {
  static const util::Choices<Attention> c("attention mode",
                                          {{Attention::Causal, "causal"}, {Attention::Bidirectional, "bidirectional"}});
  return c;
}
Attention parse_attention(const std::string& name) { return attention_choices().parse(name); }
const char* attention_name(Attention a) { return attention_choices().name(a); }

int64_t ModelConfig::num_parameters() const {
  int64_t hd = resolved_head_dim();
  int64_t attn = hidden_size * hd * (num_attention_heads + 2 * num_key_value_heads) +
                 num_attention_heads * hd * hidden_size;
  int64_t mlp = 3 * hidden_size * intermediate_size;
  int64_t layer = attn + mlp + 2 * hidden_size;
  int64_t embed = vocab_size * hidden_size;
  return embed + num_hidden_layers * layer + hidden_size + (tie_word_embeddings ? 0 : embed);
}

int64_t ModelConfig::parameter_bytes(const std::string& dtype) const {
  return num_parameters() * (dtype == "float32" ? 4 : 2);
}

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* name, int64_t most) {
    if (v <= 0) throw Error(fmt::format("{}: '{}' must be positive, got {}", source, name, v));
    if (v > most) throw Error(fmt::format("{}: '{}' = {} is larger than tess accepts ({})", source, name, v, most));
  };
  positive(vocab_size, "vocab_size", kMaxVocab);
  positive(hidden_size, "hidden_size", kMaxHidden);
  positive(intermediate_size, "intermediate_size", kMaxIntermediate);
  positive(num_hidden_layers, "num_hidden_layers", kMaxLayers);
  positive(num_attention_heads, "num_attention_heads", kMaxHeads);
  positive(num_key_value_heads, "num_key_value_heads", kMaxHeads);
  positive(max_position_embeddings, "max_position_embeddings", kMaxPositions);
  if (head_dim < 0 || head_dim > kMaxHidden)
    throw Error(fmt::format("{}: 'head_dim' = {} is outside [0, {}]", source, head_dim, kMaxHidden));
  if (head_dim <= 0 && hidden_size % num_attention_heads != 0)
    throw Error(fmt::format("{}: hidden_size {} is not divisible by num_attention_heads {}", source,
                            hidden_size, num_attention_heads));
  if (resolved_head_dim() % 2 != 0)
    throw Error(fmt::format("{}: head_dim {} must be even for rotary embeddings", source, resolved_head_dim()));
  if (num_attention_heads % num_key_value_heads != 0)
    throw Error(fmt::format("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
                            num_attention_heads, num_key_value_heads));
  if (!(rms_norm_eps > 0) || !(rope_theta > 0))
    throw Error(fmt::format("{}: rms_norm_eps and rope_theta must be positive", source));
  if (sliding_window < 0) throw Error(fmt::format("{}: sliding_window must be >= 0", source));
  if (torch_dtype != "float32" && torch_dtype != "bfloat16" && torch_dtype != "float16")
    throw Error(fmt::format("{}: unsupported dtype '{}' (expected float32, bfloat16 or float16)", source, torch_dtype));
  for (int64_t id : {bos_token_id, eos_token_id, pad_token_id})
    if (id >= vocab_size)
      throw Error(fmt::format("{}: special token id {} is outside the vocabulary ({})", source, id, vocab_size));
}

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e309
    throw Error(fmt::format("{}: not valid JSON ({})", source, e.what()));
  }
  if (!j.is_object()) throw Error(fmt::format("{}: expected a JSON object", source));

  ModelConfig c;
  c.model_type = field<std::string>(j, "model_type", source, "llama", true);
  if (c.model_type != "llama" && c.model_type != "mistral")
    throw Error(fmt::format("{}: model_type '{}' is not supported (tess runs llama and mistral decoders)",
                            source, c.model_type));
  c.vocab_size = field<int64_t>(j, "vocab_size", source, 0, true);
  c.hidden_size = field<int64_t>(j, "hidden_size", source, 0, true);
  c.intermediate_size = field<int64_t>(j, "intermediate_size", source, 0, true);
  c.num_hidden_layers = field<int64_t>(j, "num_hidden_layers", source, 0, true);
  c.num_attention_heads = field<int64_t>(j, "num_attention_heads", source, 0, true);
  c.num_key_value_heads = field<int64_t>(j, "num_key_value_heads", source, c.num_attention_heads, false);
  c.head_dim = field<int64_t>(j, "head_dim", source, 0, false);
  c.rms_norm_eps = field<double>(j, "rms_norm_eps", source, 1e-6, false);
  c.max_position_embeddings = field<int64_t>(j, "max_position_embeddings", source, 2048, false);
  c.tie_word_embeddings = field<bool>(j, "tie_word_embeddings", source, false, false);
  c.initializer_range = field<double>(j, "initializer_range", source, 0.02, false);
  c.bos_token_id = token_id(j, "bos_token_id", source);
  c.eos_token_id = token_id(j, "eos_token_id", source);
  c.pad_token_id = token_id(j, "pad_token_id", source);
  c.sliding_window = field<int64_t>(j, "sliding_window", source, 0, false);
  if (j.contains("use_sliding_window") && j["use_sliding_window"] == false) c.sliding_window = 0;
  c.torch_dtype = field<std::string>(j, "dtype", source, field<std::string>(j, "torch_dtype", source, "float32", false), false);

  // Rotary base: 4.x writes rope_theta, 5.x rope_parameters.rope_theta.
  c.rope_theta = field<double>(j, "rope_theta", source, 10000.0, false);
  const json* scaling = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const json& rp = j["rope_parameters"];
    c.rope_theta = field<double>(rp, "rope_theta", source, c.rope_theta, false);
    scaling = &rp;
  }
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) scaling = &j["rope_scaling"];
  if (scaling) {
    std::string type = scaling->value("rope_type", scaling->value("type", std::string("default")));
    if (type != "default")
      throw Error(fmt::format("{}: rope scaling '{}' is not supported (only plain RoPE)", source, type));
  }
  if (field<std::string>(j, "hidden_act", source, "silu", false) != "silu")
    throw Error(fmt::format("{}: hidden_act '{}' is not supported (expected silu)", source, j["hidden_act"].dump()));
  if (field<bool>(j, "attention_bias", source, false, false) || field<bool>(j, "mlp_bias", source, false, false))
    throw Error(fmt::format("{}: attention_bias/mlp_bias are not supported", source));
  if (field<int64_t>(j, "pretraining_tp", source, 1, false) != 1)
    throw Error(fmt::format("{}: pretraining_tp != 1 is not supported", source));
  if (j.contains("is_causal") && j["is_causal"].is_boolean())
    c.attention = j["is_causal"].get<bool>() ? Attention::Causal : Attention::Bidirectional;

  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnownFields.count(it.key())) c.extra[it.key()] = it.value().dump();
  c.validate(source);
  return c;
}

ModelConfig ModelConfig::from_json_file(const std::filesystem::path& path) {
  return from_json_text(util::read_file(path, "model config"), path.string());
}

std::string ModelConfig::to_json_text() const {
  json j;
  j["architectures"] = {model_type == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = resolved_head_dim();
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = rms_norm_eps;
  // Both spellings, so that transformers 4.x and 5.x read the same base.
  j["rope_theta"] = rope_theta;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", rope_theta}};
  j["max_position_embeddings"] = max_position_embeddings;
  j["sliding_window"] = sliding_window > 0 ? json(sliding_window) : json(nullptr);
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  j["eos_token_id"] = eos_token_id >= 0 ? json(eos_token_id) : json(nullptr);
  j["pad_token_id"] = pad_token_id >= 0 ? json(pad_token_id) : json(nullptr);
  j["torch_dtype"] = torch_dtype;
  j["initializer_range"] = initializer_range;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["is_causal"] = attention == Attention::Causal;
  for (const auto& [k, v] : extra) j[k] = json::parse(v);
  return j.dump(2) + "\n";
}

void ModelConfig::write_json_file(const std::filesystem::path& path) const {
  std::ofstream out(path);
  out << to_json_text();
  out.close();
  if (!out) throw Error(fmt::format("cannot write model config '{}' (disk full or not writable?)", path.string()));
}

ModelConfig ModelConfig::from_run_config(const config::Config& cfg) {
  ModelConfig c;
  c.model_type = cfg.get_string("model.architecture");
  c.vocab_size = cfg.get_int("model.vocab_size");
  c.hidden_size = cfg.get_int("model.hidden_size");
  c.intermediate_size = cfg.get_int("model.intermediate_size");
  c.num_hidden_layers = cfg.get_int("model.num_layers");
  c.num_attention_heads = cfg.get_int("model.num_heads");
  c.num_key_value_heads = cfg.get_int("model.num_kv_heads");
  c.rope_theta = cfg.get_float("model.rope_theta");
  c.rms_norm_eps = cfg.get_float("model.rms_norm_eps");
  c.max_position_embeddings = cfg.get_int("model.max_position_embeddings");
  c.sliding_window = cfg.get_int("model.sliding_window");
  c.tie_word_embeddings = cfg.get_bool("model.tie_word_embeddings");
  c.torch_dtype = cfg.get_string("model.dtype");
  c.validate("model.* config keys");
  return c;
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  if (name == "tiny") {
    c.vocab_size = 256; c.hidden_size = 64; c.intermediate_size = 176; c.num_hidden_layers = 2;
    c.num_attention_heads = 4; c.num_key_value_heads = 2; c.max_position_embeddings = 256;
  } else if (name == "tinyllama-1.1b") {
    c.vocab_size = 32000; c.hidden_size = 2048; c.intermediate_size = 5632; c.num_hidden_layers = 22;
    c.num_attention_heads = 32; c.num_key_value_heads = 4; c.max_position_embeddings = 2048;
    c.bos_token_id = 1; c.eos_token_id = 2;
  } else if (name == "mistral-7b-v0.1") {
    c.model_type = "mistral"; c.vocab_size = 32000; c.hidden_size = 4096; c.intermediate_size = 14336;
    c.num_hidden_layers = 32; c.num_attention_heads = 32; c.num_key_value_heads = 8;
    c.max_position_embeddings = 32768; c.sliding_window = 4096; c.bos_token_id = 1; c.eos_token_id = 2;
  } else if (name == "llama-3-8b") {
    c.vocab_size = 128256; c.hidden_size = 4096; c.intermediate_size = 14336; c.num_hidden_layers = 32;
    c.num_attention_heads = 32; c.num_key_value_heads = 8; c.max_position_embeddings = 8192;
    c.rope_theta = 500000.0; c.bos_token_id = 128000; c.eos_token_id = 128001;
  } else {
    throw Error(fmt::format("unknown model preset '{}' (tiny, tinyllama-1.1b, mistral-7b-v0.1, llama-3-8b)", name));
  }
  c.validate("preset " + name);
  return c;
}

}  // namespace tess::model
