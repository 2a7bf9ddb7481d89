// `tess eval`: metrics on hand-made inputs with known values, the report,
// table and sweep plot, and the errors a user meets.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/model/safetensors.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "core/config/schema.h"
#include "eval/evaluate.h"
#include "tests/eval/workspace.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using tess::test::error_of;
using tess::test::run_tess;
using tess::test::workspace;

namespace {

std::string q(const fs::path& p) { return tess::test::shell_quote(p.string()); }

// Runs a Python script of the source tree (`script`, relative to it) with the
// tests' interpreter; `args` come shell-quoted.
tess::test::CommandResult run_script(const std::string& script, const std::string& args) {
  return tess::test::run_command(tess::test::shell_quote(TESS_PYTHON) + " " +
                                 tess::test::shell_quote(std::string(TESS_SOURCE_DIR) + "/" + script) + " " + args);
}

// Two prompts whose reference answers are known.
fs::path answer_file(tess::test::TempDir& dir) {
  return dir.write("answers.jsonl",
                   "{\"prompt\": \"sun sun\", \"answer\": \"sun\", \"task\": \"echo\"}\n"
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"the dog\"}, {\"role\": \"assistant\", "
                   "\"content\": \"ran\"}], \"task\": \"story\"}\n");
}

}  // namespace

TEST_CASE("metric names and parse_sweep: the documented names, others rejected by name", "[unit][eval]") {
  tess::eval::EvalOptions bad;
  bad.metrics = {"exact_match", "bleu"};
  CHECK_THAT(error_of([&] { tess::eval::evaluate(bad); }), Contains("unknown metric 'bleu'"));
  CHECK(tess::config::schema().find("eval.metrics")->choices == tess::eval::metric_names());  // config = library
  auto s = tess::eval::parse_sweep("steps=8,16,32");
  CHECK(s.name == "steps");
  CHECK(s.values == std::vector<double>{8, 16, 32});
  CHECK_THAT(error_of([] { tess::eval::parse_sweep("steps"); }), Contains("expected name=v1,v2"));
  CHECK_THAT(error_of([] { tess::eval::parse_sweep("beam=2"); }), Contains("cannot sweep 'beam'"));
  CHECK_THAT(error_of([] { tess::eval::parse_sweep("steps=8,x"); }), Contains("'x' is not a number"));
  tess::eval::EvalOptions o;
  CHECK_THAT(error_of([&] { tess::eval::apply_sweep_value(o, "steps", 2.5); }), Contains("not a positive integer"));
  // Stop settings and the prompt cache: adaptive ones need adaptive stopping on.
  CHECK_THAT(error_of([&] { tess::eval::apply_sweep_value(o, "margin", 0.3); }), Contains("add --adaptive"));
  o.generate.stop.enabled = true;
  tess::eval::apply_sweep_value(o, "margin", 0.3);
  tess::eval::apply_sweep_value(o, "stable_steps", 3);
  tess::eval::apply_sweep_value(o, "cache_refresh", 4);
  CHECK(o.generate.stop.margin == 0.3);
  CHECK(o.generate.stop.stable_steps == 3);
  CHECK(o.generate.cache_refresh == 4);
  tess::eval::apply_sweep_value(o, "cache_refresh", 0);
  CHECK(o.generate.cache_refresh == 0);
  CHECK(tess::eval::parse_sweep("cache_refresh=0,4,8").values == std::vector<double>{0, 4, 8});
}

