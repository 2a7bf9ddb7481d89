// End-to-end training runs through the real `tess train` binary: every stage
// trains from YAML, and a run killed with SIGKILL and resumed reproduces the
// per-step losses of an uninterrupted run bit for bit.
#include <catch2/catch.hpp>
#include <cstdio>

#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/checkpoint/checkpoint.h"
#include "core/model/safetensors.h"
#include "core/util/sha256.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "tests/support/test_support.h"
#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using tess::test::run_command;
using tess::test::run_tess;

using namespace tess::test;


TEST_CASE("stage ar trains from YAML: metrics, checkpoints and a loadable final model", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("ar", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/ar";
  train_ok(cfg, "--set run.dir=" + run.string() + " --set data.tokenizer=" + w.tokenizer.string() +
                    " --set data.train=[" + w.corpus.string() + "] --set train.max_steps=30 --set checkpoint.every=10");
  auto m = metrics(run);
  REQUIRE(m.size() == 30);
  for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s"}) CHECK(m.back().contains(key));
  CHECK(m.back()["loss"].get<double>() < m.front()["loss"].get<double>() - 1.0);
  CHECK(fs::exists(run / "config.yaml"));
  CHECK(fs::exists(run / "log.txt"));
  auto latest = tess::checkpoint::latest_checkpoint(run);
  REQUIRE(latest);
  CHECK(latest->filename() == "step_00000030");
  CHECK_NOTHROW(tess::checkpoint::verify_checkpoint(*latest));
  auto info = run_tess("model info --model " + (run / "final").string());
  CHECK(info.exit_code == 0);
  CHECK(fs::exists(run / "final" / "tokenizer.model"));
}

// mfu = this rank's model FLOPs of the step (train/flops.h) / its time / the
// peak; the time is B x L / tokens_per_s on one process. The FLOPs of an ar
// step on the workspace's shape, counted by hand: B 4 rows read L - 1 = 31
// positions each; layer matmul weights 2 x (32x32 + 2 x 32x16 + 32x32 + 3 x 32x64).
TEST_CASE("metrics.jsonl's mfu is the step's model FLOPs over its time and log.peak_gflops", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("mfu", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/mfu";
  train_ok(cfg, "--set run.dir=" + run.string() + " --set data.tokenizer=" + w.tokenizer.string() +
                    " --set data.train=[" + w.corpus.string() + "] --set train.max_steps=3 --set log.peak_gflops=2.5");
  auto m = metrics(run);
  REQUIRE(m.size() == 3);
  const double positions = 4 * 31, weights = 2 * (32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64);
  const double vocab = w.vocab + 1;  // + [PAD]
  const double flops = 6 * weights * positions + 12.0 * 2 * 32 * 31 * positions + 6 * vocab * 32 * positions;
  for (const auto& j : m) {
    double seconds = 4 * 32 / j.at("tokens_per_s").get<double>();
    CHECK(j.at("mfu").get<double>() * seconds * 2.5e9 == Approx(flops).epsilon(1e-6));
  }
}

TEST_CASE("a killed ar run resumes with bit-identical per-step losses", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("ar_exact", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=16 --set checkpoint.every=5";
  auto a = w.dir / "runs/exact_a", b = w.dir / "runs/exact_b";
  train_ok(cfg, "--set run.dir=" + a.string() + common);
  train_killed_and_resumed(tess_cmd("train " + cfg.string() + " --set run.dir=" + b.string() + common), 12, b);
  CHECK(loss_texts(b) == loss_texts(a));
  REQUIRE(loss_texts(a).size() == 16);
}

TEST_CASE("background checkpoint saves write the same checkpoints as synchronous ones", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("ar_async", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=9 --set checkpoint.every=3 --set checkpoint.keep_last=5";
  auto a = w.dir / "runs/async_on", b = w.dir / "runs/async_off";
  train_ok(cfg, "--set run.dir=" + a.string() + common);
  train_ok(cfg, "--set run.dir=" + b.string() + common + " --set checkpoint.async=false");
  CHECK(loss_texts(a) == loss_texts(b));
  for (const char* step : {"step_00000003", "step_00000006", "step_00000009"}) {
    auto ma = tess::checkpoint::verify_checkpoint(a / "checkpoints" / step);
    auto mb = tess::checkpoint::verify_checkpoint(b / "checkpoints" / step);
    REQUIRE(ma.files.size() == mb.files.size());
    for (size_t i = 0; i < ma.files.size(); ++i) {
      INFO(step << " " << ma.files[i].path);
      CHECK(ma.files[i].sha256 == mb.files[i].sha256);
    }
  }
}

TEST_CASE("adaptation and instruction stages train and resume bit-exactly", "[integration][train]") {
  auto& w = workspace();
  // Stage ar -> adaptation (from the AR model) -> instruction (from the adapted model).
  auto ar_cfg = w.config("base_ar", "run:\n  stage: ar\n");
  auto ar = w.dir / "runs/base_ar";
  train_ok(ar_cfg, "--set run.dir=" + ar.string() + " --set data.tokenizer=" + w.tokenizer.string() +
                       " --set data.train=[" + w.corpus.string() + "] --set train.max_steps=10");
  auto ad_cfg = w.config("adapt", "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n", false);
  std::string ad_common = " --set model.path=" + (ar / "final").string() + " --set data.train=[" +
                          w.corpus.string() + "] --set train.max_steps=12 --set checkpoint.every=4";
  auto ad_a = w.dir / "runs/adapt_a", ad_b = w.dir / "runs/adapt_b";
  train_ok(ad_cfg, "--set run.dir=" + ad_a.string() + ad_common);
  train_killed_and_resumed(tess_cmd("train " + ad_cfg.string() + " --set run.dir=" + ad_b.string() + ad_common), 9, ad_b);
  CHECK(loss_texts(ad_b) == loss_texts(ad_a));
  REQUIRE(loss_texts(ad_a).size() == 12);
  // The comparison catches a resume that does not restore the random streams:
  // the steps before the checkpoint agree, every step after it differs.
  auto ad_c = w.dir / "runs/adapt_c";
  auto resumed_at = train_killed_and_resumed(
      tess_cmd("train " + ad_cfg.string() + " --set run.dir=" + ad_c.string() + ad_common), 9, ad_c,
      "TESS_TEST_MUTATION=resume_without_streams");
  auto full = loss_texts(ad_a), mutated = loss_texts(ad_c);
  REQUIRE(mutated.size() == full.size());
  for (size_t i = 0; i < full.size(); ++i) {
    INFO("step " << i + 1);
    CHECK((mutated[i] == full[i]) == (static_cast<int64_t>(i) < resumed_at));
  }
  CHECK(fs::exists(ad_a / "final" / "model.safetensors"));
  auto ad_config = nlohmann::json::parse(tess::test::read_file(ad_a / "final" / "config.json"));
  CHECK(ad_config["diffusion_timesteps"] == 100);  // the noise the model was trained with travels with it
  CHECK(ad_config["simplex_value"] == 5.0);
  CHECK(ad_config["noise_schedule"] == "cosine_improved");

  auto in_cfg = w.config("instr", "run:\n  stage: instruction\ndiffusion:\n  timesteps: 100\n", false);
  std::string in_common = " --set model.path=" + (ad_a / "final").string() + " --set data.train=[" +
                          w.chat.string() + "] --set train.max_steps=10 --set checkpoint.every=3";
  auto in_a = w.dir / "runs/instr_a", in_b = w.dir / "runs/instr_b";
  train_ok(in_cfg, "--set run.dir=" + in_a.string() + in_common);
  train_killed_and_resumed(tess_cmd("train " + in_cfg.string() + " --set run.dir=" + in_b.string() + in_common), 7, in_b);
  CHECK(loss_texts(in_b) == loss_texts(in_a));
  REQUIRE(loss_texts(in_a).size() == 10);
  auto m = metrics(in_a);
  // Both stages learn: 10-12 steps take their loss down by half a nat or more
  // (seeded runs: adaptation 5.08 -> 4.33, instruction 5.72 -> 4.73).
  CHECK(m.back()["loss"].get<double>() < m.front()["loss"].get<double>() - 0.6);
  auto ad = metrics(ad_a);
  CHECK(ad.back()["loss"].get<double>() < ad.front()["loss"].get<double>() - 0.5);
}

TEST_CASE("run.cpu_allocator: the caching allocator changes no bit of training and serves steps from its cache",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("allocator", "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=6 --set checkpoint.every=3 --set train.batch_size=16 "
                       "--set data.seq_len=64";  // [span rows, V] tensors over the cache's 128 KiB
  auto cached = w.dir / "runs/allocator_caching", system = w.dir / "runs/allocator_system";
  train_ok(cfg, "--set run.dir=" + cached.string() + common);
  train_ok(cfg, "--set run.dir=" + system.string() + common + " --set run.cpu_allocator=system");
  REQUIRE(loss_texts(cached).size() == 6);
  CHECK(loss_texts(cached) == loss_texts(system));
  // "cpu allocator: H of N large tensors reused a cached block; ...": the
  // steps after the first are served from the cache.
  auto log = tess::test::read_file(cached / "log.txt");
  auto at = log.find("cpu allocator: ");
  REQUIRE(at != std::string::npos);
  long hits = 0, total = 0;
  REQUIRE(std::sscanf(log.c_str() + at, "cpu allocator: %ld of %ld", &hits, &total) == 2);
  INFO(log.substr(at, 120));
  CHECK(total > 0);
  CHECK(hits > total / 2);
  CHECK(tess::test::read_file(system / "log.txt").find("cpu allocator: ") == std::string::npos);
}

TEST_CASE("stage reward learns preferences, saves an HF sequence classifier and resumes bit-exactly",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("reward", "run:\n  stage: reward\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" +
                       w.preferences.string() + "] --set train.max_steps=14 --set checkpoint.every=5" +
                       " --set data.seq_len=80 --set model.max_position_embeddings=80";  // the template is long in bytes
  auto a = w.dir / "runs/reward_a", b = w.dir / "runs/reward_b";
  train_ok(cfg, "--set run.dir=" + a.string() + common);
  auto m = metrics(a);
  REQUIRE(m.size() == 14);
  CHECK(m.front()["loss"].get<double>() == Approx(std::log(2.0)).margin(0.05));  // untrained: r_c ~ r_r
  CHECK(m.back()["loss"].get<double>() < 0.2);
  CHECK(m.back()["tokens"].get<int64_t>() == 14 * 4);  // the loss is averaged over pairs
  auto config = nlohmann::json::parse(tess::test::read_file(a / "final" / "config.json"));
  CHECK(config["architectures"][0] == "LlamaForSequenceClassification");
  train_killed_and_resumed(tess_cmd("train " + cfg.string() + " --set run.dir=" + b.string() + common), 8, b);
  CHECK(loss_texts(b) == loss_texts(a));

  // A chat file is not preference data: the error names the key and the record.
  auto bad = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/reward_bad").string() +
                      " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.chat.string() + "]" +
                      " --set data.seq_len=80 --set model.max_position_embeddings=80");
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("chat.jsonl:1") && Catch::Contains("prompt"));
}

TEST_CASE("two Gloo processes equal one process with the doubled batch (loss, grad norm, tokens), and resume "
          "bit-exactly",
          "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("ddp", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=8 --set checkpoint.every=3";
  auto one = w.dir / "runs/ddp_one", two = w.dir / "runs/ddp_two", two_b = w.dir / "runs/ddp_two_b";
  train_ok(cfg, "--set run.dir=" + one.string() + " --set train.batch_size=4" + common);
  auto launch = [&](const fs::path& run) {
    return tess_cmd("launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() + " --set run.dir=" + run.string() +
                    " --set train.batch_size=2" + common);
  };
  auto r = run_command(launch(two));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(metrics(one).size() == 8);
  auto differ = differing_steps(one, two, 1e-4);  // a batch of 4 and two of 2 round differently
  INFO(joined(differ));
  CHECK(differ.empty());
  auto manifest = tess::checkpoint::verify_checkpoint(*tess::checkpoint::latest_checkpoint(two));
  CHECK(manifest.world_size == 2);
  train_killed_and_resumed(launch(two_b), 5, two_b);
  CHECK(loss_texts(two_b) == loss_texts(two));

  // The comparison above catches an all-reduce that averages instead of
  // summing: every step's gradient norm is half of the one-process run's.
  auto averaged = w.dir / "runs/ddp_two_averaged";
  r = run_command("TESS_TEST_MUTATION=allreduce_average " + launch(averaged));
  REQUIRE(r.exit_code == 0);
  auto one_m = metrics(one), avg_m = metrics(averaged);
  REQUIRE(avg_m.size() == 8);
  CHECK(differing_steps(one, averaged, 1e-4).size() >= 8);
  CHECK(avg_m[0]["grad_norm"].get<double>() ==
        Approx(one_m[0]["grad_norm"].get<double>() / 2).epsilon(1e-4));
}

// A step's micro-batch slots draw from streams of their own (train/stage.h),
// so one process accumulating two micro-batches computes what two processes
// compute with one each: the same samples, the same noise, the same sums.
TEST_CASE("diffusion stages: 1 process x 2 accumulated micro-batches equals 2 Gloo processes, for both loss "
          "normalisations",
          "[dist][train]") {
  auto& w = workspace();
  struct Case {
    std::string stage, normalisation;
    fs::path data;
  };
  for (const auto& c : {Case{"adaptation", "global_tokens", w.corpus}, Case{"adaptation", "micro_batch", w.corpus},
                        Case{"instruction", "global_tokens", w.chat}}) {
    auto name = c.stage + "_" + c.normalisation;
    INFO(name);
    auto cfg = w.config("slots_" + name, "run:\n  stage: " + c.stage + "\ndiffusion:\n  timesteps: 100\n");
    std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + c.data.string() +
                         "] --set train.max_steps=6 --set train.batch_size=2" +
                         " --set diffusion.loss_normalization=" + c.normalisation;
    auto one = w.dir / ("runs/slots_one_" + name), two = w.dir / ("runs/slots_two_" + name);
    train_ok(cfg, "--set run.dir=" + one.string() + " --set train.grad_accum=2" + common);
    auto r = run_command(tess_cmd("launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() +
                                  " --set run.dir=" + two.string() + common));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE(metrics(one).size() == 6);
    auto differ = differing_steps(one, two, 0);
    INFO(joined(differ));
    CHECK(differ.empty());
  }
}

TEST_CASE("gradient all-reduce overlapped with backward gives the bits of reducing after it", "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("overlap", "run:\n  stage: adaptation\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=5 --set train.batch_size=2 --set train.grad_accum=2" +
                       " --set dist.bucket_mb=0.005";  // many small buckets
  std::map<bool, std::vector<std::string>> norms;
  for (bool overlap : {false, true}) {
    auto run = w.dir / "runs" / (overlap ? "overlap_on" : "overlap_off");
    auto r = run_command(tess_cmd("launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() +
                                  " --set run.dir=" + run.string() + common +
                                  " --set dist.overlap=" + (overlap ? "true" : "false")));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    for (const auto& j : metrics(run)) norms[overlap].push_back(j.at("grad_norm").dump() + " " + j.at("loss").dump());
  }
  REQUIRE(norms[false].size() == 5);
  CHECK(norms[true] == norms[false]);
}

TEST_CASE("ZeRO-1 equals replicated AdamW bit for bit, and its shards resume on another world size",
          "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("zero", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=8 --set checkpoint.every=4 --set train.batch_size=2" +
                       " --set train.weight_decay=0.1";
  auto launch = [&](const fs::path& run, int zero) {
    return tess_cmd("launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() + " --set run.dir=" + run.string() +
                    " --set dist.zero=" + std::to_string(zero) + common);
  };
  auto plain = w.dir / "runs/zero0", sharded = w.dir / "runs/zero1";
  for (auto [run, zero] : {std::pair<fs::path, int>{plain, 0}, {sharded, 1}}) {
    auto r = run_command(launch(run, zero));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
  REQUIRE(loss_texts(plain).size() == 8);
  CHECK(loss_texts(sharded) == loss_texts(plain));
  // Each rank file holds only its shard of the optimizer state.
  auto ckpt = w.dir / "runs/zero1/checkpoints/step_00000004";
  tess::model::SafetensorsFile r0(ckpt / tess::checkpoint::rank_file_name(0)), r1(ckpt / tess::checkpoint::rank_file_name(1));
  CHECK(r0.entries().size() > 1);
  CHECK(r1.entries().size() > 1);
  std::set<std::string> in_r1;
  for (const auto& e : r1.entries()) in_r1.insert(e.name);
  for (const auto& e : r0.entries())
    if (e.name != "__step__") CHECK_FALSE(in_r1.count(e.name));

  // Both step-4 checkpoints resumed on ONE process continue identically: the
  // sharded state is gathered by name from both rank files.
  auto resume_on_one = [&](const fs::path& from, const fs::path& run, int zero) {
    train_ok(cfg, "--set run.dir=" + run.string() + " --set checkpoint.resume=" +
                      (from / "checkpoints/step_00000004").string() + " --set dist.zero=" + std::to_string(zero) +
                      " --set train.batch_size=4" +
                      " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                      "] --set train.max_steps=8 --set checkpoint.every=4 --set train.weight_decay=0.1");
  };
  resume_on_one(plain, w.dir / "runs/zero0_on1", 0);
  resume_on_one(sharded, w.dir / "runs/zero1_on1", 1);
  CHECK(loss_texts(w.dir / "runs/zero1_on1") == loss_texts(w.dir / "runs/zero0_on1"));
  CHECK(loss_texts(w.dir / "runs/zero1_on1").size() == 4);
}

TEST_CASE("bf16 autocast and bf16 weights with fp32 masters train and resume bit-exactly", "[integration][train]") {
  auto& w = workspace();
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=10 --set checkpoint.every=4";
  auto fp32_cfg = w.config("prec_fp32", "run:\n  stage: ar\n");
  train_ok(fp32_cfg, "--set run.dir=" + (w.dir / "runs/prec_fp32").string() + common);
  for (std::string mode : {"autocast", "master"}) {
    INFO(mode);
    auto cfg = w.config("prec_" + mode, "run:\n  stage: ar\n");
    std::string sets = common + (mode == "autocast" ? " --set train.precision=bf16_autocast"
                                                    : " --set train.precision=bf16_master --set model.dtype=bfloat16");
    auto a = w.dir / ("runs/prec_" + mode + "_a"), b = w.dir / ("runs/prec_" + mode + "_b");
    train_ok(cfg, "--set run.dir=" + a.string() + sets);
    auto m = metrics(a), f = metrics(w.dir / "runs/prec_fp32");
    REQUIRE(m.size() == 10);
    CHECK(m.back()["loss"].get<double>() < m.front()["loss"].get<double>());
    CHECK(loss_texts(a) != loss_texts(w.dir / "runs/prec_fp32"));  // bf16 arithmetic really ran
    CHECK(m.back()["loss"].get<double>() == Approx(f.back()["loss"].get<double>()).epsilon(0.05));
    train_killed_and_resumed(tess_cmd("train " + cfg.string() + " --set run.dir=" + b.string() + sets), 6, b);
    CHECK(loss_texts(b) == loss_texts(a));
    auto config = nlohmann::json::parse(tess::test::read_file(a / "final" / "config.json"));
    CHECK(config["torch_dtype"] == (mode == "master" ? "bfloat16" : "float32"));
  }
  // Mismatched precision and dtype are refused, naming both keys.
  auto bad = w.config("prec_bad", "run:\n  stage: ar\n");
  auto r = run_tess("train " + bad.string() + " --set run.dir=" + (w.dir / "runs/prec_bad").string() + common +
                    " --set train.precision=bf16_master");
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Catch::Contains("model.dtype: bfloat16") && Catch::Contains("bf16_master"));
}

TEST_CASE("a hung rank is named by the others within dist.timeout_s, and the launcher stops the run",
          "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("hang", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/hang";
  auto script = w.dir / "hang.sh";
  std::ofstream(script) << tess_cmd("launch --nproc 2 --grace-seconds 2 -- train " + cfg.string() +
                                    " --set run.dir=" + run.string() + " --set data.tokenizer=" + w.tokenizer.string() +
                                    " --set data.train=[" + w.corpus.string() + "] --set train.max_steps=100000" +
                                    " --set checkpoint.every=0 --set dist.timeout_s=3")
                        << " > " << (w.dir / "hang.out").string() << " 2> " << (w.dir / "hang.err").string() << " &\n"
                        << "lp=$!\n"
                        << "for i in $(seq 1 2400); do grep -q '\"step\":2,' '" << (run / "metrics.jsonl").string()
                        << "' 2>/dev/null && break; sleep 0.05; done\n"
                        << "for c in $(pgrep -P $lp); do tr '\\0' '\\n' < /proc/$c/environ | grep -qx RANK=1 && kill -STOP $c; "
                           "done\n"
                        << "SECONDS=0\nwait $lp\nrc=$?\necho \"rc=$rc seconds=$SECONDS\"\n";
  auto r = run_command("bash " + script.string());
  auto err = tess::test::read_file(w.dir / "hang.err");
  INFO(r.out << err);
  CHECK_THAT(r.out, Catch::Contains("rc=") && !Catch::Contains("rc=0 "));
  int seconds = std::stoi(r.out.substr(r.out.find("seconds=") + 8));
  CHECK(seconds < 60);  // dist.timeout_s (3) + the launcher's grace (2) + generous slack: a hang never ends
  // Rank 1 stops either before it enters the collective or inside it.
  // Used to: "stuck inside it: rank 1" for a process that no longer ran.
  CHECK_THAT(err, Catch::Contains("[rank 0]") && Catch::Contains("timed out after 3 s") &&
                      Catch::Contains("no sign of life from rank 1 for 1.5 s (the process died or is frozen)"));
  CHECK_THAT(err, !Catch::Contains("Exception raised from") && !Catch::Contains("frame #"));  // no LibTorch stack
}

TEST_CASE("a simulated 2-node x 2-process run (loopback rendezvous) trains and resumes", "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("nodes", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=6 --set checkpoint.every=3 --set train.batch_size=1";
  auto two_nodes = [&](const fs::path& run, int port, const std::string& extra) {
    std::string node = "launch --nproc 2 --nnodes 2 --master-addr 127.0.0.1 --master-port " + std::to_string(port) +
                       " --grace-seconds 5 --node-rank ";
    std::string train = " -- train " + cfg.string() + " --set run.dir=" + run.string() + common + extra;
    return tess_cmd(node + "1" + train) + " > /dev/null 2>&1 & " + tess_cmd(node + "0" + train) + "; rc=$?; wait; exit $rc";
  };
  auto a = w.dir / "runs/nodes_a";
  auto r = run_command(two_nodes(a, tess::test::free_port(), ""));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(loss_texts(a).size() == 6);
  CHECK(tess::checkpoint::verify_checkpoint(*tess::checkpoint::latest_checkpoint(a)).world_size == 4);
  // The same 4-rank run on one "node" gives the same losses (bit for bit):
  // which machine a rank lives on does not matter.
  auto b = w.dir / "runs/nodes_b";
  r = run_command(tess_cmd("launch --nproc 4 --grace-seconds 5 -- train " + cfg.string() +
                           " --set run.dir=" + b.string() + common));
  REQUIRE(r.exit_code == 0);
  CHECK(loss_texts(b) == loss_texts(a));
  // Resume the 2-node run from its step-3 checkpoint: the rest is identical.
  auto c = w.dir / "runs/nodes_c";
  fs::create_directories(c / "checkpoints");
  fs::copy(a / "checkpoints/step_00000003", c / "checkpoints/step_00000003", fs::copy_options::recursive);
  r = run_command(two_nodes(c, tess::test::free_port(), " --set checkpoint.resume=" + (c / "checkpoints/step_00000003").string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto resumed = loss_texts(c), full = loss_texts(a);
  REQUIRE(resumed.size() == 3);
  CHECK(std::vector<std::string>(full.begin() + 3, full.end()) == resumed);
}

TEST_CASE("both diffusion stages resume bit-exactly on two Gloo processes, and on one process accumulating their "
          "two micro-batches",
          "[dist][train]") {
  auto& w = workspace();
  for (const auto& [stage, data] : {std::pair<std::string, fs::path>{"adaptation", w.corpus}, {"instruction", w.chat}}) {
    INFO(stage);
    auto cfg = w.config("ddp_" + stage, "run:\n  stage: " + stage + "\ndiffusion:\n  timesteps: 100\n");
    std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + data.string() +
                         "] --set train.max_steps=8 --set checkpoint.every=3 --set train.batch_size=2";
    auto launch = [&](const fs::path& run) {
      return tess_cmd("launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() + " --set run.dir=" + run.string() +
                      common);
    };
    auto a = w.dir / ("runs/ddp_" + stage + "_a"), b = w.dir / ("runs/ddp_" + stage + "_b");
    auto r = run_command(launch(a));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    train_killed_and_resumed(launch(b), 7, b);
    CHECK(loss_texts(b) == loss_texts(a));
    CHECK(loss_texts(a).size() == 8);
    // The same two micro-batch slots on one process: the run continues exactly.
    auto one = w.dir / ("runs/ddp_" + stage + "_on_one");
    train_ok(cfg, "--set run.dir=" + one.string() + common + " --set train.grad_accum=2 --set checkpoint.resume=" +
                      (a / "checkpoints/step_00000006").string());
    auto full = loss_texts(a);
    CHECK(loss_texts(one) == std::vector<std::string>(full.begin() + 6, full.end()));
  }
}

// With another slot count, slot s continues saved slot (s mod count): a
// one-process checkpoint resumed on two processes gives both ranks slot 0's
// streams, which then advance alike (the same draws for the same shapes).
TEST_CASE("a one-slot diffusion checkpoint resumed on two processes continues slot 0's streams on both ranks",
          "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("slot_mod", "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.batch_size=2 --set checkpoint.every=2 --set checkpoint.keep_last=5";
  auto one = w.dir / "runs/slot_mod_one", two = w.dir / "runs/slot_mod_two";
  train_ok(cfg, "--set run.dir=" + one.string() + common + " --set train.max_steps=2");
  auto r = run_command(tess_cmd("launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() + " --set run.dir=" +
                                two.string() + common + " --set train.max_steps=4 --set checkpoint.resume=" +
                                (one / "checkpoints/step_00000002").string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, Catch::Contains("saved with 1 micro-batch slot(s) per step") &&
                        Catch::Contains("this run has 2"));
  auto ckpt = two / "checkpoints/step_00000004";
  tess::model::SafetensorsFile r0(ckpt / tess::checkpoint::rank_file_name(0)),
      r1(ckpt / tess::checkpoint::rank_file_name(1));
  for (const char* stream : {"noise", "self_condition", "span_mask"}) {
    INFO(stream);
    auto s0 = r0.metadata().at(fmt::format("rng.{}.slot0", stream)), s1 = r1.metadata().at(fmt::format("rng.{}.slot1", stream));
    CHECK(s0 == s1);  // a fresh slot-1 stream (its own seed) would be in another state
  }
}

// Before slots had streams of their own, rank r's file held "rng.<stream>":
// rewrite a checkpoint that way (manifest included) and resume both forms.
TEST_CASE("a checkpoint from before slot streams (one rng.<stream> per rank) resumes as slot r = rank r",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("legacy", "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=4 --set checkpoint.every=2 --set checkpoint.keep_last=3";
  auto full = w.dir / "runs/legacy_full", old = w.dir / "runs/legacy_old";
  train_ok(cfg, "--set run.dir=" + full.string() + common);
  auto src = full / "checkpoints/step_00000002", ckpt = old / "checkpoints/step_00000002";
  fs::create_directories(old / "checkpoints");
  fs::copy(src, ckpt, fs::copy_options::recursive);
  auto rank_path = ckpt / tess::checkpoint::rank_file_name(0);
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> meta;
  {
    tess::model::SafetensorsFile f(rank_path);
    for (const auto& e : f.entries()) tensors[e.name] = f.load(e.name).clone();
    for (const auto& [k, v] : f.metadata()) {
      auto slot = k.find(".slot0");
      meta[slot == std::string::npos ? k : k.substr(0, slot)] = v;
    }
  }
  REQUIRE(meta.count("rng.noise"));
  REQUIRE_FALSE(meta.count("rng.noise.slot0"));
  tess::model::write_safetensors(rank_path, tensors, meta);
  auto manifest = nlohmann::json::parse(tess::test::read_file(ckpt / "manifest.json"));
  for (auto& f : manifest["files"])
    if (f["path"] == rank_path.filename().string()) {
      f["size"] = fs::file_size(rank_path);
      f["sha256"] = tess::util::sha256_file_hex(rank_path);
    }
  std::ofstream(ckpt / "manifest.json") << manifest.dump(2);
  train_ok(cfg, "--set run.dir=" + old.string() + common + " --set checkpoint.resume=" + ckpt.string());
  auto a = loss_texts(full), b = loss_texts(old);
  REQUIRE(a.size() == 4);
  CHECK(b == std::vector<std::string>(a.begin() + 2, a.end()));
}

std::map<int64_t, std::string> validation_losses(const fs::path& run) {
  std::map<int64_t, std::string> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("validation_loss")) {
      CHECK(j.at("validation_tokens").get<int64_t>() > 0);
      out[j.at("step").get<int64_t>()] = j.at("validation_loss").dump();
    }
  }
  return out;
}

// Validation draws its noise from streams of its own, fresh at every
// evaluation: evaluating more often changes no training step, and two runs
// evaluating at the same weights report the same validation loss.
TEST_CASE("validation (train.eval_every) logs a loss that depends only on the weights and never shifts training",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("validation", "run:\n  stage: instruction\ndiffusion:\n  timesteps: 100\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.chat.string() +
                       "] --set data.validation=[" + w.chat.string() + "] --set train.max_steps=4" +
                       " --set train.eval_batches=2";
  auto every2 = w.dir / "runs/validation_2", every1 = w.dir / "runs/validation_1", never = w.dir / "runs/validation_0";
  train_ok(cfg, "--set run.dir=" + every2.string() + common + " --set train.eval_every=2");
  train_ok(cfg, "--set run.dir=" + every1.string() + common + " --set train.eval_every=1");
  train_ok(cfg, "--set run.dir=" + never.string() + common + " --set train.eval_every=0");
  REQUIRE(loss_texts(never).size() == 4);
  CHECK(loss_texts(every1) == loss_texts(never));
  CHECK(loss_texts(every2) == loss_texts(never));
  auto v2 = validation_losses(every2), v1 = validation_losses(every1);
  CHECK(validation_losses(never).empty());
  REQUIRE(v2.size() == 2);
  REQUIRE(v1.size() == 4);
  CHECK(v2.at(2) == v1.at(2));
  CHECK(v2.at(4) == v1.at(4));
  CHECK(v1.at(1) != v1.at(2));  // the weights changed in between
}

TEST_CASE("train.epochs sets the step count from the data size, and is refused next to train.max_steps",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("epochs", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.chat.string() +
                       "] --set data.chat.too_long=truncate_prompt";  // 32 positions: see Workspace::config
  auto run = w.dir / "runs/epochs";
  // 60 chat examples, 4 per step: 1.5 epochs = ceil(90 / 4) = 23 steps.
  train_ok(cfg, "--set run.dir=" + run.string() + common + " --set train.max_steps=0 --set train.epochs=1.5");
  auto m = metrics(run);
  REQUIRE(m.size() == 23);
  CHECK(m.back()["step"] == 23);
  tess::model::SafetensorsFile rank0(*tess::checkpoint::latest_checkpoint(run) / tess::checkpoint::rank_file_name(0));
  CHECK(rank0.metadata().at("loader.epoch") == "1");
  CHECK(rank0.metadata().at("loader.position") == "32");  // 23 * 4 = 92 samples = 60 + 32
  auto both = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/epochs_both").string() + common +
                       " --set train.max_steps=5 --set train.epochs=2");
  CHECK(both.exit_code == 1);
  CHECK_THAT(both.err, Catch::Contains("train.epochs is set but train.max_steps = 5 decides the length"));
  auto neither = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/epochs_none").string() +
                          common + " --set train.max_steps=0");
  CHECK(neither.exit_code == 1);
  CHECK_THAT(neither.err, Catch::Contains("train.max_steps is 0 and train.epochs is 0"));
}

TEST_CASE("each stage refuses data of another kind, naming the key, the input and what the stage trains on",
          "[integration][train]") {
  auto& w = workspace();
  struct Case {
    std::string stage;
    fs::path data;
    std::string expected;
  };
  for (const auto& c : {Case{"adaptation", w.chat, "is a file (JSONL records), but stage adaptation trains on "
                                                   "token-shard directories (tess tokenize corpus)"},
                        Case{"instruction", w.corpus, "is a token-shard directory, but stage instruction trains on "
                                                      "chat JSONL files (\"messages\" records)"},
                        Case{"reward", w.corpus, "is a token-shard directory, but stage reward trains on preference "
                                                 "JSONL files"}}) {
    INFO(c.stage);
    auto cfg = w.config("mismatch_" + c.stage, "run:\n  stage: " + c.stage + "\n");
    for (const char* key : {"data.train", "data.validation"}) {
      // The other key gets data the stage takes, so only `key` is wrong.
      fs::path good = c.stage == "adaptation" ? w.corpus : c.stage == "instruction" ? w.chat : w.preferences;
      std::string sets = std::string(" --set ") + key + "=[" + c.data.string() + "] --set " +
                         (std::string(key) == "data.train" ? "data.validation" : "data.train") + "=[" +
                         good.string() + "]";
      if (c.stage == "reward") sets += " --set data.seq_len=80 --set model.max_position_embeddings=80";
      auto r = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/mismatch").string() +
                        " --set data.tokenizer=" + w.tokenizer.string() + sets);
      CHECK(r.exit_code == 1);
      CHECK_THAT(r.err, Catch::Contains(std::string(key) + ": '" + c.data.string() + "' " + c.expected));
    }
  }
  // ar takes token shards and chat files alike, but not a directory that is neither.
  auto cfg = w.config("mismatch_ar", "run:\n  stage: ar\n");
  auto r = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/mismatch").string() +
                    " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.dir.path().string() +
                    "]");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("data.train: '" + w.dir.path().string() +
                                    "' is a directory without meta.json, not a token dataset"));
}

TEST_CASE("a key the stage does not use is an error naming where it was set (eval.* is for tess eval)",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("unused", "run:\n  stage: ar\ndiffusion:\n  self_condition_prob: 0.3\neval:\n  steps: 7\n");
  auto r = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/unused").string() +
                    " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() + "]");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("diffusion.self_condition_prob (set at " + cfg.string()));
  CHECK_THAT(r.err, !Catch::Matchers::Contains("eval.steps"));
}

// This machine has no GPU: run.device cuda must say so (auto falls back to CPU,
// which every other test exercises).
TEST_CASE("run.device cuda without a visible GPU is an error naming where it was set", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("cuda", "run:\n  stage: ar\n  device: cuda\n");
  auto r = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/cuda").string() +
                    " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() + "]");
  if (r.exit_code == 0) TESS_SKIP("a CUDA device is visible here: the run trained on it");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains(cfg.string()) &&
                        Catch::Matchers::Contains("run.device is cuda, but LibTorch sees no CUDA device"));
}

