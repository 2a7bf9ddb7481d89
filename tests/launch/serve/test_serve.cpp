// `tess serve` end to end, with clients nobody here wrote: each check is a
// Python script in this folder that starts the real binary on a tiny model
// (tests/eval/workspace.h), talks to it, and stops it with SIGTERM (exit 0
// expected). The scripts' packages (openai, lm_eval, selenium, requests) and
// Chromium come from scripts/setup.sh.
#include <filesystem>

#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "launch/serve/server.h"
#include "tests/eval/workspace.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using tess::test::run_command;
using tess::test::shell_quote;

namespace {

fs::path script_dir() { return fs::path(TESS_TEST_DATA).parent_path() / "launch" / "serve"; }

// Persistent output (screenshots, lm-eval logs) under the build's test-output/serve.
fs::path output_dir(const std::string& name) {
  auto d = fs::current_path() / "test-output" / "serve" / name;
  fs::create_directories(d);
  return d;
}

void run_check(const std::string& script, const std::string& extra = "") {
  auto& w = tess::test::workspace();
  auto r = run_command(fmt::format("{} {} --tess {} --model {} --out {} {} 2>&1", TESS_PYTHON,
                                   shell_quote((script_dir() / script).string()), shell_quote(TESS_BINARY),
                                   shell_quote(w.diffusion.string()), shell_quote(output_dir(script).string()), extra));
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}

}  // namespace

TEST_CASE("the official openai client: models, chat, completion, streaming, steps, n, errors, 429, API key",
          "[integration][serve]") {
  run_check("openai_client_check.py");
}

TEST_CASE("bad input is a 4xx with a clear message and the server keeps serving, and a dropped stream frees its slot",
          "[integration][serve]") {
  run_check("bad_input_check.py");
}

TEST_CASE("lm-eval's local-chat-completions through tess serve gives tess eval's answers and exact match",
          "[integration][serve]") {
  // Held-out chat tasks as the quickstart writes them (same generator and seed, fewer of them).
  tess::test::TempDir data;
  auto r = tess::test::run_tess(fmt::format("tokenize synthetic --output {} --train 6 --test 12 --preferences 0 "
                                            "--tasks addition,sorting,reverse,counting,lookup",
                                            shell_quote(data.path().string())));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  run_check("lm_eval_check.py", "--data " + shell_quote((data / "chat_test.jsonl").string()));
}

TEST_CASE("the page in headless Chromium shows the denoising steps and the API's answer", "[integration][serve]") {
  run_check("page_check.py");
}

TEST_CASE("SIGTERM finishes the accepted requests, refuses new ones and exits 0", "[integration][serve]") {
  run_check("shutdown_check.py");
}

TEST_CASE("tess bench serve: concurrent clients, none lost or answered twice, each answer equal to it alone",
          "[integration][serve]") {
  auto& w = tess::test::workspace();
  tess::test::TempDir dir;
  auto out = dir / "serve.json";
  // 12 clients over a batch of 4 and a queue of 2: some are told 429 and retry.
  auto r = tess::test::run_tess(fmt::format("bench serve --model {} --clients 12 --requests 3 --steps 6 --max-tokens 8 "
                                            "--max-batch 4 --max-queue 2 --output {}",
                                            shell_quote(w.diffusion.string()), shell_quote(out.string())));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(tess::test::read_file(out))["serve"];
  CHECK(j["requests"] == 36);
  CHECK(j["answered"] == 36);
  CHECK(j["failed"] == 0);
  CHECK(j["duplicate_ids"] == 0);
  CHECK(j["mismatched_alone"] == 0);
  CHECK(j["rejected_429"].get<int64_t>() > 0);  // 12 clients > 4 rows + 2 waiting
  CHECK(j["mean_batch_rows"].get<double>() > 1.5);  // requests were batched
  CHECK(j["latency_p99_s"].get<double>() >= j["latency_p50_s"].get<double>());
  CHECK(j["peak_rss_bytes"].get<double>() < 4e9);
  CHECK_THAT(r.out, Catch::Contains("answered 36/36"));
}

TEST_CASE("a port in use is a clear error, not a second server sharing it", "[integration][serve]") {
  auto& w = tess::test::workspace();
  tess::serve::ServeOptions o;
  o.engine.model = w.diffusion;
  o.port = 0;
  tess::serve::Server first(o);
  o.port = first.start();
  tess::serve::Server second(o);
  CHECK_THAT(tess::test::error_of([&] { second.start(); }),
             Catch::Contains(fmt::format("cannot bind 127.0.0.1:{}", o.port)) && Catch::Contains("in use"));
  first.shutdown();
}
