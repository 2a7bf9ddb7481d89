#include "eval/tasks/mmlu.h"


#include <fmt/format.h>

#include "core/util/error.h"
#include "data/jsonl.h"
#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace {

std::string letter(size_t i) { return std::string(1, static_cast<char>('A' + i)); }

// The original harness's format_subject: "high_school_physics" -> " high school physics".
std::string format_subject(const std::string& subject) {
  std::string out;
  size_t start = 0;
  while (true) {
    auto us = subject.find('_', start);
    out += " " + subject.substr(start, us == std::string::npos ? std::string::npos : us - start);
    if (us == std::string::npos) return out;
    start = us + 1;
  }
}

int64_t answer_index(const nlohmann::json& r, size_t n_choices) {
  if (!r.contains("answer")) throw data::RecordError("missing field 'answer' (the index or letter of the right choice)");
  const auto& a = r["answer"];
  int64_t idx = -1;
  if (a.is_number_integer()) idx = a.get<int64_t>();
  else if (a.is_string() && a.get<std::string>().size() == 1) idx = a.get<std::string>()[0] - 'A';
  if (idx < 0 || idx >= static_cast<int64_t>(n_choices))
    throw data::RecordError(fmt::format("field 'answer' {} is not a choice index (0..{}) or letter", a.dump(),
                                        n_choices - 1));
  return idx;
}

}  // namespace

std::string mmlu_prompt(const std::string& subject, const std::string& question, const std::vector<std::string>& choices) {
  std::string p = fmt::format("The following are multiple choice questions (with answers) about {}.\n\n{}",
                              format_subject(subject), question);
  for (size_t i = 0; i < choices.size(); ++i) p += fmt::format("\n{}. {}", letter(i), choices[i]);
  return p + "\nAnswer:";
}

std::string mmlu_extract(const std::string& output, size_t n_choices) {
  auto s = strip(output);
  if (s.empty()) return "";
  for (size_t i = 0; i < n_choices; ++i)
    if (s[0] == 'A' + static_cast<char>(i)) return letter(i);
  return "";
}

std::vector<TaskItem> MmluTask::load(const std::filesystem::path& file, const TaskOptions& options) const {
  const std::string format = "mmlu records are {\"question\", \"choices\": [...], \"answer\": 0-3, \"subject\"}";
  if (options.shots > 0)
    throw Error("mmlu is zero-shot here (as in the reference): --shots must be 0 or unset");
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    if (!r.contains("choices") || !r["choices"].is_array() || r["choices"].size() < 2 || r["choices"].size() > 26)
      throw data::RecordError("field 'choices' must be a list of 2 to 26 strings; " + format);
    std::vector<std::string> choices;
    for (const auto& c : r["choices"]) {
      if (!c.is_string()) throw data::RecordError("field 'choices' must be a list of strings; " + format);
      choices.push_back(c.get<std::string>());
    }
    TaskItem it;
    it.group = r.contains("subject") ? required_string(r, "subject", format) : file.stem().string();
    it.prompt = mmlu_prompt(it.group, required_string(r, "question", format), choices);
    it.answer_index = answer_index(r, choices.size());
    it.reference = letter(static_cast<size_t>(it.answer_index));
    it.gold = {{"answer", it.reference}, {"choices", choices.size()}};
    for (size_t i = 0; i < choices.size(); ++i) it.choices.push_back(letter(i));
    return it;
  });
}

nlohmann::json MmluTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                               const Judge&) const {
  std::vector<bool> ok;
  int64_t invalid = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    auto said = mmlu_extract(outputs[i], items[i].gold["choices"].get<size_t>());
    invalid += said.empty();
    ok.push_back(said == items[i].gold["answer"].get<std::string>());
  }
  auto a = grouped_accuracy(items, ok, "accuracy");
  return {{"accuracy", a.overall},
          {"accuracy_subject_mean", a.group_mean},
          {"no_letter", invalid},
          {"n", static_cast<int64_t>(items.size())},
          {"by_subject", a.groups}};
}

}  // namespace tess::eval::tasks
