// `tess eval`: generate answers for held-out prompts and score them (exact
// match, multiple choice, perplexity, diversity, reward, speed, or a
// benchmark's own scoring with --task), optionally
// over a sweep of one sampling setting, with a JSON report, a table and a plot.
#include <fstream>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/file.h"
#include "eval/evaluate.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

// `tess eval [CONFIG] [--set eval.key=value ...] [flags]`: the eval.* keys of
// CONFIG (schema defaults without one), then --set, then the flags, each of
// which is one key (so `tess config docs` documents them all).
struct Flag {
  const char* name;
  const char* key;
  const char* help;
  bool list = false;  // comma-separated on the command line, a YAML list in the config
};

const std::vector<Flag>& flags() {
  static const std::vector<Flag> f = {
      {"--model", "eval.model", "Model directory (diffusion, or a causal LM with --ar); default: run.dir/final"},
      {"--data", "eval.data",
       "JSONL eval records: chat \"messages\" or \"prompt\" with \"answer\" (+ \"task\"; \"choices\" for "
       "multiple_choice)"},
      {"--metrics", "eval.metrics",
       "Comma-separated: exact_match, multiple_choice, perplexity, diversity, reward, speed", true},
      {"--extraction", "eval.extraction", "Answer extraction for exact_match: full, last_number, first_line"},
      {"--steps", "eval.steps", "Denoising steps"},
      {"--length", "eval.span_length", "Span length (AR: maximum new tokens)"},
      {"--top-p", "eval.top_p", "Nucleus mass; 0 = argmax"},
      {"--temperature", "eval.temperature", "Sampling temperature"},
      {"--seed", "eval.seed", "Seed of the generate stream"},
      {"--batch-size", "eval.batch_size", "Prompts per sampler call (with --ar: decoded together)"},
      {"--reward-model", "eval.reward_model",
       "Reward model directory: the reward metric and, with --guidance-scale, guidance"},
      {"--guidance-scale", "eval.guidance_scale", "Reward-guidance step size; 0 = off"},
      {"--guidance-read", "eval.guidance_read", "Where guidance reads the reward: last (reference) or first_eos"},
      {"--device", "eval.device", "Where the sampler runs: auto, cpu, cuda or cuda:N"},
      {"--stable-steps", "sample.stable_steps", "Adaptive stopping: steps a row's argmax must hold"},
      {"--margin", "sample.margin", "Adaptive stopping: smallest top-1 minus top-2 probability over the span"},
      {"--cache-refresh", "sample.cache_refresh", "Prompt cache: a full pass every N steps, span-only in between; 0 = off"},
      {"--perplexity-model", "eval.perplexity_model", "AR model directory for the perplexity metric"},
      {"--limit", "eval.limit", "Evaluate only the first N records; 0 = all"},
      {"--choice-samples", "eval.choice_samples", "Diffusion multiple choice: noise draws per choice"},
      {"--task", "eval.task",
       "A benchmark read from --data in its public JSONL format: gsm8k, squad, triviaqa, ifeval, bbh, mmlu, "
       "alpaca_eval"},
      {"--shots", "eval.shots", "Few-shot exemplars of --task; -1 = the reference's"},
      {"--task-prompts", "eval.task_prompts", "bbh: directory of the cot-prompts/<task>.txt files"},
      {"--mmlu-mode", "eval.mmlu_mode", "mmlu: generation or likelihood"},
      {"--reference-outputs", "eval.reference_outputs",
       "alpaca_eval: JSONL {\"instruction\", \"output\"} to judge against (with --reward-model)"},
      {"--sweep", "eval.sweep",
       "Run a grid over one setting, e.g. steps=8,16,32,64,100 (also guidance_scale, top_p, length, cache_refresh; "
       "with --adaptive stable_steps, margin)"},
      {"--output", "eval.output", "Write the JSON report here (with --sweep also a plot, .svg beside it)"},
      {"--samples", "eval.samples", "Write the generated answers as JSONL here"},
      {"--plot", "eval.plot", "SVG plot of each metric against the swept setting"},
  };
  return f;
}

struct EvalArgs {
  std::string config;
  std::vector<std::string> sets;
  std::map<std::string, std::string> flag_values;  // key -> value, for the flags given
  bool ar = false;
  bool adaptive = false;
  bool freeze = false;
  bool seed_per_prompt = false;
};

config::Config eval_config(const EvalArgs& a) {
  config::Config cfg;
  if (!a.config.empty()) cfg.merge_file(a.config);
  for (const auto& s : a.sets) {
    if (s.rfind("eval.", 0) != 0 && s.rfind("sample.", 0) != 0)
      throw Error(fmt::format("--set {}: tess eval reads only eval.* keys (and run.dir/run.stage from the config file)",
                              s));
    cfg.apply_override(s);
  }
  for (const auto& f : flags()) {
    auto it = a.flag_values.find(f.key);
    if (it == a.flag_values.end()) continue;
    std::string value = it->second;
    if (f.list) value = "[" + value + "]";
    else if (config::schema().find(f.key)->type == config::Type::String) value = nlohmann::json(value).dump();
    cfg.apply_override(std::string(f.key) + "=" + value, std::string(f.name) + " " + it->second);
  }
  if (a.ar) cfg.apply_override("eval.decoding=ar", "--ar");
  if (a.adaptive) cfg.apply_override("sample.adaptive=true", "--adaptive");
  if (a.freeze) cfg.apply_override("sample.freeze=true", "--freeze");
  if (a.seed_per_prompt) cfg.apply_override("sample.seed_per_prompt=true", "--seed-per-prompt");
  return cfg;
}

