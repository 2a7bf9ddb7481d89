#pragma once
// `tess eval`: answers held-out prompts with a model (diffusion or, with
// `ar`, causal) and scores them. Metrics:
//   exact_match      answers against the records' reference answers, after
//                    answer extraction (full string, last number, first line);
//                    overall and per task
//   multiple_choice  likelihood ranking of each record's "choices": exact
//                    log-likelihood for AR models; for diffusion models (no
//                    tractable likelihood) the mean diffusion cross-entropy of
//                    the choice over `choice_samples` noise draws shared by all
//                    choices (common random numbers), lower = more likely
//   perplexity       of the generated answers under an AR model (its own
//                    tokenizer; the text is re-encoded)
//   diversity        dist-1/2/3 over all answers
//   reward           mean reward-model score of (prompt, answer), read at EOS
//   speed            generated span tokens per second (wall time of sampling)
// With `task` (eval/tasks: gsm8k, squad, triviaqa, ifeval, bbh, mmlu,
// alpaca_eval) the data file is that benchmark's public JSONL, the prompts are
// built as the reference builds them, and the benchmark's own scorer fills a
// "task" block of the metrics, in place of exact_match and multiple_choice.
// A report is one JSON object: the settings that produced it and the metrics.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/generate.h"
#include "eval/tasks/task.h"
#include "eval/text_metrics.h"

namespace tess::config {
class Config;
}

namespace tess::eval {

const std::vector<std::string>& metric_names();  // what EvalOptions::metrics may hold

struct EvalOptions {
  std::filesystem::path model;
  std::filesystem::path data;  // eval records: prompt or messages, answer, task (+ choices for multiple_choice)
  std::vector<std::string> metrics = {"exact_match", "diversity", "speed"};
  AnswerExtraction extraction = AnswerExtraction::FullString;
  GenerateOptions generate;                   // sampling, and reward guidance when guidance_scale > 0
  std::filesystem::path perplexity_model;     // AR model for `perplexity`
  std::filesystem::path reward_model;         // for `reward` (default: generate.reward_model)
  int64_t limit = 0;                          // only the first N records; 0 = all
  int64_t choice_samples = 8;                 // diffusion multiple_choice: noise draws per choice
  std::string task;                           // a benchmark of eval/tasks; "" = eval records
  tasks::TaskOptions task_options;
  bool progress = true;
};

struct EvalResult {
  nlohmann::json report;               // {"settings": {...}, "metrics": {...}}
  std::vector<Generation> generations; // the answers (empty when only multiple_choice ran)
};

EvalResult evaluate(const EvalOptions& options);

// Everything one `tess eval` does, from the eval.* keys of a configuration
// (a training config's eval section, or a file of its own; flags are applied
// as overrides first). eval.model defaults to run.dir/final of the config's
// run and eval.decoding auto to `ar` for run.stage ar, so
// `tess eval configs/quickstart/instruction.yaml` evaluates that run.
struct EvalPlan {
  EvalOptions options;
  std::string sweep;  // "name=v1,v2,..."; empty = one evaluation
  std::string output, samples, plot;
  static EvalPlan from_config(const config::Config& cfg);
};

// The sweep grid of `--sweep name=v1,v2,...` (steps | guidance_scale | top_p |
// length | stable_steps, margin (with adaptive stopping) | cache_refresh).
struct Sweep {
  std::string name;
  std::vector<double> values;
};
Sweep parse_sweep(const std::string& text);
void apply_sweep_value(EvalOptions& options, const std::string& name, double value);

// A human-readable table of reports (one row each, `label_key` = the swept
// setting or empty), then exact match per task when there is any.
std::string format_reports(const std::vector<nlohmann::json>& reports, const std::string& label_key);
// An SVG with one small panel per metric against the swept setting.
std::string sweep_svg(const std::vector<nlohmann::json>& reports, const std::string& setting, const std::string& title);

}  // namespace tess::eval
