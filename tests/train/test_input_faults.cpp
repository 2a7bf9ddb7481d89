// Hostile inputs to a training run (issue "every input bounded"): each case
// first reproduces what used to crash or run silently wrong, through the real
// `tess` binary on tiny models, and asserts a clear error naming the input.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>

#include <fmt/format.h>

#include "core/checkpoint/checkpoint.h"
#include "core/util/file.h"
#include "tests/support/test_support.h"
#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using namespace tess::test;
using Catch::Contains;

// Used to: LibTorch's "index out of range in self" with a stack trace at the
// first step that drew the id, naming no file.
TEST_CASE("a token shard holding an id outside the vocabulary stops training naming the shard", "[faults][train]") {
  auto& w = workspace();
  auto corpus = w.dir / "corpus_oov";
  fs::remove_all(corpus);
  fs::copy(w.corpus, corpus, fs::copy_options::recursive);
  auto shard = corpus / "train" / "shard-00000.bin";
  auto bytes = tess::util::read_file(shard);
  REQUIRE(bytes.size() > 64);
  for (size_t at = 32; at + 1 < bytes.size(); at += 32) {  // every 16th uint16 id becomes 65535
    bytes[at] = static_cast<char>(0xff);
    bytes[at + 1] = static_cast<char>(0xff);
  }
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  auto cfg = w.config("oov", "run:\n  stage: ar\n");
  auto r = run_tess("train " + cfg.string() +
                    fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps=3",
                                (w.dir / "runs/oov").string(), w.tokenizer.string(), corpus.string()));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains(fmt::format("dataset '{}' (train): token ", corpus.string())) &&
                        Contains("of shard 'train/shard-00000.bin'") && Contains("is id 65535") &&
                        Contains(fmt::format("vocabulary of {}", w.vocab)));
  CHECK_THAT(r.err, !Contains("index out of range") && !Contains("Exception raised from"));
}

// Used to: a bare "different configuration (hash a -> b)" warning; and a
// resume past train.max_steps silently wrote the checkpoint's step as final.
TEST_CASE("a resume names each changed key with its old and new value and refuses a run already past its length",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("changed_keys", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/changed_keys";
  auto sets = [&](int steps, const char* lr) {
    return fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps={} "
                       "--set checkpoint.every=2 --set train.lr={}",
                       run.string(), w.tokenizer.string(), w.corpus.string(), steps, lr);
  };
  train_ok(cfg, sets(4, "0.001"));
  auto r = run_tess("train " + cfg.string() + sets(6, "0.002"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, Contains("with 2 changed key(s)") && Contains("train.lr: 0.001 -> 0.002") &&
                        Contains("train.max_steps: 4 -> 6"));
  CHECK(metrics(run).size() == 6);
  auto past = run_tess("train " + cfg.string() + sets(3, "0.002"));
  CHECK(past.exit_code == 1);
  CHECK_THAT(past.err, Contains("the run resumed at step 6 is already past its length of 3 steps (train.max_steps = 3, "
                                "set at --set train.max_steps=3)"));
  CHECK(tess::checkpoint::latest_checkpoint(run)->filename() == "step_00000006");  // nothing written
}

// Used to: `tess plan --set model.num_layers=4e9` hung, and a fresh model of
// absurd shape ended in std::bad_alloc after allocating gigabytes.
TEST_CASE("absurd model sizes are refused before anything is allocated", "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("absurd", "run:\n  stage: ar\n");
  auto base = fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps=1",
                          (w.dir / "runs/absurd").string(), w.tokenizer.string(), w.corpus.string());
  auto plan = run_command("timeout 60 " + tess_cmd("plan " + cfg.string() + base + " --set model.num_layers=4000000000"));
  CHECK(plan.exit_code == 1);
  CHECK_THAT(plan.err, Contains("model.num_layers") && Contains("4096"));
  auto huge = run_command("timeout 60 " + tess_cmd("train " + cfg.string() + base +
                                                   " --set model.hidden_size=65536 --set model.intermediate_size=1048576 "
                                                   "--set model.num_heads=512 --set model.num_kv_heads=512"));
  CHECK(huge.exit_code == 1);
  CHECK_THAT(huge.err, Contains("of weights alone), more than this machine's") && Contains("tess plan"));
}

