// tess bench: the case names and the JSON reports of the smoke runs (the FLOP
// count is train/flops.h's, tested in tests/train). Never a timing assertion.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "launch/bench/bench.h"
#include "tests/support/test_support.h"

using namespace tess::bench;
using Catch::Matchers::Contains;
using tess::test::run_tess;

namespace {

nlohmann::json parse_stdout(const tess::test::CommandResult& r) {
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out);
}

}  // namespace

TEST_CASE("bench cases and presets are checked by name", "[unit][bench]") {
  auto c = TrainCase::parse("medium/instruction/bf16");
  CHECK(c.preset == "medium");
  CHECK(c.stage == tess::config::RunStage::Instruction);
  CHECK(c.id() == "medium/instruction/bf16");
  CHECK_THAT(tess::test::error_of([] { TrainCase::parse("small/adaptation"); }), Contains("PRESET/STAGE/PRECISION"));
  CHECK_THAT(tess::test::error_of([] { TrainCase::parse("huge/ar/fp32"); }), Contains("unknown bench preset 'huge'"));
  CHECK_THAT(tess::test::error_of([] { TrainCase::parse("small/ar/fp16"); }), Contains("fp32 or bf16"));
  auto m = train_preset("medium", false);
  CHECK(m.model.hidden_size == 512);
  CHECK(m.model.num_hidden_layers == 8);
  CHECK(m.model.vocab_size == 32000);
  CHECK(m.seq_len == 512);
}

TEST_CASE("bench peak --smoke --json reports positive GFLOP/s with its threads", "[integration][bench]") {
  auto j = parse_stdout(run_tess("bench peak --smoke --json --threads 1"));
  CHECK(j["machine"]["torch_threads"] == 1);
  CHECK(j["peak"]["threads"] == 1);
  for (const char* p : {"fp32", "bf16"}) {
    INFO(p);
    CHECK(j["peak"][p]["gflops"].get<double>() > 0);
    CHECK(j["peak"][p]["by_size"].size() == 2);
  }
}

TEST_CASE("bench train --smoke --json reports every documented field of each case", "[integration][bench]") {
  auto j = parse_stdout(run_tess("bench train --smoke --json --threads 1 --presets tiny --python " +
                                 tess::test::shell_quote(TESS_PYTHON)));
  REQUIRE(j.contains("train"));
  const auto& cases = j["train"]["cases"];
  REQUIRE(cases.size() == 6);  // ar, adaptation, instruction x fp32, bf16
  int measured = 0;
  for (const auto& c : cases) {
    INFO(c.dump());
    if (c.contains("skipped")) {
      CHECK(c["case"].get<std::string>().find("/bf16") != std::string::npos);
      CHECK_THAT(c["skipped"].get<std::string>(), Contains("not supported by the trainer"));
      continue;
    }
    ++measured;
    for (const char* k : {"step_s", "tokens_per_s", "achieved_gflops", "peak_gflops", "mfu", "peak_rss_bytes",
                          "state_bytes", "plan_bytes", "rss_over_plan"})
      CHECK(c[k].get<double>() > 0);
    CHECK(c["threads"] == 1);
    CHECK(c["flops_per_step"]["total"].get<double>() > 0);
    // Every timed step is reported; the spread is over pairs of one step of each kind.
    REQUIRE(c["step_times_s"].size() == static_cast<size_t>(c["steps"].get<int>()));
    double sum = 0;
    for (const auto& t : c["step_times_s"]) sum += t.get<double>();
    CHECK(c["step_s"].get<double>() == Approx(sum / c["steps"].get<int>()));
    CHECK(c["pair_spread"].get<double>() >= 0);
    // The memory figures are the training steps'; the save buffers come after.
    if (c.contains("save_in_flight"))
      CHECK(c["save_in_flight"]["peak_rss_bytes"].get<int64_t>() >= c["peak_rss_bytes"].get<int64_t>());
    for (const char* k : {"data", "forward", "backward", "optimizer"}) CHECK(c["breakdown_s"][k].get<double>() > 0);
    if (c["stage"] != "ar") {
      CHECK(c["span_tokens"].get<int64_t>() > 0);
      CHECK(c["breakdown_s"]["noise"].get<double>() > 0);
      // The stage's own coin decides (diffusion.self_condition_prob 0.5): the
      // rate is what ran, its time and FLOPs follow it.
      double rate = c["self_condition_rate"].get<double>();
      CHECK(rate >= 0);
      CHECK(rate <= 1);
      CHECK((c["breakdown_s"]["self_condition"].get<double>() > 0) == (rate > 0));
      CHECK((c["flops_per_step"]["self_condition"].get<double>() > 0) == (rate > 0));
    }
    REQUIRE(c.contains("eager"));
    CHECK(c["eager"]["step_s"].get<double>() > 0);
    CHECK(c["eager_over_tess"].get<double>() > 0);
  }
  CHECK(measured == 6);  // bf16 cases run under the trainer's bf16 autocast
}

