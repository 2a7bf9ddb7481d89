// `tess generate`: answers to chat prompts from a diffusion model (or, with
// --ar, a causal LM), printed or written as JSONL.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/format.h"
#include "core/util/progress.h"
#include "eval/generate.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  std::string input;
  std::string infill;
  std::string output;
  eval::GenerateOptions opt;
  std::string guidance_read = "last";
  bool show_steps = false;
};

// --show-steps: the printer, and the observer that feeds it (none without the flag).
eval::StepObserver step_observer(const GenerateArgs& a, std::optional<eval::StepPrinter>& printer) {
  if (!a.show_steps) return {};
  printer.emplace(stdout, isatty(fileno(stdout)) != 0);
  return [&printer](const eval::StepView& v) { (*printer)(v); };
}

// --output: the file, opened before the first forward.
std::optional<std::ofstream> open_output(const GenerateArgs& a) {
  std::optional<std::ofstream> out;
  if (a.output.empty()) return out;
  out.emplace(a.output);
  if (!*out) throw Error(fmt::format("cannot write --output {}", a.output));
  return out;
}

// One answer: its JSONL line to --output, else its text to stdout.
void emit(std::optional<std::ofstream>& out, const eval::Generation& g) {
  if (out) *out << eval::generation_json(g).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  else std::cout << g.output << std::endl;
}

// --infill: one text with <span:N> markers, filled by the diffusion sampler.
int fill(GenerateArgs a) {
  a.opt.length = 1;  // unused: the markers give the spans (the generator checks it against the positions)
  eval::Generator gen(a.model, a.opt);
  auto out = open_output(a);
  std::optional<eval::StepPrinter> printer;
  auto g = gen.infill(a.infill, step_observer(a, printer));
  if (printer) printer->end_batch();
  emit(out, g);
  if (out) {
    out->close();
    if (!*out) throw Error(fmt::format("writing {} failed", a.output));
  }
  return 0;
}