// Used to: on a full disk metrics.jsonl and config.yaml ended up empty,
// spdlog printed one "LOG ERROR", and training went on for hours. Here the
// disk is "full" through RLIMIT_FSIZE (writes past it fail with EFBIG).
TEST_CASE("a failed write stops the run naming the file unless log.on_write_error is warn and loses no checkpoint",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("full_disk", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/full_disk";
  auto sets = [&](int steps, int every) {
    return fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps={} "
                       "--set checkpoint.every={} --set log.every=1 --set log.tensorboard=false",
                       run.string(), w.tokenizer.string(), w.corpus.string(), steps, every);
  };
  train_ok(cfg, sets(4, 2));
  REQUIRE(fs::file_size(run / "config.yaml") < 40000);
  // Files may grow to 48 KiB; the log is made longer than that, the model is larger.
  std::ofstream(run / "log.txt", std::ios::app) << std::string(64 * 1024, '.') << "\n";
  auto limited = [&](const std::string& args) {
    return run_command("bash -c " + shell_quote("ulimit -f 48; trap '' XFSZ; exec " + tess_cmd(args)));
  };
  auto stop = limited("train " + cfg.string() + sets(2000, 0));
  INFO(stop.err);
  CHECK(stop.exit_code == 1);
  CHECK_THAT(stop.err, Contains("cannot write the log file '" + (run / "log.txt").string() + "'") &&
                           Contains("a last checkpoint of step") && Contains("failed too"));
  CHECK(tess::checkpoint::latest_checkpoint(run)->filename() == "step_00000004");
  CHECK(run_tess("checkpoint verify " + run.string()).exit_code == 0);

  auto warn = limited("train " + cfg.string() + sets(2000, 0) + " --set log.on_write_error=warn");
  INFO(warn.err);
  CHECK(warn.exit_code == 1);
  auto once = warn.err.find("log.on_write_error: warn");
  CHECK(once != std::string::npos);
  CHECK(warn.err.find("log.on_write_error: warn", once + 1) == std::string::npos);
  CHECK_THAT(warn.err, Contains("cannot write '" + (run / "metrics.jsonl").string() + "': File too large"));
  CHECK(tess::checkpoint::latest_checkpoint(run)->filename() == "step_00000004");

  // Nothing was lost: the run resumes from its last checkpoint.
  auto resumed = run_tess("train " + cfg.string() + sets(6, 2));
  INFO(resumed.err);
  CHECK(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Contains("at step 4"));
  CHECK(metrics(run).size() == 6);
}

// With several ranks the last checkpoint is collective: the rank whose write
// failed tells the others through the next step's count all-reduce, and
// every rank stops after the same save attempt (used to: rank 0 alone
// stopped without one, and rank 1 timed out in its next collective).
TEST_CASE("a failed write on rank 0 of two stops both ranks after one last checkpoint attempt", "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("full_disk_2", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/full_disk_2";
  auto sets = [&](int steps, int every) {
    return fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps={} "
                       "--set checkpoint.every={} --set log.every=1 --set log.tensorboard=false --set train.batch_size=2 "
                       "--set dist.timeout_s=30",
                       run.string(), w.tokenizer.string(), w.corpus.string(), steps, every);
  };
  auto launch = [&](const std::string& sets) {
    return "launch --nproc 2 --grace-seconds 5 -- train " + cfg.string() + sets;
  };
  REQUIRE(run_command(tess_cmd(launch(sets(4, 2)))).exit_code == 0);
  std::ofstream(run / "log.txt", std::ios::app) << std::string(64 * 1024, '.') << "\n";
  auto start = std::chrono::steady_clock::now();
  auto stop = run_command("bash -c " + shell_quote("ulimit -f 48; trap '' XFSZ; exec " + tess_cmd(launch(sets(2000, 0)))));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(stop.err);
  CHECK(stop.exit_code != 0);
  CHECK(seconds < 30);  // not rank 1 waiting out dist.timeout_s
  CHECK_THAT(stop.err, Contains("[rank 0]") && Contains("cannot write the log file '" + (run / "log.txt").string() + "'") &&
                           Contains("a last checkpoint of step"));
  CHECK_THAT(stop.err, Contains("[rank 1]") && Contains("another rank cannot write the run's files"));
  CHECK_THAT(stop.err, !Contains("timed out"));
  CHECK(tess::checkpoint::latest_checkpoint(run)->filename() == "step_00000004");
  CHECK(run_tess("checkpoint verify " + run.string()).exit_code == 0);
}
