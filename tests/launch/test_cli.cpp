#include <catch2/catch.hpp>

#include "core/config/config.h"
#include "tests/support/test_support.h"

using tess::test::run_tess;
using Catch::Matchers::Contains;

TEST_CASE("tess --version names the version, the commit and LibTorch", "[unit][cli]") {
  auto r = run_tess("--version");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("tess 0.1.0 (git "));
  CHECK_THAT(r.out, Contains("LibTorch 2."));
}

TEST_CASE("every subcommand has --help", "[unit][cli]") {
  for (const char* cmd : {"train", "generate", "eval", "tokenize", "launch", "config", "checkpoint",
                          "bench", "model", "debug", "convert", "plan"}) {
    INFO(cmd);
    auto r = run_tess(std::string(cmd) + " --help");
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Contains("Usage:") || Contains("usage:"));
  }
}

TEST_CASE("unknown options and subcommands are errors", "[unit][cli]") {
  auto r = run_tess("--frobnicate");
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("--frobnicate"));
  auto s = run_tess("config dump x.yaml --nope");
  CHECK(s.exit_code != 0);
  CHECK_THAT(s.err, Contains("--nope"));
  auto none = run_tess("");
  CHECK(none.exit_code != 0);
}

TEST_CASE("config dump prints re-loadable YAML with the config hash", "[unit][cli]") {
  tess::test::TempDir dir;
  auto file = dir.write("c.yaml", "run:\n  stage: adaptation\ntrain:\n  lr: 2.0e-5\n");
  auto r = run_tess("config dump " + file.string() + " --set train.batch_size=3 --set run.seed=9");
  REQUIRE(r.exit_code == 0);
  auto expected = tess::config::Config::load(file, {"train.batch_size=3", "run.seed=9"});
  CHECK_THAT(r.out, Contains("hash " + expected.hash()));
  auto dumped = dir.write("dumped.yaml", r.out);
  CHECK(tess::config::Config::load(dumped).hash() == expected.hash());
}

TEST_CASE("a config typo fails the CLI with file:line:col and a suggestion", "[unit][cli]") {
  tess::test::TempDir dir;
  auto file = dir.write("t.yaml", "run:\n  stage: ar\ntrain:\n  batch_sise: 4\n");
  auto r = run_tess("config dump " + file.string());
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains(file.string() + ":4:3: unknown key 'train.batch_sise' (did you mean 'train.batch_size'?)"));
}

TEST_CASE("config docs --check detects a stale reference", "[unit][cli]") {
  tess::test::TempDir dir;
  auto docs = dir / "configs.md";
  REQUIRE(run_tess("config docs --output " + docs.string()).exit_code == 0);
  CHECK(run_tess("config docs --check --output " + docs.string()).exit_code == 0);
  dir.write("configs.md", "stale\n");
  auto r = run_tess("config docs --check --output " + docs.string());
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("stale"));
}

TEST_CASE("subcommands that have not landed say so and fail", "[unit][cli]") {
  auto r = run_tess("bench peak");
  CHECK(r.exit_code == 3);
  CHECK_THAT(r.err, Contains("not implemented yet"));
}
