#pragma once
// AlpacaEval-style pairwise win rate: each model output is compared with the
// reference output for the same instruction by a judge, here the project's
// reward model (a proxy for AlpacaEval's GPT-4 judge, which cannot be called
// offline): a higher reward wins, equal rewards (within a relative 1e-5, the
// float noise of scoring the same text) tie and count half. Plus MAUVE-free
// text statistics of the outputs: mean length, word entropy, dist-1/2/3.
#include <string>
#include <vector>

#include "eval/tasks/task.h"

namespace tess::eval::tasks {

struct WinRate {
  int64_t wins = 0, ties = 0, losses = 0;
  double rate() const;  // (wins + ties / 2) / n
};
WinRate win_rate(const std::vector<double>& model, const std::vector<double>& reference);

struct TextStats {
  double mean_words = 0;  // whitespace words per output
  double entropy = 0;     // bits: each output's word unigram entropy, averaged over outputs
  double dist[3] = {0, 0, 0};  // dist-1/2/3 over all outputs
};
// Entropy (bits) of the word unigram distribution of one text (0 when empty).
double word_entropy(const std::string& text);
TextStats text_stats(const std::vector<std::string>& outputs);

// Records {"instruction"} (AlpacaEval's eval set); the reference output is
// "output" of the reference file (TaskOptions::reference_outputs, matched by
// instruction) or, without one, the record's own "output".
class AlpacaEvalTask : public Task {
 public:
  std::string name() const override { return "alpaca_eval"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  bool needs_judge() const override { return true; }
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

}  // namespace tess::eval::tasks