TEST_CASE("multiple choice ranks choices by likelihood: a copy model prefers repeated tokens", "[unit][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  // The copy model predicts "the same token again": the repeated choice is the
  // likely one, so records 1-3 are right and record 4 (whose key is the
  // varied text) is wrong: accuracy 3/4 exactly.
  auto data = dir.write("mc.jsonl",
                        "{\"prompt\": \"pick\", \"choices\": [\"sun sun sun sun sun sun\", \"the cat sat on a mat\"], "
                        "\"answer\": 0}\n"
                        "{\"prompt\": \"pick\", \"choices\": [\"dog ran to the park\", \"walk walk walk walk walk\"], "
                        "\"answer\": 1}\n"
                        "{\"prompt\": \"pick\", \"choices\": [\"we sing every night\", \"home home home home\", \"a "
                        "loud bird\"], \"answer\": \"home home home home\"}\n"
                        "{\"prompt\": \"pick\", \"choices\": [\"cat cat cat cat cat\", \"birds sing loud\"], "
                        "\"answer\": 1}\n");
  tess::eval::EvalOptions o;
  o.model = w.copy_ar;
  o.data = data;
  o.metrics = {"multiple_choice"};
  o.generate.ar = true;
  o.progress = false;
  auto r = tess::eval::evaluate(o);
  CHECK(r.report["metrics"]["multiple_choice"].get<double>() == Approx(0.75));
  CHECK(r.report["metrics"]["multiple_choice_n"].get<int64_t>() == 4);
  CHECK(r.generations.empty());

  // Diffusion models are ranked by their diffusion loss over shared noise draws:
  // deterministic for a seed.
  o.model = w.diffusion;
  o.generate.ar = false;
  o.choice_samples = 2;
  auto d1 = tess::eval::evaluate(o).report["metrics"]["multiple_choice"].get<double>();
  auto d2 = tess::eval::evaluate(o).report["metrics"]["multiple_choice"].get<double>();
  CHECK(d1 == d2);

  auto bad = dir.write("bad.jsonl", "{\"prompt\": \"pick\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n");
  o.data = bad;
  CHECK_THAT(error_of([&] { tess::eval::evaluate(o); }), Contains("bad.jsonl:1") && Contains("not a choice index"));
  o.data = answer_file(dir);
  CHECK_THAT(error_of([&] { tess::eval::evaluate(o); }), Contains("answers.jsonl:1") && Contains("needs \"choices\""));
}

TEST_CASE("eval report: exact match per task, dist-n, speed, reward and perplexity of the generated answers",
          "[unit][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  tess::eval::EvalOptions o;
  o.model = w.copy_ar;
  o.data = answer_file(dir);
  o.metrics = {"exact_match", "diversity", "speed", "reward", "perplexity"};
  o.generate.ar = true;
  o.generate.length = 6;
  o.generate.top_p = 0;  // greedy: the copy model repeats the prompt's last token
  o.generate.reward_model = w.reward;
  o.perplexity_model = w.copy_ar;
  o.progress = false;
  auto r = tess::eval::evaluate(o);
  const auto& m = r.report["metrics"];
  REQUIRE(r.generations.size() == 2);
  // The copy model repeats the prompt's last token, the template's newline:
  // both answers are whitespace, so nothing matches and no word n-gram exists.
  for (const auto& g : r.generations) {
    INFO(g.answer);
    CHECK(g.output.find_first_not_of(" \n") == std::string::npos);
    CHECK(g.tokens.size() == 6);
  }
  CHECK(m["exact_match"].get<double>() == 0.0);
  CHECK(m["exact_match_n"].get<int64_t>() == 2);
  CHECK(m["exact_match_by_task"]["echo"]["n"].get<int64_t>() == 1);
  CHECK(m["exact_match_by_task"]["story"]["n"].get<int64_t>() == 1);
  CHECK(m["dist_2"].get<double>() == 0.0);
  CHECK(m["tokens_per_s"].get<double>() > 0);
  // The reward: the mean of the reward model's scores of prompt + answer +
  // EOS, the scores computed by HF transformers' sequence classifier.
  auto tok = tess::data::load_tokenizer(w.copy_ar);
  std::string rows;
  const char* prompts[] = {"sun sun", "the dog"};
  for (size_t i = 0; i < 2; ++i) {
    auto ids = tess::data::encode_prompt(*tok, prompts[i]);
    std::vector<int64_t> row(ids.begin(), ids.end());
    row.insert(row.end(), r.generations[i].tokens.begin(), r.generations[i].tokens.end());
    row.push_back(tok->eos_id());
    rows += i ? ";" : "";
    for (size_t j = 0; j < row.size(); ++j) rows += (j ? "," : "") + std::to_string(row[j]);
  }
  auto scores = dir / "scores.safetensors";
  auto hf = run_script("tests/tools/hf_reference.py", "reward " + q(w.reward) + " '" + rows + "' " + q(scores));
  INFO(hf.err);
  REQUIRE(hf.exit_code == 0);
  auto want = tess::model::SafetensorsFile(scores).load("scores").mean().item<double>();
  CHECK(m["reward"].get<double>() == Approx(want).margin(1e-4));
  // The copy model is far more confident about its own greedy output than an
  // untrained model is.
  CHECK(m["perplexity"].get<double>() >= 1.0);
  auto other = o;
  other.metrics = {"perplexity"};
  other.perplexity_model = w.ar;
  auto untrained = tess::eval::evaluate(other).report["metrics"]["perplexity"].get<double>();
  CHECK(m["perplexity"].get<double>() * 5 < untrained);
  CHECK(r.report["settings"]["kind"] == "ar");

  auto table = tess::eval::format_reports({r.report}, "");
  CHECK_THAT(table, Contains("exact_match") && Contains("exact match per task") && Contains("echo"));

  o.metrics = {"perplexity"};
  o.perplexity_model.clear();
  CHECK_THAT(error_of([&] { tess::eval::evaluate(o); }), Contains("--perplexity-model"));
}