int generate(GenerateArgs a) {
  a.opt.guidance_read = diffusion::reward_read_choices().parse(a.guidance_read);
  if (!a.infill.empty()) return fill(a);
  std::vector<eval::GenerationPrompt> prompts;
  if (!a.input.empty()) {
    prompts = eval::read_prompts(a.input);
  } else {
    if (a.prompt.find_first_not_of(" \t\r\n") == std::string::npos) throw Error("--prompt is empty");
    eval::GenerationPrompt p;
    p.prompt.user = a.prompt;
    prompts.push_back(std::move(p));
  }
  eval::Generator gen(a.model, a.opt);
  auto out = open_output(a);
  std::optional<eval::StepPrinter> printer;
  auto on_step = step_observer(a, printer);

  std::optional<util::Progress> progress;
  if (out) {
    util::Progress::Options po;
    po.unit = "prompts";
    progress.emplace("generate ", static_cast<int64_t>(prompts.size()), po);
  }
  int64_t tokens = 0;
  double seconds = 0;
  gen.generate(prompts, on_step, [&](const std::vector<eval::Generation>& batch) {
    if (printer) printer->end_batch();
    if (!batch.empty()) seconds += batch.front().seconds * (a.opt.ar ? static_cast<double>(batch.size()) : 1.0);
    for (const auto& g : batch) {
      tokens += static_cast<int64_t>(g.tokens.size());
      emit(out, g);
    }
    if (out) {
      out->flush();
      if (!*out) throw Error(fmt::format("writing {} failed", a.output));
      progress->set_field("tok/s", util::human_count(seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0));
      progress->advance(static_cast<int64_t>(batch.size()));
    }
  });
  if (progress) progress->finish();
  if (out) {
    out->close();
    fmt::print(stderr, "wrote {} answers ({} tokens) to {}\n", prompts.size(), tokens, a.output);
  }
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Sample answers from a diffusion (or AR) model");
  cmd->add_option("--model", args->model, "Model directory (weights, config.json, tokenizer)")->required();
  auto* prompt = cmd->add_option("--prompt", args->prompt, "One user prompt (the chat template is applied)");
  auto* input = cmd->add_option("--input", args->input,
                                "JSONL of prompts: {\"prompt\": ...} lines or chat \"messages\" records");
  prompt->excludes(input);
  input->excludes(prompt);
  auto* infill = cmd->add_option("--infill", args->infill,
                                 "Fill the <span:N> markers of this text (N tokens each), e.g. \"The capital of France "
                                 "is <span:4>.\": no chat template, diffusion models only");
  infill->excludes(prompt)->excludes(input);
  cmd->add_option("--steps", args->opt.steps, "Denoising steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--length", args->opt.length, "Tokens to generate (span length; AR: maximum)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--top-p", args->opt.top_p, "Nucleus sampling mass; 0 = argmax")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--temperature", args->opt.temperature, "Sampling temperature")->capture_default_str();
  cmd->add_option("--seed", args->opt.seed, "Seed of the \"generate\" random stream")->capture_default_str();
  cmd->add_option("--batch-size", args->opt.batch_size, "Prompts per sampler call (with --ar: decoded together)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--adaptive", args->opt.stop.enabled,
                "Stop each prompt once its span has settled (--stable-steps, --margin); --steps is the budget");
  cmd->add_flag("--freeze", args->opt.stop.freeze,
                "Freeze single positions whose argmax held --stable-steps steps with --margin (they keep that token)");
  cmd->add_option("--stable-steps", args->opt.stop.stable_steps,
                  "Adaptive stopping: consecutive steps the span's argmax tokens must stay unchanged")
      ->capture_default_str();
  cmd->add_option("--margin", args->opt.stop.margin,
                  "Adaptive stopping: smallest top-1 minus top-2 probability over the span's positions")
      ->capture_default_str();
  cmd->add_flag("--seed-per-prompt", args->opt.seed_per_prompt,
                "Each prompt draws from a fresh stream seeded by --seed, as if alone (tess serve's rule per request)");
  cmd->add_flag("--raw", args->opt.raw,
                "Continue plain text: the prompt is <s> + the text, without the chat template (base and stage-1 models)");
  cmd->add_option("--cache-refresh", args->opt.cache_refresh,
                  "Approximate prompt cache: a full pass every N steps, in between only the span; 0 = off, 1 = exact")
      ->capture_default_str();
  cmd->add_option("--device", args->opt.device, "Where the models run: auto (a GPU when LibTorch sees one), cpu, cuda or cuda:N")
      ->capture_default_str();
  cmd->add_option("--output", args->output, "Write JSONL {prompt, output, steps, seconds[, task, answer]} here");
  cmd->add_flag("--show-steps", args->show_steps, "Show the decoded span at every denoising step");
  cmd->add_flag("--ar", args->opt.ar, "The model is a causal LM: decode token by token with a KV cache");
  cmd->add_option("--reward-model", args->opt.reward_model,
                  "Reward model directory (stage reward, same tokenizer) for reward guidance");
  cmd->add_option("--guidance-scale", args->opt.guidance_scale,
                  "Reward-guidance ascent step on the logits at every denoising step (reference 0.5); 0 = off")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--guidance-read", args->guidance_read,
                  "Where guidance reads the reward: last (the reference) or first_eos (where the reward model scores)")
      ->check(CLI::IsMember(diffusion::reward_read_choices().names()))
      ->capture_default_str();
  cmd->callback([&action, args, cmd] {
    if (cmd->count("--infill") > 0 && cmd->count("--length") > 0)
      throw CLI::ValidationError("--length", "does not apply to --infill: its <span:N> markers give the span lengths");
    if (cmd->count("--prompt") == 0 && cmd->count("--input") == 0 && cmd->count("--infill") == 0)
      throw CLI::ValidationError("--prompt/--input/--infill",
                                 "give --prompt TEXT, --input prompts.jsonl or --infill \"text <span:N> text\"");
    action = [args] { return generate(*args); };
  });
}

}  // namespace tess::cli