TEST_CASE("resuming with another tokenizer is refused", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("tokcheck", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/tokcheck";
  std::string common = " --set run.dir=" + run.string() + " --set data.train=[" + w.corpus.string() + "]";
  train_ok(cfg, "--set data.tokenizer=" + w.tokenizer.string() + " --set train.max_steps=2" + common);
  // The same model with an extra special token is another tokenizer.
  fs::copy(w.tokenizer, w.dir / "tok2", fs::copy_options::recursive);
  std::ofstream(w.dir / "tok2" / "added_tokens.json")
      << fmt::format("{{\"[PAD]\": {}, \"<extra>\": {}}}", w.vocab, w.vocab + 1);
  auto r = run_tess("train " + cfg.string() + " --set data.tokenizer=" + (w.dir / "tok2").string() +
                    " --set train.max_steps=4" + common);
  CHECK(r.exit_code == 1);
  auto saved = tess::checkpoint::verify_checkpoint(*tess::checkpoint::latest_checkpoint(run));
  CHECK_THAT(r.err, Catch::Matchers::Contains((run / "checkpoints/step_00000002").string() + ": written with tokenizer " +
                                              saved.tokenizer_hash + ", but this run's tokenizer is "));
  CHECK(saved.step == 2);  // nothing was overwritten
}

TEST_CASE("resume refuses a checkpoint of another stage and warns when the configuration changed",
          "[integration][train]") {
  auto& w = workspace();
  auto ar_cfg = w.config("stagecheck_ar", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/stagecheck";
  std::string common = " --set run.dir=" + run.string() + " --set data.tokenizer=" + w.tokenizer.string() +
                       " --set data.train=[" + w.corpus.string() + "]";
  train_ok(ar_cfg, "--set train.max_steps=2" + common);
  auto ckpt = run / "checkpoints/step_00000002";
  auto ad_cfg = w.config("stagecheck_ad", "run:\n  stage: adaptation\n");
  auto other = run_tess("train " + ad_cfg.string() + common + " --set train.max_steps=4 --set checkpoint.resume=" +
                        ckpt.string());
  CHECK(other.exit_code == 1);
  CHECK_THAT(other.err, Catch::Matchers::Contains(ckpt.string() +
                                                  ": a checkpoint of stage 'ar', but this run is stage 'adaptation'"));
  // The same stage with another learning rate resumes, and says the steps may differ.
  auto changed = run_tess("train " + ar_cfg.string() + common + " --set train.max_steps=4 --set train.lr=1e-3");
  INFO(changed.err);
  CHECK(changed.exit_code == 0);
  CHECK_THAT(changed.err, Catch::Matchers::Contains("resuming " + ckpt.string() + " with 2 changed key(s)") &&
                              Catch::Matchers::Contains("train.lr: ") && Catch::Matchers::Contains(" -> 0.001"));
  CHECK_THAT(changed.err, Catch::Matchers::Contains("at step 2"));
  auto same = run_tess("train " + ar_cfg.string() + common + " --set train.max_steps=4 --set train.lr=1e-3");
  CHECK(same.exit_code == 0);  // resumes the finished run from step 4: its own configuration
  CHECK_THAT(same.err, !Catch::Matchers::Contains("changed key(s)"));
}

TEST_CASE("gradient accumulation 4 x B equals one batch of 4B", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("accum", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=5";
  auto big = w.dir / "runs/accum_big", small = w.dir / "runs/accum_small";
  train_ok(cfg, "--set run.dir=" + big.string() + " --set train.batch_size=8" + common);
  train_ok(cfg, "--set run.dir=" + small.string() + " --set train.batch_size=2 --set train.grad_accum=4" + common);
  auto a = metrics(big), b = metrics(small);
  REQUIRE(a.size() == 5);
  REQUIRE(b.size() == 5);
  for (size_t i = 0; i < 5; ++i) {
    INFO("step " << i + 1);
    CHECK(b[i]["loss"].get<double>() == Approx(a[i]["loss"].get<double>()).epsilon(1e-4));
    CHECK(b[i]["tokens"] == a[i]["tokens"]);
  }
}

TEST_CASE("SIGTERM saves a checkpoint and exits 0", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("sigterm", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/sigterm";
  auto script = w.dir / "sigterm.sh";
  std::ofstream(script) << tess_cmd("train " + cfg.string() + " --set run.dir=" + run.string() + " --set data.tokenizer=" +
                                    w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                                    "] --set train.max_steps=100000 --set checkpoint.every=0")
                        << " >/dev/null 2>&1 &\npid=$!\n"
                        << "for i in $(seq 1 2400); do grep -q '\"step\":3,' '" << (run / "metrics.jsonl").string()
                        << "' 2>/dev/null && break; sleep 0.05; done\nkill -TERM $pid\nwait $pid\n";
  auto r = run_command("bash " + script.string());
  CHECK(r.exit_code == 0);
  auto latest = tess::checkpoint::latest_checkpoint(run);
  REQUIRE(latest);
  auto m = tess::checkpoint::verify_checkpoint(*latest);
  CHECK(m.step >= 3);
  CHECK(m.step < 100000);
  auto v = run_tess("checkpoint verify " + run.string());
  CHECK(v.exit_code == 0);
  CHECK_THAT(v.out, Catch::Matchers::Contains("sizes and sha256 checked"));
  auto e = run_tess("checkpoint export " + latest->string() + " --hf " + (w.dir / "exported").string());
  CHECK(e.exit_code == 0);
  CHECK(run_tess("model info --model " + (w.dir / "exported").string()).exit_code == 0);
}

TEST_CASE("non-finite steps: skip counts and continues, abort stops with the step named", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("nan", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=4 --set train.lr=1e30 --set train.grad_clip=0";
  auto skip = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/nan_skip").string() +
                       " --set train.nonfinite_policy=skip" + common);
  CHECK(skip.exit_code == 0);
  CHECK_THAT(skip.err, Catch::Matchers::Contains("non-finite loss or gradient, update skipped"));
  auto abort = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/nan_abort").string() +
                        " --set train.nonfinite_policy=abort" + common);
  CHECK(abort.exit_code == 1);
  CHECK_THAT(abort.err, Catch::Matchers::Contains("non-finite loss or gradient at step"));
}

// With a constant LR and no noise (AR stage), rolling back from step 5 to the
// checkpoint of step 4 and skipping step 5's data must compute what the skip
// policy computes: its steps 5, 6, 7 are skip's steps 6, 7, 8, bit for bit.
TEST_CASE("rollback reloads the newest checkpoint and skips the offending data, on 1 and 2 processes",
          "[dist][train]") {
  auto& w = workspace();
  auto cfg = w.config("rollback", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=8 --set train.lr_schedule=constant --set train.warmup_steps=0" +
                       " --set train.inject_nonfinite_at=5";
  for (int nproc : {1, 2}) {
    DYNAMIC_SECTION(nproc << " process(es)") {
      auto train = [&](const std::string& name, const std::string& sets) {
        auto run = w.dir / "runs" / fmt::format("{}_{}", name, nproc);
        std::string args = "train " + cfg.string() + " --set run.dir=" + run.string() + common + sets +
                           fmt::format(" --set train.batch_size={}", 4 / nproc);
        auto r = nproc == 1 ? run_tess(args) : run_command(tess_cmd("launch --nproc 2 --grace-seconds 5 -- " + args));
        return std::make_pair(run, r);
      };
      auto [skip_run, skip] = train("rb_skip", " --set train.nonfinite_policy=skip");
      INFO(skip.err);
      REQUIRE(skip.exit_code == 0);
      auto [run, rb] = train("rb", " --set train.nonfinite_policy=rollback --set checkpoint.every=4");
      INFO(rb.err);
      REQUIRE(rb.exit_code == 0);
      CHECK_THAT(rb.err, Catch::Matchers::Contains("rolled back to") && Catch::Matchers::Contains("step 4"));
      auto skipped = loss_texts(skip_run), rolled = loss_texts(run);
      REQUIRE(skipped.size() == 7);  // step 5 dropped
      REQUIRE(rolled.size() == 8);   // steps 5..8 redone on later data
      for (int i = 0; i < 4; ++i) CHECK(rolled[i] == skipped[i]);
      for (int i = 4; i < 7; ++i) CHECK(rolled[i] == skipped[i]);  // skip's steps 6..8 sit at index 4..6
      // The event is in metrics.jsonl and the count survives in the checkpoint.
      std::ifstream in(run / "metrics.jsonl");
      int events = 0;
      for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line);
        if (j.contains("rollback_from_step")) {
          ++events;
          CHECK(j["rollback_from_step"] == 5);
          CHECK(j["step"] == 4);
          CHECK(j["data_skipped_steps"] == 1);
        }
      }
      CHECK(events == 1);
      auto latest = tess::checkpoint::latest_checkpoint(run);
      REQUIRE(latest);
      tess::model::SafetensorsFile rank0(*latest / tess::checkpoint::rank_file_name(0));
      CHECK(rank0.metadata().at("rollbacks") == "1");
    }
  }
}

TEST_CASE("rollback without a checkpoint, or past train.max_rollbacks, aborts naming why", "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("rollback_fail", "run:\n  stage: ar\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=6 --set train.nonfinite_policy=rollback";
  auto none = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/rb_none").string() + common +
                       " --set train.inject_nonfinite_at=2");
  CHECK(none.exit_code == 1);
  CHECK_THAT(none.err, Catch::Matchers::Contains("no checkpoint has been written yet"));
  // A learning rate that ruins the weights: every redo diverges again.
  auto diverging = run_tess("train " + cfg.string() + " --set run.dir=" + (w.dir / "runs/rb_diverge").string() +
                            common + " --set checkpoint.every=1 --set train.lr=1e30 --set train.grad_clip=0" +
                            " --set train.max_rollbacks=2");
  CHECK(diverging.exit_code == 1);
  CHECK_THAT(diverging.err, Catch::Matchers::Contains("already rolled back 2 time(s)"));
}

TEST_CASE("the paper's ablations (causal attention, unshifted labels) train from YAML and travel with the model",
          "[integration][train]") {
  auto& w = workspace();
  auto cfg = w.config("ablation", "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n");
  std::string common = " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
                       "] --set train.max_steps=2";
  auto plain = w.dir / "runs/ablation_plain", causal = w.dir / "runs/ablation_causal",
       unshifted = w.dir / "runs/ablation_unshifted";
  train_ok(cfg, "--set run.dir=" + plain.string() + common);
  train_ok(cfg, "--set run.dir=" + causal.string() + common + " --set model.attention=causal");
  train_ok(cfg, "--set run.dir=" + unshifted.string() + common + " --set diffusion.shift_labels=false");
  // Same seed and data: only the layout differs, and each changes the first step's loss.
  auto first = [](const fs::path& run) { return metrics(run).front()["loss"].get<double>(); };
  CHECK(first(causal) != first(plain));
  CHECK(first(unshifted) != first(plain));
  auto config = [](const fs::path& run) {
    return nlohmann::json::parse(tess::test::read_file(run / "final" / "config.json"));
  };
  auto p = config(plain), c = config(causal), u = config(unshifted);
  CHECK(p["is_causal"] == false);
  CHECK_FALSE(p.contains("diffusion_attention"));
  CHECK_FALSE(p.contains("shift_labels"));
  CHECK(c["is_causal"] == true);
  CHECK(c["diffusion_attention"] == "causal");
  CHECK(u["shift_labels"] == false);
  // The sampler reads them back: an ablated model generates.
  for (const auto& run : {causal, unshifted}) {
    auto r = tess::test::run_tess("generate --model " + tess::test::shell_quote((run / "final").string()) +
                                  " --raw --prompt 'the' --steps 2 --length 4");
    INFO(r.err);
    CHECK(r.exit_code == 0);
  }
}
