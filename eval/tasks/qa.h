#pragma once
// Extractive / open QA as the reference evaluates it (instruction_evals.py,
// SquadEval and TriviaQAEval): its few-shot exemplars in front of the
// question, the whole output as the prediction, the official EM and F1
// (normalize.h) maximised over the gold answers.
#include <string>
#include <vector>

#include "eval/tasks/task.h"

namespace tess::eval::tasks {

constexpr int64_t kSquadExemplars = 3;
constexpr int64_t kTriviaqaExemplars = 2;

// The first `shots` exemplars joined by "\n", then "\n" + context + "\n\n" + question.
std::string squad_prompt(const std::string& context, const std::string& question, int64_t shots);
// The first `shots` exemplars joined by "\n", then "\n\n" + question.
std::string triviaqa_prompt(const std::string& question, int64_t shots);

// The gold answers of a record: SQuAD's "answers": {"text": [...]} (HF
// datasets) or [{"text": ...}, ...] (the official file's layout); TriviaQA's
// "answer": {"normalized_aliases" | "aliases" + "value"} (HF datasets; the
// original's capitalised NormalizedAliases / Aliases / Value too).
std::vector<std::string> squad_golds(const nlohmann::json& record);
std::vector<std::string> triviaqa_golds(const nlohmann::json& record);

class SquadTask : public Task {
 public:
  std::string name() const override { return "squad"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

// Also reports `contains` (the reference's "diffullama_acc"): a normalised
// gold answer occurs inside the normalised output.
class TriviaqaTask : public Task {
 public:
  std::string name() const override { return "triviaqa"; }
  std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const override;
  nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                       const Judge& judge) const override;
};

}  // namespace tess::eval::tasks
