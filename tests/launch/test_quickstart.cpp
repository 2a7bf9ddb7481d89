// The README's first command at its smallest size: the whole recipe (data,
// tokenizer, AR pretraining, stage 1, stage 2, the two baselines, the reward
// model, evaluation with a step sweep and guidance) runs end to end and prints
// the summary table from the reports it wrote.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

TEST_CASE("scripts/quickstart.sh --tiny runs the whole recipe and prints the summary table", "[integration][quickstart]") {
  tess::test::TempDir dir;
  auto r = tess::test::run_command("TESS=" + tess::test::shell_quote(TESS_BINARY) + " bash " +
                                   tess::test::shell_quote(std::string(TESS_SOURCE_DIR) + "/scripts/quickstart.sh") +
                                   " --tiny --no-build --workdir " + tess::test::shell_quote(dir.path().string()));
  INFO(r.out.substr(r.out.size() > 4000 ? r.out.size() - 4000 : 0) << "\n" << r.err.substr(r.err.size() > 4000 ? r.err.size() - 4000 : 0));
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("== Summary") && Contains("(a) adapted + tuned") && Contains("(a) + reward guidance") &&
                        Contains("(a) adaptive stop + prompt cache") && Contains("<=8 (mean") &&
                        Contains("(b) tuned from scratch") && Contains("(c) AR tuned"));
  auto eval = dir.path() / "runs/quickstart/eval";
  auto adapted = nlohmann::json::parse(tess::test::read_file(eval / "adapted.json"));
  CHECK(adapted["sweep"] == "steps");
  CHECK(adapted["reports"].size() == 2);
  CHECK(fs::exists(eval / "adapted.svg"));
  auto guided = nlohmann::json::parse(tess::test::read_file(eval / "adapted_guided.json"));
  CHECK(guided["settings"]["guidance_scale"].get<double>() > 0);
  auto adaptive = nlohmann::json::parse(tess::test::read_file(eval / "adapted_adaptive.json"));
  CHECK(adaptive["settings"]["cache_refresh"] == 4);
  CHECK(adaptive["metrics"]["mean_steps"].get<double>() <= 8);
  for (const char* run : {"ar", "adaptation", "instruction", "instruction_scratch", "ar_instruction", "reward"})
    CHECK(fs::exists(dir.path() / "runs/quickstart" / run / "final" / "config.json"));

  // The serve command it tells the user to try next runs and answers the openai client.
  auto at = r.out.find(" serve --model ");
  REQUIRE(at != std::string::npos);
  auto start = r.out.rfind('\n', at) + 1, end = r.out.find('\n', at);
  auto command = r.out.substr(start, end - start);
  CHECK_THAT(command, Contains("instruction/final") && Contains("--reward-model"));
  // Run where the quickstart ran (its paths are relative to that directory).
  auto smoke = tess::test::run_command("cd " + tess::test::shell_quote(dir.path().string()) + " && " +
                                       std::string(TESS_PYTHON) + " " +
                                       tess::test::shell_quote(std::string(TESS_SOURCE_DIR) +
                                                               "/tests/launch/serve/smoke_check.py") +
                                       " --command " + tess::test::shell_quote(command) + " 2>&1");
  INFO(smoke.out);
  CHECK(smoke.exit_code == 0);
}
