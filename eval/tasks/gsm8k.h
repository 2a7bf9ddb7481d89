#pragma once
// GSM8K (Cobbe et al. 2021), as the reference evaluates it
// (sdlm/data/instruction_evals/instruction_evals.py, GSM8kEval): the 8
// chain-of-thought exemplars of Wei et al. 2022 (Table 20) in front of the
// question, the last number of the output against the number after "####".
#include <string>

#include "eval/tasks/task.h"

namespace tess::eval::tasks {

// "Answer the following questions.\n\n" + the first `shots` exemplars as
// "Question: ...\nAnswer: ..." separated by blank lines + "\n\nQuestion: " + question.
std::string gsm8k_prompt(const std::string& question, int64_t shots);
constexpr int64_t kGsm8kExemplars = 8;

// The gold number of a GSM8K answer ("... #### 1,234" -> "1234"); throws
// data::RecordError when there is no "####".
std::string gsm8k_gold(const std::string& answer);
// The last number of `text` (commas inside numbers dropped, a sentence's
// full stop not part of it, the sign kept), canonical: "+5" -> "5",
// "1,000.00" -> "1000", "007" -> "7". "" when there is none.
std::string gsm8k_extract(const std::string& text);
bool gsm8k_correct(const std::string& output, const std::string& gold);

class Gsm8kTask : public Task {
 public:
  std::string name() const override { return "gsm8k"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

}  // namespace tess::eval::tasks
