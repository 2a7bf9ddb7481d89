#include <catch2/catch.hpp>

#include "core/config/config.h"
#include "core/config/schema.h"
#include "tests/support/test_support.h"

using namespace tess::config;

TEST_CASE("docs/configs.md is generated from the current schema", "[unit][config]") {
  auto committed = tess::test::read_file(std::string(TESS_SOURCE_DIR) + "/docs/configs.md");
  INFO("regenerate with: build/launch/tess config docs --output docs/configs.md");
  CHECK(committed == render_markdown(schema()));
}

TEST_CASE("every key is documented, in a declared section, with a default inside its own range",
          "[unit][config]") {
  const auto& s = schema();
  for (const char* section : {"run", "model", "data", "diffusion", "train", "dist", "checkpoint", "eval", "log"}) {
    bool declared = false;
    for (const auto& sec : s.sections()) declared |= sec.name == section;
    CHECK(declared);
  }
  for (const auto& k : s.keys()) {
    INFO(k.key);
    CHECK(!k.doc.empty());
    if (k.default_value) {
      CHECK(k.check(*k.default_value).empty());
      CHECK(type_of(*k.default_value) == k.type);
    }
  }
}

TEST_CASE("values format as YAML that reads back identically", "[unit][config]") {
  CHECK(format_value(Value(1e-5)) == "1e-05");
  CHECK(format_value(Value(3.0)) == "3.0");
  CHECK(format_value(Value(0.1)) == "0.1");
  CHECK(format_value(Value(int64_t{42})) == "42");
  CHECK(format_value(Value(true)) == "true");
  CHECK(format_value(Value(std::string("a\"b"))) == "\"a\\\"b\"");
  CHECK(format_value(Value(std::vector<double>{0.5, 2.0})) == "[0.5, 2.0]");
}

TEST_CASE("suggestions prefer the closest key", "[unit][config]") {
  const auto& s = schema();
  CHECK(s.suggest("train.lrr") == std::vector<std::string>{"train.lr"});
  CHECK(s.suggest("diffusion.timestep") == std::vector<std::string>{"diffusion.timesteps"});
  CHECK(s.suggest("zzzz.qqqqqqqq").empty());
}