TEST_CASE("tess eval --sweep steps writes one report per value, a table and an SVG plot", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  auto out = dir / "sweep.json";
  auto r = run_tess(fmt::format("eval --model {} --data {} --metrics exact_match,diversity,speed --length 8 "
                                "--sweep steps=2,4 --output {} --samples {}",
                                q(w.diffusion), q(data), q(out), q(dir / "samples.jsonl")));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("steps") && Contains("exact_match") && Contains("sweep.svg"));
  auto doc = nlohmann::json::parse(tess::test::read_file(out));
  REQUIRE(doc["reports"].size() == 2);
  CHECK(doc["reports"][0]["settings"]["steps"] == 2);
  CHECK(doc["reports"][1]["settings"]["steps"] == 4);
  auto svg = tess::test::read_file(dir / "sweep.svg");
  CHECK_THAT(svg, Contains("<svg") && Contains("exact_match") && Contains("polyline"));
  CHECK(std::count(svg.begin(), svg.end(), '\n') > 10);
  auto samples = tess::test::read_file(dir / "samples.jsonl");
  CHECK(std::count(samples.begin(), samples.end(), '\n') == 4);
}

TEST_CASE("tess eval --adaptive reports the mean steps taken, within eval.steps", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  auto out = dir / "adaptive.json";
  auto r = run_tess(fmt::format("eval --model {} --data {} --metrics exact_match,speed --length 6 --steps 10 "
                                "--adaptive --stable-steps 1 --margin 0 --output {}",
                                q(w.diffusion), q(data), q(out)));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto report = nlohmann::json::parse(tess::test::read_file(out));
  CHECK(report["settings"]["adaptive"]["stable_steps"] == 1);
  double mean = report["metrics"]["mean_steps"].get<double>();
  CHECK(mean >= 2);
  CHECK(mean <= 10);
  auto fixed = run_tess(fmt::format("eval --model {} --data {} --metrics speed --length 6 --steps 10 --output {}",
                                    q(w.diffusion), q(data), q(dir / "fixed.json")));
  REQUIRE(fixed.exit_code == 0);
  CHECK(nlohmann::json::parse(tess::test::read_file(dir / "fixed.json"))["metrics"]["mean_steps"] == 10);
  // Freezing: settled positions counted per prompt, in the report and the samples.
  auto frozen = run_tess(fmt::format("eval --model {} --data {} --metrics speed --length 6 --steps 10 --freeze "
                                     "--stable-steps 1 --margin 0 --output {} --samples {}",
                                     q(w.diffusion), q(data), q(dir / "frozen.json"), q(dir / "frozen.jsonl")));
  INFO(frozen.err);
  REQUIRE(frozen.exit_code == 0);
  auto fr = nlohmann::json::parse(tess::test::read_file(dir / "frozen.json"));
  CHECK(fr["settings"]["freeze"]["stable_steps"] == 1);
  double mean_frozen = fr["metrics"]["mean_frozen"].get<double>();
  CHECK(mean_frozen > 0);  // margin 0: every position whose argmax held one step freezes
  CHECK(mean_frozen <= 6);
  CHECK_THAT(tess::test::read_file(dir / "frozen.jsonl"), Contains("\"frozen\":"));
}

