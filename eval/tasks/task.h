#pragma once
// A benchmark of `tess eval --task NAME`: reads the benchmark's public JSONL
// format, builds the prompts the reference builds, and scores the model's
// outputs with the benchmark's own rules. Torch-free on purpose: a scorer is
// text in, numbers out, and is tested as such. The generation (or, for
// likelihood tasks, the choice ranking) is done by eval::evaluate().
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tess::eval::tasks {

struct TaskOptions {
  int64_t shots = -1;                       // few-shot exemplars; -1 = the task's default
  std::filesystem::path prompts;            // bbh: directory of cot-prompts/<task>.txt
  std::filesystem::path reference_outputs;  // alpaca_eval: {"instruction", "output"} JSONL
  bool likelihood = false;                  // mmlu: rank the options by likelihood instead of generating
};

// One benchmark question.
struct TaskItem {
  std::string prompt;     // the user message (few-shot exemplars included); the chat template is added later
  std::string group;      // per-group scores: BBH task, MMLU subject ("" = none)
  std::string reference;  // a readable gold answer, copied to the samples file
  int64_t line = 0;       // line of the data file
  nlohmann::json gold;    // what the scorer needs (answers, instructions, ...)
  std::vector<std::string> choices;  // likelihood tasks: the candidate responses
  int64_t answer_index = -1;         // likelihood tasks: the right one
};

// Scores responses to prompts (alpaca_eval's judge: the reward model).
using Judge = std::function<std::vector<double>(const std::vector<std::string>& prompts,
                                                const std::vector<std::string>& responses)>;

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual std::vector<TaskItem> load(const std::filesystem::path& data, const TaskOptions& options) const = 0;
  // True: evaluate() ranks each item's `choices` and the output is the chosen one.
  virtual bool ranks_choices(const TaskOptions&) const { return false; }
  virtual bool needs_judge() const { return false; }
  // The "task" block of the report from one output per item (same order).
  virtual nlohmann::json score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                               const Judge& judge) const = 0;
};

const std::vector<std::string>& task_names();
// A tess::Error lists the known names.
const Task& find_task(const std::string& name);

// ---- helpers for loaders ----------------------------------------------------------------
// Every non-blank line of `file` as a JSON object (file:line errors), with
// `what` naming the expected format in error messages.
void read_task_jsonl(const std::filesystem::path& file, const std::string& what,
                     const std::function<void(const nlohmann::json&, int64_t line)>& visit);
// One TaskItem per record of `file`, made by `make` (its line is set here).
std::vector<TaskItem> read_task_items(const std::filesystem::path& file, const std::string& what,
                                      const std::function<TaskItem(const nlohmann::json&)>& make);
// A required string field, or data::RecordError naming it and the format.
std::string required_string(const nlohmann::json& record, const char* field, const std::string& format);
// "the shots option if set, else `fallback`", checked against `available`.
int64_t shots_or(const TaskOptions& options, int64_t fallback, int64_t available, const std::string& task);
// correct / total as a fraction (0 when total is 0).
double fraction(int64_t correct, int64_t total);

// Accuracy overall, per TaskItem::group and its unweighted mean over groups,
// from one verdict per item.
struct GroupedAccuracy {
  double overall = 0, group_mean = 0;
  nlohmann::json groups;  // group -> {metric: accuracy, "n": items}
};
GroupedAccuracy grouped_accuracy(const std::vector<TaskItem>& items, const std::vector<bool>& ok,
                                 const std::string& metric);

}  // namespace tess::eval::tasks
