#include "eval/tasks/bbh.h"

#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "core/util/error.h"
#include "data/jsonl.h"
#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace fs = std::filesystem;
namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read BBH prompt file {}", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Lower case, string.punctuation removed.
std::string loose(const std::string& text) {
  std::u32string out;
  for (char32_t c : utf8_decode(text))
    if (!is_ascii_punct(c)) out.push_back(to_lower(c));
  return utf8_encode(out);
}

}  // namespace

std::string bbh_cot_prompt(const std::string& file_text, int64_t shots) {
  std::string text = file_text;
  // The canary line and "-----" the reference skips (readlines()[2:]).
  auto dashes = text.find("-----\n");
  if (dashes != std::string::npos && (dashes == 0 || text[dashes - 1] == '\n') &&
      text.find("\nQ: ") > dashes)
    text = text.substr(dashes + 6);
  text = strip(text);
  if (shots < 0) return text;
  std::string out;
  size_t at = 0;
  for (int64_t k = 0; k <= shots; ++k) {
    auto next = text.find("\n\nQ: ", at == 0 ? 0 : at + 1);
    if (next == std::string::npos) return text;  // fewer exemplars than asked: all of them
    out = text.substr(0, next);
    at = next;
  }
  return out;
}

std::string bbh_prompt(const std::string& cot_prompt, const std::string& input) {
  return strip(strip(cot_prompt) + "\n\nQ: " + input) + " A:";
}

std::string bbh_extract(const std::string& output) {
  // re.search(r"[t|T]he answer is (.*?)\.", output): '.' does not cross lines.
  const std::string key = "he answer is ";
  for (size_t i = 0; i + 1 + key.size() <= output.size(); ++i) {
    char c = output[i];
    if ((c != 't' && c != 'T' && c != '|') || output.compare(i + 1, key.size(), key) != 0) continue;
    size_t from = i + 1 + key.size();
    auto end = output.find_first_of(".\n", from);
    if (end != std::string::npos && output[end] == '.') return strip(output.substr(from, end - from));
  }
  return strip(output);
}

bool bbh_match(const std::string& prediction, const std::string& target) { return loose(prediction) == loose(target); }

std::vector<TaskItem> BbhTask::load(const fs::path& file, const TaskOptions& options) const {
  const std::string format = "bbh records are {\"input\", \"target\"} (+ \"task\", else the file name is the task)";
  if (options.prompts.empty())
    throw Error("--task bbh needs --task-prompts DIR (eval.task_prompts): the directory of BBH's "
                "cot-prompts/<task>.txt files");
  if (!fs::is_directory(options.prompts))
    throw Error(fmt::format("eval.task_prompts {} is not a directory of cot-prompts/<task>.txt files",
                            options.prompts.string()));
  std::map<std::string, std::string> cot;  // task -> exemplar prompt
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    TaskItem it;
    it.group = r.contains("task") ? required_string(r, "task", format) : file.stem().string();
    auto found = cot.find(it.group);
    if (found == cot.end()) {
      auto file = options.prompts / (it.group + ".txt");
      if (!fs::exists(file))
        throw data::RecordError(fmt::format("no BBH cot prompt for task '{}' ({} does not exist)", it.group,
                                            file.string()));
      found = cot.emplace(it.group, bbh_cot_prompt(read_text(file), options.shots)).first;
    }
    it.prompt = bbh_prompt(found->second, required_string(r, "input", format));
    it.reference = required_string(r, "target", format);
    it.gold = it.reference;
    return it;
  });
}

nlohmann::json BbhTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                              const Judge&) const {
  std::vector<bool> ok;
  for (size_t i = 0; i < items.size(); ++i) ok.push_back(bbh_match(bbh_extract(outputs[i]), items[i].gold.get<std::string>()));
  auto a = grouped_accuracy(items, ok, "exact_match");
  return {{"exact_match", a.overall},
          {"exact_match_task_mean", a.group_mean},
          {"n", static_cast<int64_t>(items.size())},
          {"by_task", a.groups}};
}

}  // namespace tess::eval::tasks
