// `tess model info|forward|init`: inspect model directories and run one
// forward pass, the way users debug a checkpoint (and the way tests check
// tess against HF transformers).
#include <torch/torch.h>

#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/model/hf_checkpoint.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "core/util/format.h"
#include "data/tokenizer.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

struct ModelArgs {
  std::string model;
  std::string ids;
  std::string attention;
  std::string output;
  std::string preset = "tiny";
  std::string like;
  uint64_t seed = 0;
};

int info(const ModelArgs& a) {
  auto loaded = model::load_hf_model(a.model);
  const auto& c = loaded.decoder->config();
  int64_t params = 0;
  for (const auto& p : loaded.decoder->parameters()) params += p.numel();
  std::cout << fmt::format("model      {}\n", a.model)
            << fmt::format("type       {} ({} attention by default)\n", c.model_type, model::attention_name(c.attention))
            << fmt::format("shape      {} layers, hidden {}, intermediate {}, heads {} (kv {}), head_dim {}\n",
                           c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads,
                           c.num_key_value_heads, c.resolved_head_dim())
            << fmt::format("vocab      {} (bos {}, eos {}, pad {}), tied embeddings: {}\n", c.vocab_size,
                           c.bos_token_id, c.eos_token_id, c.pad_token_id, c.tie_word_embeddings ? "yes" : "no")
            << fmt::format("positions  rope_theta {}{}, max {}, sliding window {}\n", c.rope_theta,
                           c.rope_scaling.type == "default"
                               ? std::string()
                               : fmt::format(" (scaling {}: factor {}, low_freq_factor {}, high_freq_factor {}, "
                                             "original max {})",
                                             c.rope_scaling.type, c.rope_scaling.factor, c.rope_scaling.low_freq_factor,
                                             c.rope_scaling.high_freq_factor,
                                             c.rope_scaling.original_max_position_embeddings),
                           c.max_position_embeddings, c.sliding_window > 0 ? std::to_string(c.sliding_window) : "none")
            << (c.qkv_bias() ? "biases     q/k/v projections\n" : "")
            << fmt::format("parameters {} ({}), dtype {}\n", params, util::human_count(static_cast<double>(params)),
                           c.torch_dtype);
  for (const auto& [name, t] : loaded.extra_tensors)
    std::cout << fmt::format("extra      {} {}\n", name, c10::str(t.sizes()));
  return 0;
}

int forward(const ModelArgs& a) {
  auto loaded = model::load_hf_model(a.model, {std::string("float32")});
  auto& decoder = *loaded.decoder;
  decoder.eval();
  auto ids = parse_token_ids(a.ids, "--ids", decoder.config().vocab_size);
  model::ForwardOptions opt;
  if (!a.attention.empty()) opt.attention = model::parse_attention(a.attention);
  torch::NoGradGuard no_grad;
  auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto logits = decoder.forward(input, opt).to(torch::kFloat32).contiguous();
  model::write_safetensors(a.output, {{"logits", logits}});
  std::cout << fmt::format("wrote logits [1, {}, {}] ({} attention) to {}\n", ids.size(), logits.size(2),
                           model::attention_name(opt.attention.value_or(decoder.config().attention)), a.output);
  return 0;
}

// A fresh model of a preset shape, or of the shape (and with the tokenizer)
// of an existing model directory: the from-scratch baseline of a pretrained model.
int init(const ModelArgs& a) {
  auto config = a.like.empty() ? model::ModelConfig::preset(a.preset)
                               : model::ModelConfig::from_json_file(std::filesystem::path(a.like) / "config.json");
  model::Decoder decoder(config, a.seed);
  model::save_hf_model(a.output, *decoder);
  std::string shape = a.like.empty() ? fmt::format("'{}'", a.preset) : fmt::format("{}-shaped", a.like);
  if (!a.like.empty()) data::load_tokenizer(a.like)->save(a.output);
  std::cout << fmt::format("wrote a fresh {} model (seed {}, {} parameters) to {}\n", shape, a.seed,
                           util::human_count(static_cast<double>(config.num_parameters())), a.output);
  return 0;
}

}  // namespace

void add_model_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ModelArgs>();
  auto* cmd = app.add_subcommand("model", "Inspect a model directory: info, one forward pass, a fresh model");
  cmd->require_subcommand(1);

  auto* i = cmd->add_subcommand("info", "Print a model's config, parameter count and dtype");
  i->add_option("--model", args->model, "HF-format model directory")->required();
  i->callback([&action, args] { action = [args] { return info(*args); }; });

  auto* f = cmd->add_subcommand("forward", "Run one fp32 forward pass and write its logits [1, L, V] to safetensors");
  f->add_option("--model", args->model, "HF-format model directory")->required();
  f->add_option("--ids", args->ids, "Token ids, space-separated: \"1 5 9\"")->required();
  f->add_option("--attention", args->attention, "causal or bidirectional (default: the model's own)")
      ->check(CLI::IsMember({"causal", "bidirectional"}));
  f->add_option("--output", args->output, "Safetensors file to write (tensor 'logits')")->required();
  f->callback([&action, args] { action = [args] { return forward(*args); }; });

  auto* n = cmd->add_subcommand("init", "Write a freshly initialised model of a preset shape");
  std::string preset_help;
  for (const auto& name : model::ModelConfig::preset_names()) preset_help += (preset_help.empty() ? "" : ", ") + name;
  auto* preset = n->add_option("--preset", args->preset, "Shape: " + preset_help)
                     ->check(CLI::IsMember(model::ModelConfig::preset_names()))
                     ->capture_default_str();
  n->add_option("--like", args->like, "Take the shape (config.json) and the tokenizer of this model directory")
      ->excludes(preset);
  n->add_option("--seed", args->seed, "Initialisation seed")->capture_default_str();
  n->add_option("--output", args->output, "Directory to write")->required();
  n->callback([&action, args] { action = [args] { return init(*args); }; });
}

}  // namespace tess::cli
