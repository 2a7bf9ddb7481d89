#include "core/model/model_config.h"

#include <algorithm>
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

const char* kSupportedRopeTypes = "default, llama3";

void require_supported_type(const std::string& source, const std::string& model_type) {
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2")
    throw Error(fmt::format("{}: model_type '{}' is not supported (tess runs llama, mistral and qwen2 decoders)",
                            source, model_type));
}

double number(const json& j, const std::string& key, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) throw Error(fmt::format("{}: missing required field '{}'", where, key));
  const json& v = j[key];
  if (!v.is_number() || !std::isfinite(v.get<double>()))
    throw Error(fmt::format("{}: field '{}' must be a finite number, got {}", where, key, v.dump()));
  return v.get<double>();
}

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

int64_t ModelConfig::trained_vocab(const std::string& source, int64_t model_rows, int64_t tokens) {
  if (model_rows > tokens && !vocab_padding_ok(model_rows, tokens))
    throw Error(fmt::format("{}: the model's vocabulary ({}) does not match its tokenizer ({}; padding rows beyond "
                            "the tokenizer reach at most the next multiple of 1024): another tokenizer?",
                            source, model_rows, tokens));
  return std::max(model_rows, tokens);
}

const util::Choices<Attention>& attention_choices() {
  static const util::Choices<Attention> c("attention mode",
                                          {{Attention::Causal, "causal"}, {Attention::Bidirectional, "bidirectional"}});
  return c;
}
Attention parse_attention(const std::string& name) { return attention_choices().parse(name); }
const char* attention_name(Attention a) { return attention_choices().name(a); }

std::string ModelConfig::hf_class_prefix() const {
  return model_type == "mistral" ? "Mistral" : model_type == "qwen2" ? "Qwen2" : "Llama";
}