TEST_CASE("tess eval: errors name the flag, the file and what was expected", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  auto r = run_tess(fmt::format("eval --model {} --data {} --metrics bleu", q(w.diffusion), q(data)));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("--metrics bleu") && Contains("eval.metrics") && Contains("exact_match, multiple_choice"));
  r = run_tess(fmt::format("eval --model {} --data {}", q(w.diffusion), q(dir / "missing.jsonl")));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("missing.jsonl") && Contains("does not exist"));
  r = run_tess(fmt::format("eval --model {} --data {} --guidance-scale 0.5", q(w.diffusion), q(data)));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("--reward-model"));
  // A reward model must share the model's tokenizer.
  r = run_tess(fmt::format("eval --model {} --data {} --metrics reward --reward-model {}", q(w.diffusion), q(data),
                           q(w.ar)));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("not a reward model"));
  // A reward model with another tokenizer (one more added token) is refused
  // before any sampling, naming both directories.
  auto other = dir / "other_rm";
  fs::copy(w.reward, other);
  auto tok = tess::data::load_tokenizer(other);
  tok->add_special_token("[SEP]", false);
  tok->save(other);
  r = run_tess(fmt::format("eval --model {} --data {} --metrics exact_match --reward-model {} --guidance-scale 1",
                           q(w.diffusion), q(data), q(other)));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("different tokenizer") && Contains("other_rm"));
}

// Used to: a missing --reward-model, an AR model given as the reward model or
// an unwritable --output surfaced only after all the sampling. Here sampling
// would take minutes (100,000 steps), so an error that comes after it hits
// the `timeout` (exit 124) instead of exit 1.
TEST_CASE("tess eval checks every input and output before the first forward", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  auto eval = [&](const std::string& args) {
    return tess::test::run_command(fmt::format("timeout 60 '{}' eval --model {} --data {} --steps 100000 --length 8 {}",
                                               TESS_BINARY, q(w.diffusion), q(data), args));
  };
  auto r = eval("--metrics reward");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("the reward metric needs --reward-model DIR"));
  r = eval("--metrics reward --reward-model " + q(w.ar));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains(w.ar.string() + ": not a reward model"));
  r = eval("--metrics perplexity");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("--perplexity-model"));
  r = eval("--metrics exact_match,multiple_choice");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains(data.string() + ":1: multiple_choice needs"));
  r = eval("--metrics exact_match --output " + q(dir / "no/such/dir/report.json"));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("cannot write report (--output) '" + (dir / "no/such/dir/report.json").string() +
                             "': the directory '" + (dir / "no/such/dir").string() + "' does not exist"));
  r = eval("--metrics exact_match --samples " + q(dir.path()));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("cannot write samples (--samples)") && Contains("it is a directory"));
}

