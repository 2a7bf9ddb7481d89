#pragma once
// IFEval (Zhou et al. 2023): the prompt as the user message, each response
// checked against the record's verifiable instructions (ifeval_checks.h).
// Strict: the response as written. Loose (the official evaluation_lib's
// upper bound): an instruction counts as followed when any of eight variants
// passes: the response, without its first line, without its last line,
// without both, and each of those four with every '*' removed. Accuracy is
// reported per prompt (all its instructions followed) and per instruction,
// with the number of instructions whose checker is an approximation.
#include <string>
#include <vector>

#include "eval/tasks/task.h"

namespace tess::eval::tasks {

// The eight loose variants of a response, in the official order.
std::vector<std::string> ifeval_loose_variants(const std::string& response);

struct IfevalVerdict {
  std::vector<bool> strict, loose;  // per instruction of the record
};
// `record` is the public JSONL record {"key", "prompt", "instruction_id_list", "kwargs"}.
IfevalVerdict ifeval_judge(const nlohmann::json& record, const std::string& response);

class IfevalTask : public Task {
 public:
  std::string name() const override { return "ifeval"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

}  // namespace tess::eval::tasks