int64_t ModelConfig::num_parameters() const {
  int64_t hd = resolved_head_dim();
  int64_t attn = hidden_size * hd * (num_attention_heads + 2 * num_key_value_heads) +
                 num_attention_heads * hd * hidden_size +
                 (qkv_bias() ? hd * (num_attention_heads + 2 * num_key_value_heads) : 0);
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
  require_supported_type(source, model_type);
  if (rope_scaling.type == "llama3") {
    const auto& r = rope_scaling;
    if (!(r.factor >= 1.0) || !std::isfinite(r.factor))
      throw Error(fmt::format("{}: rope scaling 'llama3' needs factor >= 1, got {}", source, r.factor));
    if (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) || !std::isfinite(r.high_freq_factor))
      throw Error(fmt::format("{}: rope scaling 'llama3' needs 0 < low_freq_factor < high_freq_factor, got {} and {}",
                              source, r.low_freq_factor, r.high_freq_factor));
    if (r.original_max_position_embeddings <= 0 || r.original_max_position_embeddings > kMaxPositions)
      throw Error(fmt::format("{}: rope scaling 'llama3' needs original_max_position_embeddings in [1, {}], got {}",
                              source, kMaxPositions, r.original_max_position_embeddings));
  } else if (rope_scaling.type != "default") {
    throw Error(fmt::format("{}: rope scaling '{}' is not supported (supported: {})", source, rope_scaling.type,
                            kSupportedRopeTypes));
  }
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
  require_supported_type(source, c.model_type);  // before the other fields, whose errors would mislead
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
  if (c.model_type == "qwen2") {
    // HF's Qwen2: a layer slides iff use_sliding_window (default false) and
    // its layer_types entry is sliding_attention (absent: layers >=
    // max_window_layers, default 28). tess runs one attention for all layers,
    // so Qwen2 is accepted when no layer slides.
    bool use = field<bool>(j, "use_sliding_window", source, false, false) && c.sliding_window > 0;
    int64_t window_layers = field<int64_t>(j, "max_window_layers", source, 28, false);
    int64_t sliding_layers = 0;
    if (j.contains("layer_types") && !j["layer_types"].is_null()) {
      const json& types = j["layer_types"];
      if (!types.is_array()) throw Error(fmt::format("{}: 'layer_types' must be a list, got {}", source, types.dump()));
      for (const auto& t : types) {
        if (!t.is_string() || (t != "full_attention" && t != "sliding_attention"))
          throw Error(fmt::format("{}: layer_types entry {} is not supported (full_attention, sliding_attention)",
                                  source, t.dump()));
        sliding_layers += t == "sliding_attention";
      }
    } else {
      sliding_layers = std::max<int64_t>(0, c.num_hidden_layers - std::max<int64_t>(0, window_layers));
    }
    if (use && sliding_layers > 0)
      throw Error(fmt::format(
          "{}: use_sliding_window is true and {} of {} layers slide (max_window_layers {} / layer_types): Qwen2's "
          "per-layer sliding-window attention is not supported (use_sliding_window false runs full attention)",
          source, sliding_layers, c.num_hidden_layers, window_layers));
    c.sliding_window = 0;
  }
  c.torch_dtype = field<std::string>(j, "dtype", source, field<std::string>(j, "torch_dtype", source, "float32", false), false);

  // Rotary base and scaling, as transformers 5.x reads them: the parameters
  // are `rope_scaling` (4.x's key) when set, else `rope_parameters` (5.x's);
  // their rope_theta, else the top-level rope_theta, else 10000.
  c.rope_theta = field<double>(j, "rope_theta", source, 10000.0, false);
  std::string rope_key;
  for (const char* key : {"rope_scaling", "rope_parameters"})
    if (rope_key.empty() && j.contains(key) && !j[key].is_null()) rope_key = key;
  if (!rope_key.empty()) {
    const json& rp = j[rope_key];
    std::string where = fmt::format("{}: {}", source, rope_key);
    if (!rp.is_object()) throw Error(fmt::format("{} must be an object, got {}", where, rp.dump()));
    if (rp.contains("rope_theta") && !rp["rope_theta"].is_null()) c.rope_theta = number(rp, "rope_theta", where);
    std::string type_key = rp.contains("rope_type") ? "rope_type" : "type";
    std::string type = field<std::string>(rp, type_key, where, "default", false);
    if (rp.contains("partial_rotary_factor") && !rp["partial_rotary_factor"].is_null() &&
        number(rp, "partial_rotary_factor", where) != 1.0)
      throw Error(fmt::format("{}: partial_rotary_factor {} is not supported (rotary embedding of the whole head only)",
                              where, rp["partial_rotary_factor"].dump()));
    if (type == "llama3") {
      c.rope_scaling.type = type;
      c.rope_scaling.factor = number(rp, "factor", where);
      c.rope_scaling.low_freq_factor = number(rp, "low_freq_factor", where);
      c.rope_scaling.high_freq_factor = number(rp, "high_freq_factor", where);
      // As HF: a top-level original_max_position_embeddings wins, then the
      // parameters' own, then max_position_embeddings.
      c.rope_scaling.original_max_position_embeddings = field<int64_t>(
          j, "original_max_position_embeddings", source,
          field<int64_t>(rp, "original_max_position_embeddings", where, c.max_position_embeddings, false), false);
    } else if (type != "default") {
      throw Error(fmt::format("{}.{} '{}' is not supported (supported: {})", where, type_key, type,
                              kSupportedRopeTypes));
    }
  }
  if (field<std::string>(j, "hidden_act", source, "silu", false) != "silu")
    throw Error(fmt::format("{}: hidden_act '{}' is not supported (expected silu)", source, j["hidden_act"].dump()));
  // Qwen2's q/k/v biases come with its model_type (HF's Qwen2 has no attention_bias key).
  if (c.model_type != "qwen2" && field<bool>(j, "attention_bias", source, false, false))
    throw Error(fmt::format("{}: attention_bias true (biases on q/k/v/o of a {} model) is not supported", source,
                            c.model_type));
  if (field<bool>(j, "mlp_bias", source, false, false))
    throw Error(fmt::format("{}: mlp_bias true is not supported", source));
  if (field<int64_t>(j, "pretraining_tp", source, 1, false) != 1)
    throw Error(fmt::format("{}: pretraining_tp != 1 is not supported", source));
  if (j.contains("is_causal") && j["is_causal"].is_boolean())
    c.attention = j["is_causal"].get<bool>() ? Attention::Causal : Attention::Bidirectional;

  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnownFields.count(it.key()) && !(c.model_type == "qwen2" && it.key() == "layer_types"))
      c.extra[it.key()] = it.value().dump();
  c.validate(source);
  return c;
}

