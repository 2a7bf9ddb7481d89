#include "eval/tasks/qa.h"

#include <fmt/format.h>

#include "data/jsonl.h"
#include "eval/tasks/normalize.h"
#include "eval/tasks/unicode.h"

namespace tess::eval::tasks {
namespace {

// The reference's squad_shots and triviaqa_shots (instruction_evals.py).
const char* const kSquadShots[kSquadExemplars] = {
    "Architecturally, the school has a Catholic character. Atop the Main Building's gold dome is a golden statue of "
    "the Virgin Mary. Immediately in front of the Main Building and facing it, is a copper statue of Christ with arms "
    "upraised with the legend \"Venite Ad Me Omnes\". Next to the Main Building is the Basilica of the Sacred Heart. "
    "Immediately behind the basilica is the Grotto, a Marian place of prayer and reflection. It is a replica of the "
    "grotto at Lourdes, France where the Virgin Mary reputedly appeared to Saint Bernadette Soubirous in 1858. At the "
    "end of the main drive (and in a direct line that connects through 3 statues and the Gold Dome), is a simple, "
    "modern stone statue of Mary.\n\nTo whom did the Virgin Mary allegedly appear in 1858 in Lourdes France?\n\nSaint "
    "Bernadette Soubirous",
    "Burke was born in Dublin, Ireland. His mother Mary n\u00e9e Nagle (c. 1702 \u2013 1770) was a Roman Catholic "
    "who hailed from a d\u00e9class\u00e9 County Cork family (and a cousin of Nano Nagle), whereas his father, a "
    "successful solicitor, Richard (died 1761), was a member of the Church of Ireland; it remains unclear whether this "
    "is the same Richard Burke who converted from Catholicism. The Burke dynasty descends from an Anglo-Norman knight "
    "surnamed de Burgh (latinised as de Burgo) who arrived in Ireland in 1185 following Henry II of England's 1171 "
    "invasion of Ireland.\n\nWhere was Burke born?\n\nDublin, Ireland",
    "The term high definition once described a series of television systems originating from August 1936; however, "
    "these systems were only high definition when compared to earlier systems that were based on mechanical systems "
    "with as few as 30 lines of resolution. The ongoing competition between companies and nations to create true "
    "\"HDTV\" spanned the entire 20th century, as each new system became more HD than the last.In the beginning of "
    "the 21st century, this race has continued with 4k, 5k and current 8K systems.\n\nThe term \"high definition\" "
    "originally described televisions systems from what year?\n\n1936",
};
const char* const kTriviaqaShots[kTriviaqaExemplars] = {
    "Which American-born Sinclair won the Nobel Prize for Literature in 1930?\n\n(Harry) Sinclair Lewis",
    "Where in England was Dame Judi Dench born?\n\nYork, England",
};

std::string joined_shots(const char* const* shots, int64_t n) {
  std::string out;
  for (int64_t i = 0; i < n; ++i) out += (i ? "\n" : "") + std::string(shots[i]);
  return out;
}

void add_strings(const nlohmann::json& list, const char* what, std::vector<std::string>& out) {
  if (!list.is_array()) throw data::RecordError(fmt::format("{} must be a list of strings", what));
  for (const auto& s : list) {
    if (!s.is_string()) throw data::RecordError(fmt::format("{} must be a list of strings", what));
    out.push_back(s.get<std::string>());
  }
}

// The first of `keys` that `obj` holds.
const nlohmann::json* first_of(const nlohmann::json& obj, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (obj.contains(k) && !obj[k].is_null()) return &obj[k];
  return nullptr;
}

struct QaMeans {
  double em = 0, f1 = 0, contains = 0;
};
QaMeans qa_means(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs, Normalizer normalize) {
  QaMeans m;
  for (size_t i = 0; i < items.size(); ++i) {
    auto golds = items[i].gold.get<std::vector<std::string>>();
    auto prediction = strip(outputs[i]);
    auto s = best_over_golds(prediction, golds, normalize);
    m.em += s.exact_match;
    m.f1 += s.f1;
    auto said = normalize(prediction);
    for (const auto& g : golds)
      if (said.find(normalize(g)) != std::string::npos) {
        m.contains += 1;
        break;
      }
  }
  double n = static_cast<double>(std::max<size_t>(items.size(), 1));
  return {m.em / n, m.f1 / n, m.contains / n};
}

}  // namespace

std::string squad_prompt(const std::string& context, const std::string& question, int64_t shots) {
  std::string shown = joined_shots(kSquadShots, shots);
  return (shown.empty() ? "" : shown + "\n") + context + "\n\n" + question;
}

std::string triviaqa_prompt(const std::string& question, int64_t shots) {
  std::string shown = joined_shots(kTriviaqaShots, shots);
  return (shown.empty() ? "" : shown + "\n\n") + question;
}

std::vector<std::string> squad_golds(const nlohmann::json& record) {
  if (!record.contains("answers")) throw data::RecordError("missing field 'answers'");
  const auto& a = record["answers"];
  std::vector<std::string> golds;
  if (a.is_object() && a.contains("text")) {
    add_strings(a["text"], "field 'answers.text'", golds);
  } else if (a.is_array()) {
    for (const auto& x : a) {
      if (x.is_object() && x.contains("text") && x["text"].is_string()) golds.push_back(x["text"].get<std::string>());
      else if (x.is_string()) golds.push_back(x.get<std::string>());
      else throw data::RecordError("field 'answers' must be {\"text\": [...]} or a list of {\"text\": ...}");
    }
  } else {
    throw data::RecordError("field 'answers' must be {\"text\": [...]} or a list of {\"text\": ...}");
  }
  if (golds.empty()) throw data::RecordError("field 'answers' holds no answer");
  return golds;
}

std::vector<std::string> triviaqa_golds(const nlohmann::json& record) {
  const auto* a = first_of(record, {"answer", "Answer"});
  if (!a || !a->is_object())
    throw data::RecordError("missing field 'answer' (an object with \"normalized_aliases\" or \"aliases\"/\"value\")");
  std::vector<std::string> golds;
  if (const auto* na = first_of(*a, {"normalized_aliases", "NormalizedAliases"})) {
    add_strings(*na, "field 'answer.normalized_aliases'", golds);
  }
  if (golds.empty()) {
    if (const auto* al = first_of(*a, {"aliases", "Aliases"})) add_strings(*al, "field 'answer.aliases'", golds);
    if (const auto* v = first_of(*a, {"value", "Value"}); v && v->is_string()) golds.push_back(v->get<std::string>());
  }
  if (golds.empty()) throw data::RecordError("field 'answer' holds no normalized_aliases, aliases or value");
  return golds;
}

std::vector<TaskItem> SquadTask::load(const std::filesystem::path& file, const TaskOptions& options) const {
  const std::string format = "squad records are {\"context\", \"question\", \"answers\": {\"text\": [...]}}";
  int64_t shots = shots_or(options, kSquadExemplars, kSquadExemplars, "squad");
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    TaskItem it;
    it.prompt = squad_prompt(required_string(r, "context", format), required_string(r, "question", format), shots);
    auto golds = squad_golds(r);
    it.reference = golds.front();
    it.gold = golds;
    return it;
  });
}

nlohmann::json SquadTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                                const Judge&) const {
  auto m = qa_means(items, outputs, squad_normalize);
  return {{"exact_match", m.em}, {"f1", m.f1}, {"n", items.size()}};
}

std::vector<TaskItem> TriviaqaTask::load(const std::filesystem::path& file, const TaskOptions& options) const {
  const std::string format = "triviaqa records are {\"question\", \"answer\": {\"value\", \"aliases\", "
                             "\"normalized_aliases\"}}";
  int64_t shots = shots_or(options, kTriviaqaExemplars, kTriviaqaExemplars, "triviaqa");
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    TaskItem it;
    it.prompt = triviaqa_prompt(required_string(r, "question", format), shots);
    auto golds = triviaqa_golds(r);
    it.reference = golds.front();
    it.gold = golds;
    return it;
  });
}

nlohmann::json TriviaqaTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                                   const Judge&) const {
  auto m = qa_means(items, outputs, triviaqa_normalize);
  return {{"exact_match", m.em}, {"f1", m.f1}, {"contains", m.contains}, {"n", items.size()}};
}

}  // namespace tess::eval::tasks
