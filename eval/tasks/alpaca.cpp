#include "eval/tasks/alpaca.h"

#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "core/util/error.h"
#include "data/jsonl.h"
#include "eval/tasks/unicode.h"
#include "eval/text_metrics.h"

namespace tess::eval::tasks {
namespace fs = std::filesystem;

double WinRate::rate() const { return fraction(2 * wins + ties, 2 * (wins + ties + losses)); }

WinRate win_rate(const std::vector<double>& model, const std::vector<double>& reference) {
  WinRate w;
  for (size_t i = 0; i < model.size(); ++i) {
    double a = model[i], b = reference[i];
    double tolerance = 1e-5 * std::max({1.0, std::fabs(a), std::fabs(b)});
    if (std::fabs(a - b) <= tolerance) ++w.ties;
    else if (a > b) ++w.wins;
    else ++w.losses;
  }
  return w;
}

double word_entropy(const std::string& text) {
  std::map<std::string, int64_t> counts;
  auto words = split_whitespace(text);
  for (const auto& w : words) ++counts[w];
  double h = 0, n = static_cast<double>(words.size());
  for (const auto& [w, c] : counts) {
    double p = static_cast<double>(c) / n;
    h -= p * std::log2(p);
  }
  return h;
}

TextStats text_stats(const std::vector<std::string>& outputs) {
  TextStats s;
  if (outputs.empty()) return s;
  for (const auto& o : outputs) {
    s.mean_words += static_cast<double>(split_whitespace(o).size());
    s.entropy += word_entropy(o);
  }
  s.mean_words /= static_cast<double>(outputs.size());
  s.entropy /= static_cast<double>(outputs.size());
  for (int n = 1; n <= 3; ++n) s.dist[n - 1] = distinct_n(outputs, n);
  return s;
}

std::vector<TaskItem> AlpacaEvalTask::load(const fs::path& file, const TaskOptions& options) const {
  const std::string format = "alpaca_eval records are {\"instruction\", \"output\"} (AlpacaEval's format)";
  std::map<std::string, std::string> references;  // instruction -> output
  if (!options.reference_outputs.empty()) {
    if (!fs::exists(options.reference_outputs))
      throw Error(fmt::format("reference outputs {} (eval.reference_outputs) do not exist",
                              options.reference_outputs.string()));
    read_task_jsonl(options.reference_outputs, format, [&](const nlohmann::json& r, int64_t) {
      references[required_string(r, "instruction", format)] = required_string(r, "output", format);
    });
  }
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    TaskItem it;
    it.prompt = required_string(r, "instruction", format);
    if (options.reference_outputs.empty()) {
      if (!r.contains("output"))
        throw data::RecordError("missing field 'output' (the reference output; or give --reference-outputs FILE)");
      it.reference = required_string(r, "output", format);
    } else {
      auto found = references.find(it.prompt);
      if (found == references.end())
        throw data::RecordError(fmt::format("no reference output for this instruction in {}",
                                            options.reference_outputs.string()));
      it.reference = found->second;
    }
    it.gold = it.reference;
    return it;
  });
}

nlohmann::json AlpacaEvalTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                                     const Judge& judge) const {
  if (!judge) throw Error("alpaca_eval needs a judge: give --reward-model DIR");
  std::vector<std::string> prompts, references;
  for (const auto& it : items) {
    prompts.push_back(it.prompt);
    references.push_back(it.gold.get<std::string>());
  }
  auto model_scores = judge(prompts, outputs);
  auto reference_scores = judge(prompts, references);
  auto w = win_rate(model_scores, reference_scores);
  auto mean = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  };
  auto stats = text_stats(outputs);
  return {{"win_rate", w.rate()},
          {"wins", w.wins},
          {"ties", w.ties},
          {"losses", w.losses},
          {"n", items.size()},
          {"judge", "reward model (a proxy for AlpacaEval's GPT-4 judge)"},
          {"mean_reward", mean(model_scores)},
          {"mean_reward_reference", mean(reference_scores)},
          {"mean_words", stats.mean_words},
          {"mean_words_reference", text_stats(references).mean_words},
          {"entropy", stats.entropy},
          {"dist_1", stats.dist[0]},
          {"dist_2", stats.dist[1]},
          {"dist_3", stats.dist[2]}};
}

}  // namespace tess::eval::tasks