ModelConfig ModelConfig::from_json_file(const std::filesystem::path& path) {
  return from_json_text(util::read_file(path, "model config"), path.string());
}

std::string ModelConfig::to_json_text() const {
  json j;
  j["architectures"] = {hf_class_prefix() + "ForCausalLM"};
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
  json rope = {{"rope_type", rope_scaling.type}, {"rope_theta", rope_theta}};
  if (rope_scaling.type == "llama3") {
    rope["factor"] = rope_scaling.factor;
    rope["low_freq_factor"] = rope_scaling.low_freq_factor;
    rope["high_freq_factor"] = rope_scaling.high_freq_factor;
    rope["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    j["rope_scaling"] = rope;  // 4.x reads only this key (5.x prefers it too)
    j["rope_scaling"].erase("rope_theta");
  }
  j["rope_parameters"] = rope;
  j["max_position_embeddings"] = max_position_embeddings;
  j["sliding_window"] = sliding_window > 0 ? json(sliding_window) : json(nullptr);
  if (model_type == "qwen2") {
    j["use_sliding_window"] = false;  // tess never runs Qwen2's per-layer windows
    j["max_window_layers"] = num_hidden_layers;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  j["eos_token_id"] = eos_token_id >= 0 ? json(eos_token_id) : json(nullptr);
  j["pad_token_id"] = pad_token_id >= 0 ? json(pad_token_id) : json(nullptr);
  j["torch_dtype"] = torch_dtype;
  j["initializer_range"] = initializer_range;
  if (model_type != "qwen2") {  // Qwen2's biases are implied by its model_type
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
  }
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

const std::vector<std::string>& ModelConfig::preset_names() {
  static const std::vector<std::string> names = {"tiny",         "tinyllama-1.1b", "mistral-7b-v0.1",
                                                 "llama-3-8b",   "llama-3.2-1b",   "qwen2.5-0.5b"};
  return names;
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
  } else if (name == "llama-3.2-1b") {
    // meta-llama/Llama-3.2-1B config.json: hidden_size 2048, intermediate_size 8192, num_hidden_layers 16,
    // num_attention_heads 32, num_key_value_heads 8, head_dim 64, vocab_size 128256, rms_norm_eps 1e-05,
    // rope_theta 500000.0, rope_scaling {rope_type llama3, factor 32.0, low_freq_factor 1.0,
    // high_freq_factor 4.0, original_max_position_embeddings 8192}, max_position_embeddings 131072,
    // tie_word_embeddings true, bos 128000, eos 128001, no biases.
    c.vocab_size = 128256; c.hidden_size = 2048; c.intermediate_size = 8192; c.num_hidden_layers = 16;
    c.num_attention_heads = 32; c.num_key_value_heads = 8; c.head_dim = 64; c.max_position_embeddings = 131072;
    c.rope_theta = 500000.0; c.rope_scaling = {"llama3", 32.0, 1.0, 4.0, 8192};
    c.tie_word_embeddings = true; c.bos_token_id = 128000; c.eos_token_id = 128001;
  } else if (name == "qwen2.5-0.5b") {
    // Qwen/Qwen2.5-0.5B config.json: model_type qwen2, hidden_size 896, intermediate_size 4864,
    // num_hidden_layers 24, num_attention_heads 14, num_key_value_heads 2 (head_dim 64), vocab_size 151936,
    // rms_norm_eps 1e-06, rope_theta 1000000.0, max_position_embeddings 32768, use_sliding_window false,
    // tie_word_embeddings true, bos = eos = 151643; biases on q/k/v (Qwen2's attention).
    c.model_type = "qwen2"; c.vocab_size = 151936; c.hidden_size = 896; c.intermediate_size = 4864;
    c.num_hidden_layers = 24; c.num_attention_heads = 14; c.num_key_value_heads = 2; c.rms_norm_eps = 1e-6;
    c.rope_theta = 1000000.0; c.max_position_embeddings = 32768; c.tie_word_embeddings = true;
    c.bos_token_id = 151643; c.eos_token_id = 151643;
  } else {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error(fmt::format("unknown model preset '{}' ({})", name, names));
  }
  c.validate("preset " + name);
  return c;
}

}  // namespace tess::model