TEST_CASE("tess eval CONFIG: eval.* keys of a run config, the run's final model, flags override", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  // A run directory whose final/ is the workspace's diffusion model.
  fs::create_directories(dir / "run");
  fs::copy(w.diffusion, dir / "run/final", fs::copy_options::recursive);
  auto cfg = dir.write("instruction.yaml", fmt::format(R"(run:
  stage: instruction
  dir: {}
train:
  lr: 1.0e-3
eval:
  data: {}
  metrics: [exact_match, diversity]
  steps: 3
  span_length: 8
  top_p: 0
  output: {}
)",
                                                       (dir / "run").string(), data.string(),
                                                       (dir / "report.json").string()));
  auto r = run_tess("eval " + q(cfg));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto report = nlohmann::json::parse(tess::test::read_file(dir / "report.json"));
  CHECK(report["settings"]["model"] == (dir / "run/final").string());
  CHECK(report["settings"]["steps"] == 3);
  CHECK(report["metrics"].contains("exact_match"));
  CHECK(report["metrics"].contains("dist_1"));
  CHECK_FALSE(report["metrics"].contains("tokens_per_s"));

  // --set, then flags override the file.
  r = run_tess("eval " + q(cfg) + " --set eval.steps=2 --length 5 --metrics exact_match");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  report = nlohmann::json::parse(tess::test::read_file(dir / "report.json"));
  CHECK(report["settings"]["steps"] == 2);
  CHECK(report["settings"]["length"] == 5);
  CHECK_FALSE(report["metrics"].contains("dist_1"));

  // Errors name the file and line, the flag, or the missing model.
  auto typo = dir.write("typo.yaml", "eval:\n  data: x.jsonl\n  stepz: 3\n");
  r = run_tess("eval " + q(typo) + " --model " + q(w.diffusion));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("typo.yaml:3") && Contains("eval.stepz"));
  r = run_tess("eval " + q(cfg) + " --steps 0");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("--steps 0") && Contains("eval.steps"));
  r = run_tess("eval " + q(cfg) + " --set train.lr=1");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("only eval.* keys"));
  auto no_run = dir.write("no_run.yaml", "run:\n  dir: " + (dir / "nowhere").string() + "\neval:\n  data: x.jsonl\n");
  r = run_tess("eval " + q(no_run));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("nowhere/final") && Contains("does not exist"));
  r = run_tess("eval --data " + q(data));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("--model"));
}

TEST_CASE("scripts/eval_summary.py tables an example's reports, with whole-word answer matches as 'contains'",
          "[integration][eval]") {
  tess::test::TempDir dir;
  fs::create_directories(dir / "eval");
  auto write = [&](const std::string& name, const std::string& text) { std::ofstream(dir / "eval" / name) << text; };
  auto report = [](const char* kind, int steps, double exact) {
    nlohmann::json s{{"kind", kind}};
    if (steps) s["steps"] = steps;
    return nlohmann::json{{"settings", s},
                          {"metrics",
                           {{"exact_match", exact},
                            {"exact_match_n", 2},
                            {"exact_match_by_task", {{"counting", {{"exact_match", exact}, {"n", 2}}}}},
                            {"tokens_per_s", 10.0}}}};
  };
  write("adapted.json", nlohmann::json{{"reports", {report("diffusion", 8, 0.5), report("diffusion", 32, 1.0)}}}.dump());
  // "2" inside "25" is not the answer; "it is 2." holds it as a word.
  write("adapted_samples.jsonl", R"({"answer":"2","output":"25","steps":8,"task":"counting"}
{"answer":"2","output":"it is 2.","steps":8,"task":"counting"}
{"answer":"2","output":"2","steps":32,"task":"counting"}
{"answer":"Two  Words","output":"two words","steps":32,"task":"counting"}
)");
  write("ar.json", report("ar", 0, 0.0).dump());
  write("ar_samples.jsonl", R"({"answer":"79","output":"The value of bamboo is 79.","steps":7,"task":"counting"}
{"answer":"2","output":"I think 3","steps":3,"task":"counting"}
)");
  auto adaptive = report("diffusion", 32, 1.0);
  adaptive["settings"]["adaptive"] = true;
  adaptive["metrics"]["mean_steps"] = 9.25;
  write("adapted_adaptive.json", adaptive.dump());
  write("ar_tuned.json", report("ar", 0, 1.0).dump());
  // The stage-1 validation curve is listed step by step.
  fs::create_directories(dir / "adaptation");
  std::ofstream(dir / "adaptation" / "metrics.jsonl") << R"({"step":10,"loss":7.5}
{"step":20,"validation_loss":7.25,"validation_tokens":512}
{"step":40,"loss":7.0}
{"step":40,"validation_loss":7.125,"validation_tokens":512}
)";
  auto t = run_script("scripts/eval_summary.py", q(dir.path()) + " --example smollm2 --markdown");
  INFO(t.out << t.err);
  REQUIRE(t.exit_code == 0);
  CHECK_THAT(t.out, Contains("| (a) SmolLM2 adapted + tuned | 8 | 0.500 | 0.50 | 0.500 |"));
  CHECK_THAT(t.out, Contains("| (a) SmolLM2 adapted + tuned | 32 | 1.000 | 1.00 | 1.000 |"));
  CHECK_THAT(t.out, Contains("| (a) adaptive stop | <=32 (mean 9.2) | 1.000 |"));
  CHECK_THAT(t.out, Contains("| (c) SmolLM2-Instruct (AR) | AR | 0.000 | 0.00 | 0.500 |"));
  CHECK_THAT(t.out, Contains("| (d) SmolLM2 kept AR, tuned | AR | 1.000 |"));
  CHECK_THAT(t.out, Contains("row '(b) same shape, tuned from scratch' left out"));
  CHECK_THAT(t.out, Contains("adaptation           7.0000 / 7.1250"));
  CHECK_THAT(t.out, Contains("20: 7.250  40: 7.125"));
}

