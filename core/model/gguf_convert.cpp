#include "core/model/gguf_convert.h"

#include <torch/torch.h>

#include <fstream>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/model/gguf.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "core/util/utf8.h"

namespace tess::model {
namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

namespace {

std::string shape_text(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// ---- model -----------------------------------------------------------------

struct ExpectedTensor {
  std::vector<int64_t> shape;
  int64_t permute_heads = 0;  // > 0: undo llama.cpp's Q/K permutation with this many heads
};

// Every decoder parameter under its HF name, with the shape `c` implies.
std::map<std::string, ExpectedTensor> expected_tensors(const ModelConfig& c) {
  const int64_t h = c.hidden_size, d = c.resolved_head_dim(), f = c.intermediate_size;
  std::map<std::string, ExpectedTensor> e;
  e["model.embed_tokens.weight"] = {{c.vocab_size, h}};
  e["model.norm.weight"] = {{h}};
  if (!c.tie_word_embeddings) e["lm_head.weight"] = {{c.vocab_size, h}};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    e[p + "input_layernorm.weight"] = {{h}};
    e[p + "post_attention_layernorm.weight"] = {{h}};
    e[p + "self_attn.q_proj.weight"] = {{c.num_attention_heads * d, h}, c.num_attention_heads};
    e[p + "self_attn.k_proj.weight"] = {{c.num_key_value_heads * d, h}, c.num_key_value_heads};
    e[p + "self_attn.v_proj.weight"] = {{c.num_key_value_heads * d, h}};
    e[p + "self_attn.o_proj.weight"] = {{h, c.num_attention_heads * d}};
    e[p + "mlp.gate_proj.weight"] = {{f, h}};
    e[p + "mlp.up_proj.weight"] = {{f, h}};
    e[p + "mlp.down_proj.weight"] = {{h, f}};
  }
  return e;
}

// ---- tokenizer -------------------------------------------------------------

// GPT-2's byte -> code point table (bytes_to_unicode): printable Latin-1
// bytes stand for themselves, the rest are shifted to 256 + n.
std::vector<uint32_t> byte_to_unicode() {
  std::vector<uint32_t> table(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) table[b] = direct[b] ? uint32_t(b) : 256 + n++;
  return table;
}


// The code points of `s`, or false when it is not valid UTF-8.
bool decode_utf8(const std::string& s, std::vector<uint32_t>& out) {
  out.clear();
  for (size_t i = 0; i < s.size();) {
    const auto c = uint8_t(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto cc = uint8_t(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    out.push_back(cp);
    i += len;
  }
  return true;
}

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet() : table_(byte_to_unicode()) {
    for (uint32_t cp : table_) in_alphabet_.insert(cp);
  }
  // True when every character of `token` is one of the 256 byte stand-ins,
  // i.e. the token is already spelled in the byte-level alphabet.
  bool spelled(const std::string& token) const {
    std::vector<uint32_t> cps;
    if (!decode_utf8(token, cps)) return false;
    for (uint32_t cp : cps)
      if (!in_alphabet_.count(cp)) return false;
    return true;
  }
  // transformers' byte_level_tokenizer: tokens written as raw text (some
  // converters store e.g. "\n" verbatim) are respelled byte by byte.
  std::string respell(const std::string& token) const {
    if (spelled(token)) return token;
    std::string out;
    for (unsigned char b : token) util::append_utf8(out, table_[b]);
    return out;
  }

 private:
  std::vector<uint32_t> table_;
  std::set<uint32_t> in_alphabet_;
};

// transformers' GGUF_PRE_TOKENIZER_SPLITS (integrations/gguf/
// gguf_tokenizer_mapping.py): `tokenizer.ggml.pre` values whose vocabulary was
// trained with a split regex other than GPT-2's. "smollm" adds a digit split
// (see below); every other value (e.g. "gpt2", "default") keeps GPT-2's
// ByteLevel pre-tokenizer.
const char* split_regex(const std::string& pre) {
  static const char* kLlama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const char* kTekken =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const char* kGpt4o =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const char* kQwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const char* kQwen35 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::map<std::string, const char*> table = {
      {"llama3", kLlama3},      {"llama-v3", kLlama3}, {"llama-bpe", kLlama3},        {"falcon3", kLlama3},
      {"falcon-h1", kLlama3},   {"pixtral", kLlama3},  {"midm-2.0", kLlama3},         {"lfm2", kLlama3},
      {"jina-v5-nano", kLlama3}, {"dbrx", kLlama3},    {"smaug-bpe", kLlama3},        {"tekken", kTekken},
      {"qwen2", kQwen2},        {"deepseek-r1-qwen", kQwen2}, {"kormo", kQwen2},      {"f2llmv2", kQwen2},
      {"megrez", kQwen2},       {"qwen35", kQwen35},   {"gpt-4o", kGpt4o},            {"llama4", kGpt4o},
      {"kanana2", kGpt4o},      {"talkie", kGpt4o},    {"minimax-m2", kGpt4o},
  };
  auto it = table.find(pre);
  return it == table.end() ? nullptr : it->second;
}

ordered_json byte_level(bool use_regex, bool add_prefix_space) {
  return ordered_json{{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", true},
                      {"use_regex", use_regex}};
}

// TemplateProcessing as transformers' update_post_processor builds it.
ordered_json post_processor(const std::string* bos, int64_t bos_id, const std::string* eos, int64_t eos_id) {
  auto special = [](const std::string& t, int type_id) {
    return ordered_json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}};
  };
  auto seq = [](const char* id, int type_id) { return ordered_json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
  ordered_json single = ordered_json::array(), pair = ordered_json::array(), specials = ordered_json::object();
  if (bos) single.push_back(special(*bos, 0));
  single.push_back(seq("A", 0));
  if (eos) single.push_back(special(*eos, 0));
  pair = single;
  if (bos) pair.push_back(special(*bos, 1));
  pair.push_back(seq("B", 1));
  if (eos) pair.push_back(special(*eos, 1));
  if (bos) specials[*bos] = {{"id", *bos}, {"ids", {bos_id}}, {"tokens", {*bos}}};
  if (eos) specials[*eos] = {{"id", *eos}, {"ids", {eos_id}}, {"tokens", {*eos}}};
  return ordered_json{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw Error(fmt::format("cannot write '{}' (disk full or not writable?)", path.string()));
}

std::string dump(const ordered_json& j) { return j.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n"; }

// A float32 metadata value as the shortest decimal that round-trips in
// float32 (1e-05, not 9.999999747378752e-06): the value the model's authors
// wrote, before llama.cpp's converter narrowed it. fallback < 0: required.
double float32_decimal(const GGUFFile& file, const std::string& key, double fallback) {
  const GGUFValue* v = file.find(key);
  if (!v && fallback >= 0) return fallback;
  const double x = file.get_float(key);
  if (v->type != GGUFValueType::FLOAT32) return x;
  return std::stod(fmt::format("{}", float(x)));
}

}  // namespace

ModelConfig gguf_model_config(const GGUFFile& file) {
  const std::string src = file.path().string();
  const std::string arch = file.get_string("general.architecture");
  if (arch != "llama")
    throw Error(fmt::format("{}: general.architecture '{}' is not supported (supported: llama, which llama.cpp also "
                            "uses for Mistral)",
                            src, arch));
  const std::string p = arch + ".";
  ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = int64_t(file.get_uint(p + "embedding_length"));
  c.intermediate_size = int64_t(file.get_uint(p + "feed_forward_length"));
  c.num_hidden_layers = int64_t(file.get_uint(p + "block_count"));
  c.num_attention_heads = int64_t(file.get_uint(p + "attention.head_count"));
  c.num_key_value_heads = int64_t(file.get_uint(p + "attention.head_count_kv", uint64_t(c.num_attention_heads)));
  c.rope_theta = float32_decimal(file, p + "rope.freq_base", 10000.0);
  c.rms_norm_eps = float32_decimal(file, p + "attention.layer_norm_rms_epsilon", -1.0);
  c.max_position_embeddings = int64_t(file.get_uint(p + "context_length"));
  if (file.find(p + "vocab_size")) {
    c.vocab_size = int64_t(file.get_uint(p + "vocab_size"));
  } else if (file.find("tokenizer.ggml.tokens")) {
    c.vocab_size = int64_t(file.get("tokenizer.ggml.tokens").array.size());
  } else {
    c.vocab_size = file.tensor("token_embd.weight").shape()[0];
  }
  if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0)
    throw Error(fmt::format("{}: {}attention.head_count {} does not divide {}embedding_length {}", src, p,
                            c.num_attention_heads, p, c.hidden_size));
  int64_t head_dim = c.hidden_size / c.num_attention_heads;
  if (file.find(p + "attention.key_length")) {
    const auto k = int64_t(file.get_uint(p + "attention.key_length"));
    const auto v = int64_t(file.get_uint(p + "attention.value_length", uint64_t(k)));
    if (k != v)
      throw Error(fmt::format("{}: {}attention.key_length {} differs from value_length {} (not a Llama layout)", src, p,
                              k, v));
    if (k != head_dim) c.head_dim = k;
    head_dim = k;
  }
  if (file.find(p + "rope.dimension_count") && int64_t(file.get_uint(p + "rope.dimension_count")) != head_dim)
    throw Error(fmt::format("{}: {}rope.dimension_count {} is not the head dimension {} (partial rotary embeddings "
                            "are not supported)",
                            src, p, file.get_uint(p + "rope.dimension_count"), head_dim));
  const std::string scaling = file.get_string(p + "rope.scaling.type", "none");
  if (scaling != "none")
    throw Error(fmt::format("{}: {}rope.scaling.type '{}' is not supported (tess's decoder has plain RoPE)", src, p,
                            scaling));
  if (file.find_tensor("rope_freqs.weight"))
    throw Error(fmt::format("{}: tensor 'rope_freqs.weight' (Llama 3.1-style rope scaling) is not supported", src));
  if (file.find(p + "attention.sliding_window"))
    c.sliding_window = int64_t(file.get_uint(p + "attention.sliding_window"));
  c.tie_word_embeddings = file.find_tensor("output.weight") == nullptr;
  auto token_id = [&](const char* key) {
    return file.find(key) ? int64_t(file.get_uint(key)) : int64_t(-1);
  };
  c.bos_token_id = token_id("tokenizer.ggml.bos_token_id");
  c.eos_token_id = token_id("tokenizer.ggml.eos_token_id");
  c.pad_token_id = token_id("tokenizer.ggml.padding_token_id");
  c.validate(src);
  return c;
}

std::string gguf_to_hf_name(const std::string& name) {
  static const std::map<std::string, std::string> top = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string, std::string> block = {
      {"attn_norm.weight", "input_layernorm.weight"},   {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},     {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},     {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  if (auto it = top.find(name); it != top.end()) return it->second;
  static const std::regex blk(R"(blk\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(name, m, blk)) {
    if (auto it = block.find(m[2].str()); it != block.end()) return "model.layers." + m[1].str() + "." + it->second;
  }
  return "";
}

at::Tensor unpermute_qk(const at::Tensor& w, int64_t n_head) {
  const int64_t rows = w.size(0), cols = w.size(1);
  return w.reshape({n_head, rows / n_head / 2, 2, cols}).transpose(1, 2).reshape({rows, cols}).contiguous();
}

bool write_hf_tokenizer(const GGUFFile& file, const fs::path& dir) {
  const std::string src = file.path().string();
  if (!file.find("tokenizer.ggml.model") || file.get_string("tokenizer.ggml.model") != "gpt2") return false;
  const auto tokens = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), 1);  // 1: NORMAL
  if (file.find("tokenizer.ggml.token_type")) {
    types = file.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != tokens.size())
      throw Error(fmt::format("{}: tokenizer.ggml.token_type has {} entries for {} tokens", src, types.size(),
                              tokens.size()));
  }
  const auto merges = file.get_string_array("tokenizer.ggml.merges");
  const std::string pre = file.get_string("tokenizer.ggml.pre", "default");
  auto special_id = [&](const char* key) -> int64_t {
    if (!file.find(key)) return -1;
    const auto id = file.get_uint(key);
    if (id >= tokens.size())
      throw Error(fmt::format("{}: {} {} is outside the vocabulary of {} tokens", src, key, id, tokens.size()));
    return int64_t(id);
  };
  const int64_t bos = special_id("tokenizer.ggml.bos_token_id"), eos = special_id("tokenizer.ggml.eos_token_id"),
                unk = special_id("tokenizer.ggml.unknown_token_id"), pad = special_id("tokenizer.ggml.padding_token_id");
  const bool add_bos = file.get_bool("tokenizer.ggml.add_bos_token", false);
  const bool add_eos = file.get_bool("tokenizer.ggml.add_eos_token", false);

  const ByteLevelAlphabet alphabet;
  ordered_json vocab = ordered_json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[alphabet.respell(tokens[id])] = int64_t(id);
  ordered_json merge_list = ordered_json::array();
  for (size_t k = 0; k < merges.size(); ++k) {
    const auto& m = merges[k];
    const auto space = m.find(' ');
    if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos)
      throw Error(fmt::format("{}: tokenizer.ggml.merges[{}] '{}' is not two tokens separated by one space", src, k, m));
    merge_list.push_back({m.substr(0, space), m.substr(space + 1)});
  }

