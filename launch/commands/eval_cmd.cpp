// `tess eval`: generate answers for held-out prompts and score them (exact
// match, multiple choice, perplexity, diversity, reward, speed), optionally
// over a sweep of one sampling setting, with a JSON report, a table and a plot.
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "eval/evaluate.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

struct EvalArgs {
  eval::EvalOptions opt;
  std::string metrics = "exact_match,diversity,speed";
  std::string extraction = "full";
  std::string sweep;
  std::string output;
  std::string samples;
  std::string plot;
};

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

int run_eval(EvalArgs a) {
  a.opt.metrics = eval::parse_metrics(a.metrics);
  a.opt.extraction = eval::parse_answer_extraction(a.extraction);
  if (a.sweep.empty()) {
    auto r = eval::evaluate(a.opt);
    std::cout << eval::format_reports({r.report}, "");
    if (!a.output.empty()) write_text(a.output, r.report.dump(2) + "\n", "report");
    if (!a.samples.empty()) write_samples(a.samples, r.generations, r.report["settings"]);
    if (!a.plot.empty()) throw Error("--plot draws a sweep: give --sweep too");
    return 0;
  }
  auto sweep = eval::parse_sweep(a.sweep);
  if (a.opt.generate.ar && sweep.name != "length" && sweep.name != "top_p")
    throw Error(fmt::format("--sweep {} applies to the diffusion sampler, not to --ar decoding", sweep.name));
  std::vector<nlohmann::json> reports;
  std::vector<eval::Generation> all;
  for (double v : sweep.values) {
    auto o = a.opt;
    eval::apply_sweep_value(o, sweep.name, v);
    auto r = eval::evaluate(o);
    if (!r.report["settings"].contains(sweep.name)) r.report["settings"][sweep.name] = v;
    reports.push_back(r.report);
    if (!a.samples.empty()) {
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
    write_text(plot, eval::sweep_svg(reports, sweep.name, fmt::format("{} vs {}", a.opt.model.string(), sweep.name)),
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
  auto& o = a->opt;
  cmd->add_option("--model", o.model, "Model directory (diffusion, or a causal LM with --ar)")->required();
  cmd->add_option("--data", o.data,
                  "JSONL eval records: chat \"messages\" or \"prompt\" with \"answer\" (+ \"task\"; \"choices\" for "
                  "multiple_choice)")
      ->required();
  cmd->add_option("--metrics", a->metrics, "Comma-separated: exact_match, multiple_choice, perplexity, diversity, "
                                           "reward, speed")
      ->capture_default_str();
  cmd->add_option("--extraction", a->extraction, "Answer extraction for exact_match: full, last_number, first_line")
      ->capture_default_str();
  cmd->add_flag("--ar", o.generate.ar, "The model is a causal LM (decoded with a KV cache)");
  cmd->add_option("--steps", o.generate.steps, "Denoising steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--length", o.generate.length, "Span length (AR: maximum new tokens)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--top-p", o.generate.top_p, "Nucleus mass; 0 = argmax")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--temperature", o.generate.temperature, "Sampling temperature")->capture_default_str();
  cmd->add_option("--seed", o.generate.seed, "Seed of the generate stream")->capture_default_str();
  cmd->add_option("--batch-size", o.generate.batch_size, "Prompts per sampler call")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--reward-model", o.generate.reward_model,
                  "Reward model directory: the reward metric and, with --guidance-scale, guidance");
  cmd->add_option("--guidance-scale", o.generate.guidance_scale, "Reward-guidance step size; 0 = off")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--perplexity-model", o.perplexity_model, "AR model directory for the perplexity metric");
  cmd->add_option("--limit", o.limit, "Evaluate only the first N records; 0 = all")->capture_default_str();
  cmd->add_option("--choice-samples", o.choice_samples, "Diffusion multiple choice: noise draws per choice")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sweep", a->sweep, "Run a grid over one setting, e.g. steps=8,16,32,64,100 (also guidance_scale, "
                                       "top_p, length)");
  cmd->add_option("--output", a->output, "Write the JSON report here (with --sweep also a plot, .svg beside it)");
  cmd->add_option("--samples", a->samples, "Write the generated answers as JSONL here");
  cmd->add_option("--plot", a->plot, "SVG plot of each metric against the swept setting");
  cmd->callback([&action, a] { action = [a] { return run_eval(*a); }; });
}

}  // namespace tess::cli
