#include "eval/tasks/task.h"

#include <map>
#include <memory>

#include <fmt/format.h>

#include "core/util/error.h"
#include "data/jsonl.h"
#include "eval/tasks/alpaca.h"
#include "eval/tasks/bbh.h"
#include "eval/tasks/gsm8k.h"
#include "eval/tasks/ifeval.h"
#include "eval/tasks/mmlu.h"
#include "eval/tasks/qa.h"

namespace tess::eval::tasks {
namespace fs = std::filesystem;
namespace {

const std::vector<std::unique_ptr<Task>>& registry() {
  static const auto tasks = [] {
    std::vector<std::unique_ptr<Task>> t;
    t.push_back(std::make_unique<Gsm8kTask>());
    t.push_back(std::make_unique<SquadTask>());
    t.push_back(std::make_unique<TriviaqaTask>());
    t.push_back(std::make_unique<IfevalTask>());
    t.push_back(std::make_unique<BbhTask>());
    t.push_back(std::make_unique<MmluTask>());
    t.push_back(std::make_unique<AlpacaEvalTask>());
    return t;
  }();
  return tasks;
}

}  // namespace

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& t : registry()) n.push_back(t->name());
    return n;
  }();
  return names;
}

const Task& find_task(const std::string& name) {
  for (const auto& t : registry())
    if (t->name() == name) return *t;
  throw Error(fmt::format("unknown task '{}' (expected one of: {})", name, fmt::join(task_names(), ", ")));
}

void read_task_jsonl(const fs::path& file, const std::string& what,
                     const std::function<void(const nlohmann::json&, int64_t line)>& visit) {
  if (!fs::exists(file)) throw Error(fmt::format("eval data {} does not exist ({})", file.string(), what));
  data::read_jsonl(file, [&](const nlohmann::json& r, int64_t line) { visit(r, line); });
}

std::vector<TaskItem> read_task_items(const fs::path& file, const std::string& what,
                                      const std::function<TaskItem(const nlohmann::json&)>& make) {
  std::vector<TaskItem> items;
  read_task_jsonl(file, what, [&](const nlohmann::json& r, int64_t line) {
    items.push_back(make(r));
    items.back().line = line;
  });
  return items;
}

std::string required_string(const nlohmann::json& record, const char* field, const std::string& format) {
  if (!record.contains(field)) throw data::RecordError(fmt::format("missing field '{}'; {}", field, format));
  if (!record[field].is_string())
    throw data::RecordError(fmt::format("field '{}' must be a string, got {}; {}", field, record[field].type_name(), format));
  return record[field].get<std::string>();
}

int64_t shots_or(const TaskOptions& options, int64_t fallback, int64_t available, const std::string& task) {
  int64_t shots = options.shots < 0 ? fallback : options.shots;
  if (shots > available)
    throw Error(fmt::format("{} has {} few-shot exemplars; --shots {} asks for more", task, available, shots));
  return shots;
}

double fraction(int64_t correct, int64_t total) {
  return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
}

GroupedAccuracy grouped_accuracy(const std::vector<TaskItem>& items, const std::vector<bool>& ok,
                                 const std::string& metric) {
  std::map<std::string, std::pair<int64_t, int64_t>> by_group;  // correct, total
  int64_t correct = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    correct += ok[i];
    auto& g = by_group[items[i].group];
    g.first += ok[i];
    g.second += 1;
  }
  GroupedAccuracy out;
  out.groups = nlohmann::json::object();
  for (const auto& [name, ct] : by_group) {
    out.groups[name] = {{metric, fraction(ct.first, ct.second)}, {"n", ct.second}};
    out.group_mean += fraction(ct.first, ct.second);
  }
  if (!by_group.empty()) out.group_mean /= static_cast<double>(by_group.size());
  out.overall = fraction(correct, static_cast<int64_t>(items.size()));
  return out;
}

}  // namespace tess::eval::tasks