TEST_CASE("scripts/speed_quality_plot.py puts one point per setting of eval reports and bench grids",
          "[integration][eval]") {
  tess::test::TempDir dir;
  auto report = [](nlohmann::json settings, double exact, double tps) {
    return nlohmann::json{{"settings", settings},
                          {"metrics", {{"exact_match", exact}, {"answer_tokens_per_s", tps}, {"mean_steps", 6.25}}}};
  };
  auto ar = dir.write("ar.json", report({{"kind", "ar"}}, 0.5, 70.0).dump());
  auto sweep = dir.write(
      "sweep.json", nlohmann::json{{"reports",
                                    {report({{"kind", "diffusion"}, {"steps", 8}}, 0.25, 5.0),
                                     report({{"kind", "diffusion"},
                                             {"steps", 32},
                                             {"adaptive", {{"margin", 0.0}, {"stable_steps", 1}}},
                                             {"cache_refresh", 4}},
                                            0.125, 8.0)}}}
                        .dump());
  auto grid = dir.write("grid.json", nlohmann::json{{"rows",
                                                     {{{"batch", 1},
                                                       {"setting", "fixed 8"},
                                                       {"exact_match", 0.1},
                                                       {"answer_tokens_per_s", 300.0}}}}}
                                         .dump());
  auto plot = [&](const std::string& files) {
    return run_script("scripts/speed_quality_plot.py", q(dir / "plot.svg") + " " + files);
  };
  auto r = plot(q(ar) + " " + q(sweep) + " " + q(grid));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto svg = tess::test::read_file(dir / "plot.svg");
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (auto at = svg.find(needle); at != std::string::npos; at = svg.find(needle, at + 1)) ++n;
    return n;
  };
  CHECK(count("<circle") == 4 + 3);  // the points, then one legend dot per file / batch
  CHECK_THAT(svg, Contains("<title>AR: 70.0 tok/s, exact 0.500</title>"));
  CHECK_THAT(svg, Contains("<title>fixed 8: 5.0 tok/s, exact 0.250</title>"));
  CHECK_THAT(svg, Contains("<title>adaptive &lt;=32 (6.2) + cache r=4: 8.0 tok/s, exact 0.125</title>"));
  CHECK_THAT(svg, Contains("<title>b1 fixed 8: 300.0 tok/s, exact 0.100</title>"));
  // A report without the speed metric has no point to give: an error, not an empty plot.
  auto bare = dir.write("bare.json", nlohmann::json{{"settings", {{"steps", 8}}}, {"metrics", {{"exact_match", 0.5}}}}.dump());
  auto e = plot(q(bare));
  CHECK(e.exit_code != 0);
  CHECK_THAT(e.err, Contains("exact_match,speed"));
}

