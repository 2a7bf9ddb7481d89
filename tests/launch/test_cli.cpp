#include <catch2/catch.hpp>

#include <filesystem>

#include <nlohmann/json.hpp>

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

TEST_CASE("tess model init --like: the shape and tokenizer of a model, fresh weights", "[unit][cli]") {
  tess::test::TempDir dir;
  auto like = dir.path() / "like";
  std::filesystem::create_directories(like);
  std::filesystem::copy(std::string(TESS_TEST_DATA) + "/hf_tiny/llama/config.json", like / "config.json");
  std::filesystem::copy(std::string(TESS_TEST_DATA) + "/bpe/smollm/tokenizer.json", like / "tokenizer.json");
  std::filesystem::copy(std::string(TESS_TEST_DATA) + "/bpe/smollm/tokenizer_config.json", like / "tokenizer_config.json");
  auto out = dir.path() / "fresh";
  auto r = run_tess("model init --like " + like.string() + " --seed 3 --output " + out.string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("like-shaped"));
  auto a = nlohmann::json::parse(tess::test::read_file(like / "config.json"));
  auto b = nlohmann::json::parse(tess::test::read_file(out / "config.json"));
  for (const char* k : {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"})
    CHECK(a[k] == b[k]);
  CHECK(std::filesystem::exists(out / "tokenizer.json"));
  CHECK(run_tess("model init --like " + like.string() + " --preset tiny --output " + (dir.path() / "x").string())
            .exit_code != 0);
}