  // Added tokens as transformers' add_gguf_special_tokens picks them: CONTROL
  // (3) tokens spelled in the byte alphabet are special, USER_DEFINED (4)
  // ones are plain added tokens; bos/eos/unk/pad are special whatever their type.
  std::set<int64_t> specials;
  for (int64_t id : {bos, eos, unk, pad})
    if (id >= 0) specials.insert(id);
  ordered_json added = ordered_json::array();
  std::vector<std::string> additional_special;
  for (size_t id = 0; id < tokens.size(); ++id) {
    const bool control = types[id] == 3 && alphabet.spelled(tokens[id]);
    const bool user = types[id] == 4 && vocab.contains(tokens[id]);
    const bool named = specials.count(int64_t(id)) > 0;
    if (!control && !user && !named) continue;
    const bool special = control || named;
    if (control) additional_special.push_back(tokens[id]);
    added.push_back({{"id", int64_t(id)}, {"content", tokens[id]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", special}});
  }

  ordered_json pre_tokenizer;
  if (const char* split = split_regex(pre)) {
    pre_tokenizer = {{"type", "Sequence"},
                     {"pretokenizers",
                      {{{"type", "Split"}, {"pattern", {{"Regex", split}}}, {"behavior", "Isolated"}, {"invert", false}},
                       byte_level(false, false)}}};
  } else if (pre == "smollm") {
    // SmolLM/SmolLM2 were trained with digits split one by one before GPT-2's
    // ByteLevel (their released tokenizer.json; llama.cpp's "smollm" does the
    // same). transformers' GGUF loader does not know the name and drops the
    // digit split, which changes the ids of numbers.
    pre_tokenizer = {{"type", "Sequence"},
                     {"pretokenizers",
                      {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true, false)}}};
  } else {
    pre_tokenizer = byte_level(true, false);
  }
  const std::string* bos_text = add_bos && bos >= 0 ? &tokens[bos] : nullptr;
  const std::string* eos_text = add_eos && eos >= 0 ? &tokens[eos] : nullptr;
  ordered_json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer},
      {"post_processor", post_processor(bos_text, bos, eos_text, eos)},
      {"decoder", byte_level(true, true)},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merge_list}}},
  };

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create model directory '{}': {}", dir.string(), ec.message()));
  write_text(dir / "tokenizer.json", dump(tok));

  ordered_json special_map = ordered_json::object();
  auto name_token = [&](const char* name, int64_t id) {
    if (id >= 0) special_map[name] = tokens[id];
  };
  name_token("bos_token", bos);
  name_token("eos_token", eos);
  name_token("unk_token", unk);
  name_token("pad_token", pad);
  if (!additional_special.empty()) special_map["additional_special_tokens"] = additional_special;
  write_text(dir / "special_tokens_map.json", dump(special_map));

  ordered_json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                         {"add_bos_token", add_bos},
                         {"add_eos_token", add_eos},
                         {"clean_up_tokenization_spaces", false},
                         {"model_max_length", int64_t(file.get_uint("llama.context_length", 2048))}};
  for (const auto& [k, v] : special_map.items()) config[k] = v;
  if (file.find("tokenizer.chat_template")) config["chat_template"] = file.get_string("tokenizer.chat_template");
  write_text(dir / "tokenizer_config.json", dump(config));
  return true;
}

