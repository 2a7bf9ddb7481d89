#pragma once
// MMLU (Hendrycks et al. 2021). The prompt is the original harness's, as the
// reference builds it (instruction_evals.py, MMLUEval, zero-shot): "The
// following are multiple choice questions (with answers) about <subject>.",
// the question, lettered options and "Answer:". Two modes:
//   generation  the model writes the answer; its first non-space character is
//               the chosen letter (the reference's rule)
//   likelihood  each letter is scored as the response (eval's multiple-choice
//               machinery: AR log-likelihood, or for diffusion models the
//               denoising-loss estimate) and the most likely one is chosen
// Accuracy overall and per subject.
#include <string>
#include <vector>

#include "eval/tasks/task.h"

namespace tess::eval::tasks {

std::string mmlu_prompt(const std::string& subject, const std::string& question, const std::vector<std::string>& choices);
// "B" from "B. Paris" or " B"; "" when the first non-space character is not
// one of the `n_choices` letters.
std::string mmlu_extract(const std::string& output, size_t n_choices);

// Records {"question", "choices": [...], "answer": index or letter, "subject"}
// (HF cais/mmlu); without "subject" the data file's stem is the subject.
class MmluTask : public Task {
 public:
  std::string name() const override { return "mmlu"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  bool ranks_choices(const TaskOptions& options) const override { return options.likelihood; }
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

}  // namespace tess::eval::tasks