TEST_CASE("tess eval --cache-refresh: 1 writes the uncached answers, larger intervals are reported and still answer",
          "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  auto run = [&](const std::string& extra, const std::string& name) {
    auto r = run_tess(fmt::format("eval --model {} --data {} --metrics exact_match,speed --length 6 --steps 6 "
                                  "--top-p 0 {} --output {} --samples {}",
                                  q(w.diffusion), q(data), extra, q(dir / (name + ".json")),
                                  q(dir / (name + ".jsonl"))));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return std::pair{nlohmann::json::parse(tess::test::read_file(dir / (name + ".json"))),
                     tess::test::read_file(dir / (name + ".jsonl"))};
  };
  auto [plain, plain_samples] = run("", "plain");
  auto [exact, exact_samples] = run("--cache-refresh 1", "exact");
  auto [cached, cached_samples] = run("--cache-refresh 3 --adaptive", "cached");
  auto outputs = [](const std::string& jsonl) {
    std::vector<std::string> out;
    std::istringstream in(jsonl);
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)["output"]);
    return out;
  };
  CHECK(outputs(exact_samples) == outputs(plain_samples));
  CHECK(outputs(plain_samples).size() == 2);
  CHECK(exact["settings"]["cache_refresh"] == 1);
  CHECK(exact["metrics"]["span_only_passes"] == 0);
  CHECK(plain["metrics"]["full_passes"] == 6);  // one batch of two prompts, 6 steps
  CHECK_FALSE(plain["settings"].contains("cache_refresh"));
  CHECK(cached["settings"]["cache_refresh"] == 3);
  CHECK(cached["metrics"]["span_only_passes"].get<int64_t>() > 0);  // the cache reached the sampler
  CHECK(std::count(cached_samples.begin(), cached_samples.end(), '\n') == 2);
  CHECK(cached["metrics"]["answer_tokens_per_s"].get<double>() >= 0);
  auto bad = run_tess(fmt::format("eval --model {} --data {} --cache-refresh -2", q(w.diffusion), q(data)));
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Contains("sample.cache_refresh") && Contains("--cache-refresh"));
}

TEST_CASE("tess bench sample --config runs each sampler setting through tess eval beside AR at each batch size",
          "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto data = answer_file(dir);
  auto cfg = dir.write("eval.yaml", fmt::format("eval:\n  model: {}\n  data: {}\n  span_length: 6\n  top_p: 0\n",
                                                w.diffusion.string(), data.string()));
  auto r = run_tess(fmt::format("bench sample --smoke --threads 1 --json --config {} --ar-model {}", q(cfg), q(w.ar)));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, Contains("vs AR") && Contains("adaptive + cache r=4"));
  auto g = nlohmann::json::parse(r.out)["sample_grid"];
  CHECK(g["prompts"] == 2);
  std::map<int64_t, double> ar_seconds;
  int diffusion_rows = 0;
  for (const auto& row : g["rows"]) {
    INFO(row.dump());
    double em = row["exact_match"].get<double>();
    CHECK(em >= 0);
    CHECK(em <= 1);
    if (row["setting"] == "AR (KV cache)") {
      ar_seconds[row["batch"].get<int64_t>()] = row["seconds"].get<double>();
      continue;
    }
    ++diffusion_rows;
    REQUIRE(ar_seconds.count(row["batch"].get<int64_t>()));
    CHECK(row["speedup_vs_ar"].get<double>() ==
          Approx(ar_seconds[row["batch"].get<int64_t>()] / row["seconds"].get<double>()));
    CHECK(row["mean_steps"].get<double>() <= 4);
    if (row["setting"].get<std::string>().find("margin 0") != std::string::npos)
      CHECK((row["margin"] == 0.0 && row["stable_steps"] == 1));
    CHECK(row["answer_tokens_per_s"].get<double>() ==
          Approx(row["answer_tokens"].get<double>() / row["seconds"].get<double>()));
  }
  CHECK(ar_seconds.size() == 2);  // batch 1 and 2 in smoke mode
  // fixed 8 (at 4 steps), adaptive, adaptive + cache r=4 and r=8, adaptive stable 1 margin 0 (+ cache r=4)
  CHECK(diffusion_rows == 2 * 6);
  auto no_ar = run_tess(fmt::format("bench sample --smoke --config {}", q(cfg)));
  CHECK(no_ar.exit_code != 0);
  CHECK_THAT(no_ar.err, Contains("--ar-model"));
}
