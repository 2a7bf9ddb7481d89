#include <catch2/catch.hpp>

#include "core/config/config.h"
#include "core/util/error.h"
#include "tests/support/test_support.h"

using tess::Error;
using tess::config::Config;
using tess::test::TempDir;
using Catch::Matchers::Contains;

namespace {

// Loads `file` and returns the error message (fails the test if it loads).
std::string load_error(const std::filesystem::path& file, const std::vector<std::string>& sets = {}) {
  try {
    Config::load(file, sets);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a config error for " << file);
  return "";
}

}  // namespace

TEST_CASE("defaults < YAML file < --set overrides", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("run.yaml",
                        "run:\n  stage: adaptation\ntrain:\n  lr: 3.0e-5\n  batch_size: 16\n");
  auto cfg = Config::load(file, {"train.batch_size=32"});
  CHECK(cfg.get_string("run.stage") == "adaptation");
  CHECK(cfg.get_float("train.lr") == 3.0e-5);          // from the file
  CHECK(cfg.get_int("train.batch_size") == 32);        // --set wins over the file
  CHECK(cfg.get_int("train.grad_accum") == 1);         // schema default
  CHECK(cfg.origin("train.lr").where == file.string() + ":4:7");
  CHECK(cfg.origin("train.batch_size").where == "--set train.batch_size=32");
  CHECK(cfg.origin("train.grad_accum").where == "default");
}

TEST_CASE("base: inherits another file, resolved relative to the including file", "[unit][config]") {
  TempDir dir;
  dir.write("recipes/common/base.yaml", "run:\n  stage: instruction\n  seed: 7\ntrain:\n  lr: 1.0e-4\n");
  auto child = dir.write("recipes/child.yaml", "base: common/base.yaml\ntrain:\n  lr: 2.0e-4\n");
  auto cfg = Config::load(child);
  CHECK(cfg.get_string("run.stage") == "instruction");
  CHECK(cfg.get_int("run.seed") == 7);
  CHECK(cfg.get_float("train.lr") == 2.0e-4);  // the child overrides its base
}

TEST_CASE("dotted keys and nested groups address the same key", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("a.yaml", "run.stage: ar\ndata:\n  ul2:\n    objectives: [prefix_lm]\n");
  auto cfg = Config::load(file);
  CHECK(cfg.get_string("run.stage") == "ar");
  CHECK(cfg.get_string_list("data.ul2.objectives") == std::vector<std::string>{"prefix_lm"});
}

TEST_CASE("an unknown key names file:line:col and suggests the closest key", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("typo.yaml", "run:\n  stage: ar\ntrain:\n  batch_size: 4\n  lrr: 1.0e-4\n");
  auto msg = load_error(file);
  CHECK_THAT(msg, Contains(file.string() + ":5:3"));
  CHECK_THAT(msg, Contains("unknown key 'train.lrr'"));
  CHECK_THAT(msg, Contains("did you mean 'train.lr'"));
}

TEST_CASE("a key in the wrong section suggests where it lives", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("wrong.yaml", "run:\n  stage: ar\ndata:\n  grad_clip: 1.0\n");
  auto msg = load_error(file);
  CHECK_THAT(msg, Contains(":4:3"));
  CHECK_THAT(msg, Contains("'train.grad_clip'"));
}

TEST_CASE("a wrong type names the value's position and the expected type", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("type.yaml", "run:\n  stage: ar\ntrain:\n  batch_size: four\n");
  auto msg = load_error(file);
  CHECK_THAT(msg, Contains(file.string() + ":4:15"));
  CHECK_THAT(msg, Contains("'train.batch_size' expects int, got 'four'"));

  auto list = dir.write("list.yaml", "run:\n  stage: ar\ndata:\n  train: shards/\n");
  CHECK_THAT(load_error(list), Contains("expects list of string"));
  auto fractional = dir.write("frac.yaml", "run:\n  stage: ar\ntrain:\n  max_steps: 2.5\n");
  CHECK_THAT(load_error(fractional), Contains("expects int, got '2.5'"));
}

TEST_CASE("an out-of-range value or an unknown choice is rejected with what is allowed", "[unit][config]") {
  TempDir dir;
  auto range = dir.write("range.yaml", "run:\n  stage: ar\ntrain:\n  lr: -1.0\n");
  auto msg = load_error(range);
  CHECK_THAT(msg, Contains(range.string() + ":4:7"));
  CHECK_THAT(msg, Contains("out of range: expected a value > 0"));

  auto choice = dir.write("choice.yaml", "run:\n  stage: pretrain\n");
  msg = load_error(choice);
  CHECK_THAT(msg, Contains(choice.string() + ":2:10"));
  CHECK_THAT(msg, Contains("one of ar, adaptation, instruction, reward"));

  auto prob = dir.write("prob.yaml", "run:\n  stage: ar\ndiffusion:\n  self_condition_prob: 1.5\n");
  CHECK_THAT(load_error(prob), Contains("expected a value >= 0 and <= 1"));
}

// Used to: lr 1e309 (inf), .inf and .nan passed validation.
TEST_CASE("a non-finite float is rejected with file:line whatever the key's range", "[unit][config]") {
  TempDir dir;
  CHECK_THAT(load_error(dir.write("nan.yaml", "run:\n  stage: ar\ntrain:\n  lr: .nan\n")),
             Contains(":4:7: key 'train.lr' expects float, got '.nan'"));
  for (std::string v : {"1e309", ".inf", "-.inf"}) {
    INFO(v);
    auto lr = dir.write("lr.yaml", "run:\n  stage: ar\ntrain:\n  lr: " + v + "\n");
    auto msg = load_error(lr);
    CHECK_THAT(msg, Contains(lr.string() + ":4:7") && Contains("expected a finite value > 0"));
    auto clip = dir.write("clip.yaml", "run:\n  stage: ar\ntrain:\n  grad_clip: " + v + "\n");
    CHECK_THAT(load_error(clip), Contains(clip.string() + ":4:14") && Contains("expected a finite value >= 0"));
  }
  CHECK_THAT(load_error(dir.write("set.yaml", "run:\n  stage: ar\n"), {"train.lr=.inf"}),
             Contains("train.lr") && Contains("a finite value"));
}

TEST_CASE("a missing required key is named with how to set it", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("noreq.yaml", "train:\n  lr: 1.0e-4\n");
  auto msg = load_error(file);
  CHECK_THAT(msg, Contains("missing required key: 'run.stage'"));
  CHECK_THAT(msg, Contains("--set"));
  // ... and --set can supply it.
  CHECK(Config::load(file, {"run.stage=reward"}).get_string("run.stage") == "reward");
}

TEST_CASE("a missing or cyclic base file names the line that includes it", "[unit][config]") {
  TempDir dir;
  auto missing = dir.write("m.yaml", "run:\n  stage: ar\nbase: nowhere.yaml\n");
  auto msg = load_error(missing);
  CHECK_THAT(msg, Contains(missing.string() + ":3:7"));
  CHECK_THAT(msg, Contains("base file"));
  CHECK_THAT(msg, Contains("nowhere.yaml"));
  CHECK_THAT(msg, Contains("not found"));

  dir.write("a.yaml", "base: b.yaml\nrun:\n  stage: ar\n");
  dir.write("b.yaml", "base: a.yaml\n");
  msg = load_error(dir / "a.yaml");
  CHECK_THAT(msg, Contains("cyclic base: a.yaml -> b.yaml -> a.yaml"));
  CHECK_THAT(msg, Contains("b.yaml:1:7"));
}

TEST_CASE("YAML syntax errors and duplicate keys name their position", "[unit][config]") {
  TempDir dir;
  auto syntax = dir.write("s.yaml", "run:\n  stage: [ar\n");
  auto msg = load_error(syntax);
  CHECK_THAT(msg, Contains(syntax.string() + ":"));
  CHECK_THAT(msg, Contains("YAML syntax error"));

  auto dup = dir.write("d.yaml", "run:\n  stage: ar\ntrain:\n  lr: 1.0e-4\n  lr: 2.0e-4\n");
  msg = load_error(dup);
  CHECK_THAT(msg, Contains(dup.string() + ":5:3: duplicate key 'train.lr'"));
  CHECK_THAT(msg, Contains("first set at " + dup.string() + ":4:3"));

  auto section = dir.write("sec.yaml", "run: ar\n");
  CHECK_THAT(load_error(section), Contains("'run' is a section"));
  CHECK_THAT(load_error(dir.path() / "absent.yaml"), Contains("config file"));
}

TEST_CASE("override errors say which --set is wrong", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("ok.yaml", "run:\n  stage: ar\n");
  CHECK_THAT(load_error(file, {"train.lrr=1"}), Contains("--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)"));
  CHECK_THAT(load_error(file, {"train.lr"}), Contains("expected key=value"));
  CHECK_THAT(load_error(file, {"train.lr=abc"}), Contains("--set train.lr=abc: key 'train.lr' expects float"));
  CHECK_THAT(load_error(file, {"train=1"}), Contains("'train' is a section"));
  auto cfg = Config::load(file, {"data.train=[a.jsonl, b.jsonl]", "model.path="});
  CHECK(cfg.get_string_list("data.train") == std::vector<std::string>{"a.jsonl", "b.jsonl"});
  CHECK(cfg.get_string("model.path").empty());
}

TEST_CASE("dump -> reload gives the same values and the same hash", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("full.yaml",
                        "run:\n  stage: instruction\n  name: \"quote \\\" and : colon\"\n"
                        "train:\n  lr: 1.0e-5\n  warmup_ratio: 0.03\n"
                        "data:\n  train: [a.jsonl, \"b c.jsonl\"]\n");
  auto cfg = Config::load(file, {"diffusion.self_condition_prob=0.1", "train.max_steps=123"});
  auto dumped = dir.write("dumped.yaml", cfg.to_yaml(true));
  auto again = Config::load(dumped);
  CHECK(again.hash() == cfg.hash());
  CHECK(again.to_yaml() == cfg.to_yaml());
  CHECK(again.get_string("run.name") == "quote \" and : colon");
  CHECK(again.get_float("diffusion.self_condition_prob") == 0.1);

  // The hash depends on every value.
  auto other = Config::load(file, {"diffusion.self_condition_prob=0.1", "train.max_steps=124"});
  CHECK(other.hash() != cfg.hash());
  CHECK(cfg.hash().size() == 16);
}

TEST_CASE("keys set by the user but never read are reported", "[unit][config]") {
  TempDir dir;
  auto file = dir.write("u.yaml", "run:\n  stage: ar\ntrain:\n  lr: 1.0e-4\n  grad_clip: 0.5\n");
  auto cfg = Config::load(file);
  cfg.get_string("run.stage");
  cfg.get_float("train.lr");
  CHECK(cfg.unused_user_keys() == std::vector<std::string>{"train.grad_clip"});
}

TEST_CASE("every shipped config under configs/ loads (fragments _*.yaml through their users)", "[unit][config]") {
  int loaded = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(std::string(TESS_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".yaml" || entry.path().filename().string().front() == '_') continue;
    INFO(entry.path());
    CHECK_NOTHROW(Config::load(entry.path()));
    ++loaded;
  }
  CHECK(loaded >= 4);
}

// Used to: a second document was ignored, a directory read as "not found",
// and `--set 'run.dir=/tmp/a #b'` lost " #b" to YAML's comment syntax.
TEST_CASE("a second YAML document or a directory as the config is an error and a --set string is kept as typed",
          "[unit][config]") {
  TempDir dir;
  auto two = dir.write("two.yaml", "run:\n  stage: ar\n---\ntrain:\n  lr: 1.0\n");
  CHECK_THAT(load_error(two), Contains(two.string() + ":4:1: a second YAML document"));
  std::filesystem::create_directories(dir / "configs.d");
  CHECK_THAT(load_error(dir / "configs.d"), Contains("config file '" + (dir / "configs.d").string() +
                                                     "' is a directory, not a YAML file"));
  auto ok = dir.write("ok.yaml", "run:\n  stage: ar\n");
  auto cfg = Config::load(ok, {"run.dir=/tmp/a #b", "run.name=it's", "log.level=\"warn\""});
  CHECK(cfg.get_string("run.dir") == "/tmp/a #b");
  CHECK(cfg.get_string("run.name") == "it's");
  CHECK(cfg.get_string("log.level") == "warn");  // quoted: read as YAML
}