TEST_CASE("bench all --smoke writes one report that scripts/bench_tables.py turns into the doc's tables",
          "[integration][bench]") {
  tess::test::TempDir dir;
  auto out = dir / "bench.json";
  auto r = run_tess("bench all --smoke --presets tiny --no-eager --threads 1 --output " +
                    tess::test::shell_quote(out.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto t = tess::test::run_command(tess::test::shell_quote(TESS_PYTHON) + " " +
                                   tess::test::shell_quote(std::string(TESS_SOURCE_DIR) + "/scripts/bench_tables.py") +
                                   " " + tess::test::shell_quote(out.string()));
  INFO(t.err);
  REQUIRE(t.exit_code == 0);
  for (const char* part : {"| **best** |", "| tiny/adaptation/fp32 | ",
                           "| steps | seconds | tokens/s | diffusion / AR |", "Checkpoint weights:",
                           "Dist two_processes_overlapped:", "Efficiency "})
    CHECK_THAT(t.out, Contains(part));
}

TEST_CASE("bench rejects an unknown case", "[integration][bench]") {
  auto r = run_tess("bench train --case tiny/pretrain/fp32");
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("unknown training stage 'pretrain'"));
}

TEST_CASE("bench sample and checkpoint --smoke --json report the curve and the save stalls", "[integration][bench]") {
  auto s = parse_stdout(run_tess("bench sample --smoke --json --threads 1"));
  CHECK(s["sample"]["ar"]["tokens_per_s"].get<double>() > 0);
  REQUIRE(s["sample"]["diffusion"].size() == 2);
  for (const auto& point : s["sample"]["diffusion"]) {
    CHECK(point["tokens_per_s"].get<double>() > 0);
    CHECK(point["speedup_vs_ar"].get<double>() ==
          Approx(point["tokens_per_s"].get<double>() / s["sample"]["ar"]["tokens_per_s"].get<double>()));
  }
  // One step's breakdown: the forward's FLOPs at batch 1 (prompt 8 + span 16 of the small preset).
  const auto& st = s["sample"]["step"];
  for (const char* k : {"forward_s", "choose_top_p_s", "choose_argmax_s", "renoise_s"}) CHECK(st[k].get<double>() > 0);
  CHECK(st["forward_achieved_gflops"].get<double>() ==
        Approx(st["forward_gflops"].get<double>() / st["forward_s"].get<double>()));
  // The prompt cache at a prompt twice the span: a full pass against a span-only one, and whole samplings.
  const auto& pc = s["sample"]["prompt_cache"];
  CHECK(pc["prompt_tokens"].get<int64_t>() == 2 * pc["span"].get<int64_t>());
  CHECK(pc["span_only_pass_s"].get<double>() > 0);
  CHECK(pc["step_time_saved"].get<double>() ==
        Approx(1.0 - pc["span_only_pass_s"].get<double>() / pc["full_pass_s"].get<double>()));
  REQUIRE(pc["sampling"].size() == 3);
  CHECK(pc["sampling"][1]["cache_refresh"] == 4);
  auto c = parse_stdout(run_tess("bench checkpoint --smoke --json --threads 1"));
  const auto& ck = c["checkpoint"];
  for (const char* k : {"weights", "optimizer_state"}) {
    CHECK(ck[k]["save_gb_per_s"].get<double>() > 0);
    CHECK(ck[k]["load_gb_per_s"].get<double>() > 0);
  }
  // The asynchronous save, timed inside the case's training steps: its
  // snapshot holds the weights and both moments (12 bytes per parameter).
  REQUIRE(ck.contains("async"));
  const auto& as = ck["async"];
  CHECK(as["pairs"].get<int>() == 2);
  int64_t params = 0;
  for (const auto& [name, entry] : ck.items())
    if (name == "weights") params = static_cast<int64_t>(entry["bytes"].get<double>()) / 4;  // + a small header
  CHECK(as["snapshot_bytes"].get<int64_t>() <= 3 * params * 4);
  CHECK(as["snapshot_bytes"].get<int64_t>() > 3 * params * 4 * 9 / 10);
  CHECK(as["step_s"].get<double>() > 0);
  CHECK(as["copy_wait_s"].get<double>() >= 0);
  CHECK(as["copy_wait_s"].get<double>() < as["step_s"].get<double>());
  CHECK(as["plain_step_s"].get<double>() > 0);
  CHECK(ck["async_stall_in_steps"].get<double>() ==
        Approx((as["step_s"].get<double>() - as["plain_step_s"].get<double>()) / as["plain_step_s"].get<double>()));
}
