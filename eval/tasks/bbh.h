#pragma once
// BIG-Bench Hard (Suzgun et al. 2022) with its 3-shot chain-of-thought
// prompts, as the reference evaluates it (instruction_evals.py, BBHEval): the
// task's cot prompt, "\n\nQ: " + input, then " A:"; the answer is what follows
// the first "the answer is" up to the next full stop, compared with the target
// ignoring case and ASCII punctuation (HF evaluate's exact_match).
#include <string>

#include "eval/tasks/task.h"

namespace tess::eval::tasks {

// The exemplar part of a cot-prompts/<task>.txt file: the lines after the
// canary header (through its "-----" line) when there is one; with `shots` >= 0
// only the task description and the first `shots` "Q: ... A: ..." exemplars.
std::string bbh_cot_prompt(const std::string& file_text, int64_t shots);
std::string bbh_prompt(const std::string& cot_prompt, const std::string& input);
// "... So the answer is (B)." -> "(B)"; the whole output, stripped, when no
// "the answer is ... ." is found.
std::string bbh_extract(const std::string& output);
// Lower case and ASCII punctuation removed on both sides, then equal.
bool bbh_match(const std::string& prediction, const std::string& target);

// Records {"input", "target"} with the task name in "task", else the data
// file's stem (lukaemon/bbh ships one file per task).
class BbhTask : public Task {
 public:
  std::string name() const override { return "bbh"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

}  // namespace tess::eval::tasks
