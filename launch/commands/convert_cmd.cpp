// `tess convert gguf IN.gguf OUT_DIR`: turn a llama.cpp GGUF model into an
// HF-layout model directory that every other tess command (and transformers)
// opens; see core/model/gguf_convert.h.
#include <chrono>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/model/gguf.h"  // GGUFTensorInfo
#include "core/model/gguf_convert.h"
#include "core/util/format.h"
#include <spdlog/spdlog.h>
#include "core/util/progress.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

struct ConvertArgs {
  std::string input;
  std::string output;
  std::string dtype = "float32";
};

int convert_gguf(const ConvertArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  std::optional<util::Progress> progress;  // created once the file is open and the tensor count known
  model::GGUFConvertOptions options;
  options.dtype = a.dtype;
  options.on_tensor = [&](const model::GGUFTensorInfo& t, int64_t done, int64_t total) {
    if (!progress) {
      util::Progress::Options progress_options;
      progress_options.unit = "tensors";
      progress.emplace("convert", total, progress_options);
    }
    progress->set_field("tensor", t.name);
    progress->update(done);
  };
  auto summary = model::convert_gguf_to_hf(a.input, a.output, options);
  if (progress) progress->finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::string types;
  for (const auto& [name, n] : summary.tensors_by_type) types += fmt::format("{}{} {}", types.empty() ? "" : ", ", name, n);
  const auto& c = summary.config;
  std::cout << fmt::format("converted {} tensors ({}), {} parameters ({}) to {} in {:.1f} s -> {}\n", summary.tensors,
                           types, summary.parameters, util::human_count(double(summary.parameters)), a.dtype, seconds,
                           a.output);
  std::cout << fmt::format("model: llama, {} layers, hidden {}, heads {} (kv {}), vocab {}, tied embeddings: {}\n",
                           c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads,
                           c.vocab_size, c.tie_word_embeddings ? "yes" : "no");
  if (summary.tokenizer_written)
    std::cout << "tokenizer: tokenizer.json (byte-level BPE), tokenizer_config.json, special_tokens_map.json\n";
  else
    spdlog::warn("no tokenizer written: tokenizer.ggml.model is '{}' (only 'gpt2', byte-level BPE, is converted)",
                 summary.tokenizer_model.empty() ? "absent" : summary.tokenizer_model);
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand("convert", "Convert models from other formats into HF-layout model directories");
  cmd->require_subcommand(1);
  auto* g = cmd->add_subcommand("gguf", "A llama.cpp GGUF file (Llama architecture) -> config.json, safetensors, "
                                        "tokenizer.json");
  g->add_option("input", args->input, "GGUF file")->required()->check(CLI::ExistingFile);
  g->add_option("output", args->output, "Model directory to write")->required();
  g->add_option("--dtype", args->dtype, "dtype of the written weights")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  g->callback([&action, args] { action = [args] { return convert_gguf(*args); }; });
}

}  // namespace tess::cli