void write_text(const std::string& path, const std::string& text, const char* what) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) throw Error(fmt::format("cannot write {} {} (disk full or not writable?)", what, path));
}

void write_samples(const std::string& path, const std::vector<eval::Generation>& gens, const nlohmann::json& settings) {
  std::string text;
  for (const auto& g : gens) {
    auto j = eval::generation_json(g);
    if (settings.contains("steps")) j["sampling_steps"] = settings["steps"];
    if (settings.contains("guidance_scale")) j["guidance_scale"] = settings["guidance_scale"];
    text += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  write_text(path, text, "samples");
}

int run_eval(const eval::EvalPlan& a) {
  // Everything written at the end is checked before the first forward.
  if (a.sweep.empty() && !a.plot.empty()) throw Error("--plot draws a sweep: give --sweep too");
  for (const auto& [path, what] : {std::pair{a.output, "report (--output)"}, std::pair{a.samples, "samples (--samples)"},
                                   std::pair{a.plot, "plot (--plot)"}})
    if (!path.empty()) util::check_writable(path, what);
  if (a.sweep.empty()) {
    auto r = eval::evaluate(a.options);
    std::cout << eval::format_reports({r.report}, "");
    if (!a.output.empty()) write_text(a.output, r.report.dump(2) + "\n", "report");
    if (!a.samples.empty()) write_samples(a.samples, r.generations, r.report["settings"]);
    return 0;
  }
  auto sweep = eval::parse_sweep(a.sweep);
  if (a.options.generate.ar && sweep.name != "length" && sweep.name != "top_p")
    throw Error(fmt::format("--sweep {} applies to the diffusion sampler, not to --ar decoding", sweep.name));
  std::vector<nlohmann::json> reports;
  std::vector<eval::Generation> all;
  for (double v : sweep.values) {
    auto o = a.options;
    eval::apply_sweep_value(o, sweep.name, v);
    auto r = eval::evaluate(o);
    if (!r.report["settings"].contains(sweep.name)) r.report["settings"][sweep.name] = v;
    reports.push_back(r.report);
    if (!a.samples.empty()) {
      if (!o.generate.stop.enabled)
        for (auto& g : r.generations) g.steps = o.generate.steps;
      all.insert(all.end(), r.generations.begin(), r.generations.end());
    }
  }
  std::cout << eval::format_reports(reports, sweep.name);
  nlohmann::json doc = {{"sweep", sweep.name}, {"values", sweep.values}, {"reports", reports}};
  if (!a.output.empty()) write_text(a.output, doc.dump(2) + "\n", "report");
  if (!a.samples.empty()) write_samples(a.samples, all, nlohmann::json::object());
  std::string plot = a.plot;
  if (plot.empty() && !a.output.empty()) {
    plot = a.output;
    auto dot = plot.rfind('.');
    plot = (dot == std::string::npos ? plot : plot.substr(0, dot)) + ".svg";
  }
  if (!plot.empty()) {
    write_text(plot, eval::sweep_svg(reports, sweep.name, fmt::format("{} vs {}", a.options.model.string(), sweep.name)),
               "plot");
    std::cout << fmt::format("plot: {}\n", plot);
  }
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, Action& action) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval", "Evaluate a model: exact match, multiple choice, perplexity, diversity, reward, speed");
  cmd->add_option("config", a->config,
                  "YAML config whose eval.* keys set everything below (a run's config: its final model is evaluated)");
  cmd->add_option("--set", a->sets, "Override an eval key: --set eval.steps=32 (repeatable)")->allow_extra_args(false);
  for (const auto& f : flags()) cmd->add_option(f.name, a->flag_values[f.key], f.help);
  cmd->add_flag("--ar", a->ar, "The model is a causal LM (decoded with a KV cache): eval.decoding ar");
  cmd->add_flag("--adaptive", a->adaptive, "Stop each row once its span has settled: sample.adaptive true");
  cmd->add_flag("--freeze", a->freeze, "Freeze single settled positions: sample.freeze true");
  cmd->add_flag("--seed-per-prompt", a->seed_per_prompt,
                "Each prompt draws from a fresh stream seeded by --seed (as tess serve does per request): "
                "sample.seed_per_prompt true");
  cmd->callback([&action, a, cmd] {
    // Only the flags given count (the map was pre-filled with empty entries).
    for (const auto& f : flags())
      if (cmd->count(f.name) == 0) a->flag_values.erase(f.key);
    action = [a] { return run_eval(eval::EvalPlan::from_config(eval_config(*a))); };
  });
}

}  // namespace tess::cli