GGUFConvertSummary convert_gguf_to_hf(const fs::path& gguf_path, const fs::path& out_dir,
                                      const GGUFConvertOptions& options) {
  if (options.dtype != "float32" && options.dtype != "bfloat16")
    throw Error(fmt::format("--dtype '{}' is not supported (float32 or bfloat16)", options.dtype));
  GGUFFile file(gguf_path);
  const std::string src = gguf_path.string();
  GGUFConvertSummary summary;
  summary.config = gguf_model_config(file);
  summary.config.torch_dtype = options.dtype;
  const auto expected = expected_tensors(summary.config);
  const auto dtype = options.dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;

  // Names and shapes first, so a wrong file fails before minutes of work.
  for (const auto& t : file.tensors()) {
    const std::string hf = gguf_to_hf_name(t.name);
    if (hf.empty() || !expected.count(hf))
      throw Error(fmt::format("{}: tensor '{}' ({} {}) has no counterpart in an HF Llama model of {} layers", src,
                              t.name, ggml_type_name(t.type), shape_text(t.shape()), summary.config.num_hidden_layers));
    if (t.shape() != expected.at(hf).shape)
      throw Error(fmt::format("{}: tensor '{}' has shape {}, expected {} for {} from the llama.* metadata", src, t.name,
                              shape_text(t.shape()), shape_text(expected.at(hf).shape), hf));
    if (!ggml_type_supported(t.type))
      throw Error(fmt::format("{}: tensor '{}' has ggml type {}, which tess cannot dequantise (supported: {})", src,
                              t.name, ggml_type_name(t.type), ggml_supported_types()));
  }
  std::map<std::string, torch::Tensor> weights;
  for (const auto& t : file.tensors()) {
    const std::string hf = gguf_to_hf_name(t.name);
    auto w = file.dequantize(t);
    if (expected.at(hf).permute_heads > 0) w = unpermute_qk(w, expected.at(hf).permute_heads);
    summary.parameters += w.numel();
    summary.tensors_by_type[ggml_type_name(t.type)] += 1;
    weights[hf] = w.to(dtype).contiguous();
    ++summary.tensors;
    if (options.on_tensor) options.on_tensor(t, summary.tensors, int64_t(file.tensors().size()));
  }
  for (const auto& [name, e] : expected)
    if (!weights.count(name))
      throw Error(fmt::format("{}: no GGUF tensor provides '{}' (shape {})", src, name, shape_text(e.shape)));

  write_safetensors_checkpoint(out_dir, weights);
  summary.config.write_json_file(out_dir / "config.json");
  summary.tokenizer_model = file.get_string("tokenizer.ggml.model", "");
  summary.tokenizer_written = write_hf_tokenizer(file, out_dir);
  return summary;
}

}  // namespace tess::model
