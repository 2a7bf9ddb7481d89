#include "eval/tasks/ifeval.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "data/jsonl.h"
#include "eval/tasks/ifeval_checks.h"
#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace {

std::string without_stars(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '*'), s.end());
  return s;
}

std::string join_lines(const std::vector<std::string>& lines, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) out += (i > from ? "\n" : "") + lines[i];
  return out;
}

const nlohmann::json& kwargs_at(const nlohmann::json& record, size_t i) {
  static const nlohmann::json none = nlohmann::json::object();
  if (!record.contains("kwargs")) return none;
  return record["kwargs"].at(i);
}

// Checks the record's shape; the checkers are built once here to validate
// their arguments (file:line errors before any generation).
void validate(const nlohmann::json& r) {
  if (!r.contains("instruction_id_list") || !r["instruction_id_list"].is_array())
    throw data::RecordError("missing field 'instruction_id_list' (a list of IFEval instruction ids)");
  const auto& ids = r["instruction_id_list"];
  if (r.contains("kwargs") && (!r["kwargs"].is_array() || r["kwargs"].size() != ids.size()))
    throw data::RecordError(fmt::format("field 'kwargs' must be a list of {} objects, one per instruction", ids.size()));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ids[i].is_string()) throw data::RecordError("field 'instruction_id_list' must hold strings");
    make_ifeval_checker(ids[i].get<std::string>(), kwargs_at(r, i), r["prompt"].get<std::string>());
  }
}

}  // namespace

std::vector<std::string> ifeval_loose_variants(const std::string& response) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t at; (at = response.find('\n', start)) != std::string::npos; start = at + 1)
    lines.push_back(response.substr(start, at - start));
  lines.push_back(response.substr(start));
  size_t n = lines.size();
  auto first = strip(join_lines(lines, 1, n));
  auto last = strip(join_lines(lines, 0, n - 1));
  auto both = strip(join_lines(lines, 1, n > 1 ? n - 1 : 1));
  return {response, without_stars(response), first, last, both, without_stars(first), without_stars(last),
          without_stars(both)};
}

IfevalVerdict ifeval_judge(const nlohmann::json& record, const std::string& response) {
  IfevalVerdict v;
  const auto& ids = record["instruction_id_list"];
  const auto prompt = record["prompt"].get<std::string>();
  auto variants = ifeval_loose_variants(response);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto check = make_ifeval_checker(ids[i].get<std::string>(), kwargs_at(record, i), prompt);
    bool strict = !strip(response).empty() && check(response), loose = false;
    for (const auto& r : variants) loose = loose || (!strip(r).empty() && check(r));
    v.strict.push_back(strict);
    v.loose.push_back(loose);
  }
  return v;
}

std::vector<TaskItem> IfevalTask::load(const std::filesystem::path& file, const TaskOptions&) const {
  const std::string format = "ifeval records are {\"key\", \"prompt\", \"instruction_id_list\", \"kwargs\"}";
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    TaskItem it;
    it.prompt = required_string(r, "prompt", format);
    validate(r);
    it.gold = {{"prompt", it.prompt}, {"instruction_id_list", r["instruction_id_list"]},
               {"kwargs", r.value("kwargs", nlohmann::json::array())}};
    if (!r.contains("kwargs")) it.gold.erase("kwargs");
    return it;
  });
}

nlohmann::json IfevalTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                                 const Judge&) const {
  struct Counts {
    int64_t strict = 0, loose = 0, total = 0;
  };
  Counts prompts, instructions;
  std::map<std::string, Counts> per_id;
  std::map<std::string, int64_t> approximated;
  for (size_t i = 0; i < items.size(); ++i) {
    // The reference judges the stripped prediction.
    auto v = ifeval_judge(items[i].gold, strip(outputs[i]));
    const auto& ids = items[i].gold["instruction_id_list"];
    bool all_strict = true, all_loose = true;
    for (size_t k = 0; k < ids.size(); ++k) {
      auto id = ids[k].get<std::string>();
      if (ifeval_support(id) == CheckSupport::Approximate) ++approximated[id];
      auto& c = per_id[id];
      c.strict += v.strict[k];
      c.loose += v.loose[k];
      c.total += 1;
      instructions.strict += v.strict[k];
      instructions.loose += v.loose[k];
      instructions.total += 1;
      all_strict = all_strict && v.strict[k];
      all_loose = all_loose && v.loose[k];
    }
    prompts.strict += all_strict;
    prompts.loose += all_loose;
    prompts.total += 1;
  }
  nlohmann::json by_id = nlohmann::json::object();
  for (const auto& [id, c] : per_id)
    by_id[id] = {{"strict", fraction(c.strict, c.total)}, {"loose", fraction(c.loose, c.total)}, {"n", c.total}};
  return {{"prompt_strict", fraction(prompts.strict, prompts.total)},
          {"prompt_loose", fraction(prompts.loose, prompts.total)},
          {"instruction_strict", fraction(instructions.strict, instructions.total)},
          {"instruction_loose", fraction(instructions.loose, instructions.total)},
          {"n", items.size()},
          {"instructions", instructions.total},
          {"approximated", approximated},
          {"by_instruction", by_id}};
}

}  // namespace tess::eval::tasks
