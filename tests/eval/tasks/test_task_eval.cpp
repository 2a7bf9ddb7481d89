// `tess eval --task`: the real binary on the tiny workspace models; the
// report's task block must be what the task's scorer gives on the answers
// written to --samples (read back and re-scored here).
#include <catch2/catch.hpp>

#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/schema.h"
#include "eval/evaluate.h"
#include "eval/tasks/alpaca.h"
#include "eval/tasks/mmlu.h"
#include "eval/tasks/task.h"
#include "tests/eval/workspace.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;
using tess::test::run_tess;
using tess::test::workspace;
namespace tasks = tess::eval::tasks;

namespace {

std::string q(const fs::path& p) { return tess::test::shell_quote(p.string()); }
fs::path fixture(const char* name) { return fs::path(TESS_TEST_DATA) / "benchmarks" / name; }

std::vector<json> read_jsonl(const fs::path& file) {
  std::vector<json> out;
  std::istringstream in(tess::test::read_file(file));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// Runs `tess eval --task`, then re-scores its samples with the task's scorer.
void check_rescored(const std::string& task, const fs::path& data, const tasks::TaskOptions& options,
                    const std::string& flags, json& report) {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto r = run_tess(fmt::format("eval --model {} --task {} --data {} --steps 2 --length 8 --seed 3 --output {} "
                                "--samples {} {}",
                                q(w.diffusion), task, q(data), q(dir / "report.json"), q(dir / "samples.jsonl"), flags));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains(task));  // the task's table
  report = json::parse(tess::test::read_file(dir / "report.json"));
  CHECK(report["settings"]["task"] == task);
  auto samples = read_jsonl(dir / "samples.jsonl");
  const auto& t = tasks::find_task(task);
  auto items = t.load(data, options);
  REQUIRE(samples.size() == items.size());
  std::vector<std::string> outputs;
  for (size_t i = 0; i < items.size(); ++i) {
    CHECK(samples[i]["prompt"] == items[i].prompt);  // the prompt the task builds is the one answered
    outputs.push_back(samples[i]["output"].get<std::string>());
  }
  CHECK(report["metrics"]["task"] == t.score(items, outputs, {}));
}

}  // namespace

TEST_CASE("tess eval --task gsm8k and ifeval: the task block is the scorer's verdict on the written answers",
          "[integration][eval]") {
  tasks::TaskOptions zero_shot;
  zero_shot.shots = 0;
  json report;
  check_rescored("gsm8k", fixture("gsm8k.jsonl"), zero_shot, "--shots 0", report);
  CHECK(report["settings"]["shots"] == 0);
  CHECK(report["metrics"]["task"]["n"] == 3);
  CHECK(report["metrics"].contains("dist_1"));  // the generation metrics still apply
  CHECK_FALSE(report["metrics"].contains("exact_match"));  // replaced by the task's own

  check_rescored("ifeval", fixture("ifeval.jsonl"), {}, "", report);
  const auto& t = report["metrics"]["task"];
  CHECK(t["instructions"] == 7);
  CHECK(t["approximated"]["language:response_language"] == 1);
  // 8 generated tokens never reach 500 words: record 2 cannot be followed.
  CHECK(t["prompt_loose"].get<double>() < 1.0);
  CHECK(t["by_instruction"]["length_constraints:number_words"]["n"] == 2);
}

