#include "eval/tasks/gsm8k.h"

#include <fmt/format.h>

#include "data/jsonl.h"
#include "eval/tasks/unicode.h"
#include "eval/text_metrics.h"

namespace tess::eval::tasks {
namespace {

struct Exemplar {
  const char* question;
  const char* cot_answer;
};

// Wei et al. 2022, Table 20; the reference's sdlm/data/instruction_evals/gsm_exemplars.py.
const Exemplar kExemplars[kGsm8kExemplars] = {
    {"There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there "
     "will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been "
     "21 - 15 = 6. So the answer is 6."},
    {"If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. So the answer is 5."},
    {"Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they "
     "had 74 - 35 = 39. So the answer is 39."},
    {"Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason "
     "give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. So "
     "the answer is 8."},
    {"Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. So "
     "the answer is 9."},
    {"There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers "
     "were added. 9 + 20 is 29. So the answer is 29."},
    {"Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls "
     "did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he "
     "had 35 - 2 = 33 golf balls. So the answer is 33."},
    {"Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. "
     "23 - 15 is 8. So the answer is 8."},
};

// "+5" -> "5", "-007.50" -> "-7.5", "1000.00" -> "1000".
std::string canonical_number(std::string n) {
  std::string sign;
  if (!n.empty() && (n[0] == '-' || n[0] == '+')) {
    if (n[0] == '-') sign = "-";
    n.erase(0, 1);
  }
  if (auto dot = n.find('.'); dot != std::string::npos) {
    while (!n.empty() && n.back() == '0') n.pop_back();
    if (!n.empty() && n.back() == '.') n.pop_back();
  }
  size_t lead = 0;
  while (lead + 1 < n.size() && n[lead] == '0' && n[lead + 1] != '.') ++lead;
  n.erase(0, lead);
  if (n.empty() || n == "0") return n;
  return sign + n;
}

}  // namespace

std::string gsm8k_prompt(const std::string& question, int64_t shots) {
  std::string demos;
  for (int64_t i = 0; i < shots; ++i)
    demos += fmt::format("{}Question: {}\nAnswer: {}", i ? "\n\n" : "", kExemplars[i].question, kExemplars[i].cot_answer);
  return "Answer the following questions.\n\n" + (demos.empty() ? "" : demos + "\n\n") + "Question: " + strip(question);
}

std::string gsm8k_gold(const std::string& answer) {
  auto at = answer.find("####");
  if (at == std::string::npos)
    throw data::RecordError("field 'answer' has no \"#### <number>\" (GSM8K's answer format)");
  auto gold = gsm8k_extract(answer.substr(at + 4));
  if (gold.empty()) throw data::RecordError("field 'answer' has no number after \"####\"");
  return gold;
}

std::string gsm8k_extract(const std::string& text) {
  auto n = extract_answer(text, AnswerExtraction::LastNumber);
  return n.empty() ? n : canonical_number(n);
}

bool gsm8k_correct(const std::string& output, const std::string& gold) {
  auto got = gsm8k_extract(output);
  return !got.empty() && got == gold;
}

std::vector<TaskItem> Gsm8kTask::load(const std::filesystem::path& file, const TaskOptions& options) const {
  const std::string format = "gsm8k records are {\"question\", \"answer\": \"... #### 42\"}";
  int64_t shots = shots_or(options, kGsm8kExemplars, kGsm8kExemplars, "gsm8k");
  return read_task_items(file, format, [&](const nlohmann::json& r) {
    TaskItem it;
    it.prompt = gsm8k_prompt(required_string(r, "question", format), shots);
    it.reference = gsm8k_gold(required_string(r, "answer", format));
    it.gold = it.reference;
    return it;
  });
}

nlohmann::json Gsm8kTask::score(const std::vector<TaskItem>& items, const std::vector<std::string>& outputs,
                                const Judge&) const {
  int64_t correct = 0;
  for (size_t i = 0; i < items.size(); ++i) correct += gsm8k_correct(outputs[i], items[i].gold.get<std::string>());
  auto n = static_cast<int64_t>(items.size());
  return {{"exact_match", fraction(correct, n)}, {"correct", correct}, {"n", n}};
}

}  // namespace tess::eval::tasks