TEST_CASE("mmlu likelihood mode ranks the letters like the multiple_choice metric does", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  const auto& mmlu = tasks::find_task("mmlu");
  auto items = mmlu.load(fixture("mmlu.jsonl"), {});
  // The same prompts and letters as plain eval records.
  std::string records;
  for (const auto& it : items)
    records += json{{"prompt", it.prompt}, {"choices", it.choices}, {"answer", it.answer_index}}.dump() + "\n";
  tess::eval::EvalOptions plain;
  plain.model = w.copy_ar;
  plain.generate.ar = true;
  plain.progress = false;
  plain.data = dir.write("mc.jsonl", records);
  plain.metrics = {"multiple_choice"};
  auto want = tess::eval::evaluate(plain).report["metrics"]["multiple_choice"].get<double>();

  auto o = plain;
  o.data = fixture("mmlu.jsonl");
  o.task = "mmlu";
  o.task_options.likelihood = true;
  o.metrics = {"diversity", "speed"};  // nothing is generated in this mode
  auto r = tess::eval::evaluate(o);
  CHECK(r.report["settings"]["mmlu_mode"] == "likelihood");
  CHECK(r.report["metrics"]["task"]["accuracy"].get<double>() == Approx(want));
  CHECK_FALSE(r.report["metrics"].contains("dist_1"));
  REQUIRE(r.generations.size() == 3);
  std::vector<std::string> picks;
  for (const auto& g : r.generations) {
    CHECK(g.output.size() == 1);  // a letter
    picks.push_back(g.output);
  }
  CHECK(r.report["metrics"]["task"] == mmlu.score(items, picks, {}));
  CHECK(r.report["metrics"]["task"]["no_letter"] == 0);
}

TEST_CASE("tess eval --task alpaca_eval: the reward model judges, and its own answers tie with themselves",
          "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto eval = [&](const std::string& extra) {
    return run_tess(fmt::format("eval --model {} --task alpaca_eval --data {} --reward-model {} --steps 2 --length 8 "
                                "--seed 5 --output {} --samples {} {}",
                                q(w.diffusion), q(fixture("alpaca_eval.jsonl")), q(w.reward), q(dir / "report.json"),
                                q(dir / "samples.jsonl"), extra));
  };
  auto r = eval("");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto first = json::parse(tess::test::read_file(dir / "report.json"));
  const auto& t = first["metrics"]["task"];
  CHECK(t["n"] == 2);
  CHECK(t["wins"].get<int64_t>() + t["ties"].get<int64_t>() + t["losses"].get<int64_t>() == 2);
  CHECK(std::isfinite(t["mean_reward"].get<double>()));
  CHECK(first["settings"]["judge"] == w.reward.string());
  // The same seed gives the same answers: judged against themselves, all tie.
  std::string refs;
  std::vector<std::string> outputs;
  for (const auto& s : read_jsonl(dir / "samples.jsonl")) {
    refs += json{{"instruction", s["prompt"]}, {"output", s["output"]}}.dump() + "\n";
    outputs.push_back(s["output"].get<std::string>());
  }
  auto ref_file = dir.write("reference.jsonl", refs);
  r = eval("--reference-outputs " + q(ref_file));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto second = json::parse(tess::test::read_file(dir / "report.json"))["metrics"]["task"];
  CHECK(second["ties"] == 2);
  CHECK(second["win_rate"].get<double>() == 0.5);
  CHECK(second["mean_reward"].get<double>() == Approx(t["mean_reward"].get<double>()));
  auto stats = tasks::text_stats(outputs);
  CHECK(second["mean_words"].get<double>() == Approx(stats.mean_words));
  CHECK(second["entropy"].get<double>() == Approx(stats.entropy));

  // Checked before any sampling: the judge, the task name, BBH's prompts.
  auto fail = run_tess(fmt::format("eval --model {} --task alpaca_eval --data {}", q(w.diffusion),
                                   q(fixture("alpaca_eval.jsonl"))));
  CHECK(fail.exit_code == 1);
  CHECK_THAT(fail.err, Contains("--task alpaca_eval is judged by a reward model"));
  fail = run_tess(fmt::format("eval --model {} --task gsm9k --data {}", q(w.diffusion), q(fixture("gsm8k.jsonl"))));
  CHECK(fail.exit_code == 1);
  CHECK_THAT(fail.err, Contains("eval.task") && Contains("gsm8k"));
  fail = run_tess(fmt::format("eval --model {} --task bbh --data {}", q(w.diffusion), q(fixture("bbh/mixed.jsonl"))));
  CHECK(fail.exit_code == 1);
  CHECK_THAT(fail.err, Contains("--task-prompts"));
}

TEST_CASE("eval.task's allowed values are the task registry's names", "[unit][eval]") {
  std::vector<std::string> want = {""};
  for (const auto& n : tasks::task_names()) want.push_back(n);
  CHECK(tess::config::schema().find("eval.task")->choices == want);  // config = library
}
