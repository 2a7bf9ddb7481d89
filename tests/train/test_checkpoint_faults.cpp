// Checkpoints that can never be lost (docs/checkpoints.md, "Guarantees"):
// runs killed inside a commit, a fresh run into an old run directory, a
// missing `latest`, two runs in one directory. Each case first reproduces
// what used to lose work, through the real `tess` binary on tiny models.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>

#include <fmt/format.h>

#include "core/checkpoint/checkpoint.h"
#include "tests/support/test_support.h"
#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using namespace tess::test;
using Catch::Contains;

namespace {

std::string ar_sets(const fs::path& run, int steps, int every) {
  auto& w = workspace();
  return fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps={} "
                     "--set checkpoint.every={} --set checkpoint.keep_last=2",
                     run.string(), w.tokenizer.string(), w.corpus.string(), steps, every);
}

// The step the run's log says it resumed from, or -1.
int64_t resumed_step(const std::string& log) {
  auto at = log.find("resumed from ");
  if (at == std::string::npos) return -1;
  auto step = log.find(" at step ", at);
  return step == std::string::npos ? -1 : std::stoll(log.substr(step + 9));
}

}  // namespace

// Killed between each two file-system steps of a commit (the manifest
// written, the old copy removed, the rename, `latest`), the next run
// recovers a committed checkpoint and continues bit for bit.
TEST_CASE("a run killed at any point of a checkpoint commit resumes from that checkpoint bit-exactly",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("commit_faults", "run:\n  stage: ar\n");
  auto whole = w.dir / "runs/commit_whole";
  train_ok(cfg, ar_sets(whole, 6, 3));
  for (int point = 1; point <= 4; ++point) {
    INFO("killed at checkpoint_commit:" << point);
    auto run = w.dir / fmt::format("runs/commit_{}", point);
    // Synchronous saves, so that the kill lands before step 4 is logged.
    auto command = tess_cmd("train " + cfg.string() + ar_sets(run, 6, 3) + " --set checkpoint.async=false");
    auto crashed = run_command(fmt::format("TESS_FAULT=checkpoint_commit:{} {}", point, command));
    REQUIRE(crashed.exit_code != 0);
    REQUIRE(metrics(run).size() == 3);  // killed while committing step 3
    auto r = run_command(command);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(resumed_step(r.err) == 3);
    CHECK(loss_texts(run) == loss_texts(whole));
    CHECK(run_tess("checkpoint verify " + run.string()).exit_code == 0);
  }
  // A finished run resumed saves its last step again, replacing the copy
  // on disk: killed in that window, nothing is lost either.
  for (int point = 1; point <= 4; ++point) {
    INFO("re-save killed at checkpoint_commit:" << point);
    auto run = w.dir / fmt::format("runs/resave_{}", point);
    auto command = tess_cmd("train " + cfg.string() + ar_sets(run, 6, 3));
    REQUIRE(run_command(command).exit_code == 0);
    REQUIRE(run_command(fmt::format("TESS_FAULT=checkpoint_commit:{} {}", point, command)).exit_code != 0);
    auto verify = run_tess("checkpoint verify " + run.string());
    INFO(verify.out << verify.err);
    CHECK(verify.exit_code == 0);  // `tess checkpoint verify` recovers first, like a run
    auto latest = tess::checkpoint::latest_checkpoint(run);
    REQUIRE(latest);
    CHECK(latest->filename() == "step_00000006");
    CHECK(tess::checkpoint::verify_checkpoint(*latest).step == 6);
  }
}

TEST_CASE("a fresh run into a directory with another run's checkpoints is refused unless checkpoint.overwrite",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("fresh_into_old", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/fresh_into_old";
  train_ok(cfg, ar_sets(run, 10, 5));
  // Used to: write step 2 and 4, delete each at once (retention by step name
  // kept 5 and 10), and leave `latest` naming a deleted directory.
  auto refused = run_tess("train " + cfg.string() + ar_sets(run, 4, 2) + " --set checkpoint.resume=none");
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Contains("checkpoint.resume is none but " + (run / "checkpoints").string() +
                                   " holds 2 checkpoint(s) of an earlier run (newest: step_00000010, step 10)") &&
                              Contains("checkpoint.overwrite: true"));
  CHECK(tess::checkpoint::verify_checkpoint(*tess::checkpoint::latest_checkpoint(run)).step == 10);  // untouched
  train_ok(cfg, ar_sets(run, 4, 2) + " --set checkpoint.resume=none --set checkpoint.overwrite=true");
  auto v = run_tess("checkpoint verify " + run.string());
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  CHECK(tess::checkpoint::latest_checkpoint(run)->filename() == "step_00000004");
  REQUIRE(metrics(run).size() == 4);
  // A resume from an older checkpoint keeps its new saves too (retention by commit order).
  auto older = w.dir / "runs/resume_older";
  train_ok(cfg, ar_sets(older, 10, 5) + " --set checkpoint.keep_last=3");
  fs::copy(older / "checkpoints/step_00000005", w.dir / "runs/older_step_5", fs::copy_options::recursive);
  train_ok(cfg, ar_sets(older, 8, 2) + " --set checkpoint.resume=" + (w.dir / "runs/older_step_5").string());
  CHECK(tess::checkpoint::latest_checkpoint(older)->filename() == "step_00000008");
  CHECK(run_tess("checkpoint verify " + older.string()).exit_code == 0);
}

TEST_CASE("without a 'latest' pointer, resume auto continues from the newest complete checkpoint and says so",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("no_latest", "run:\n  stage: ar\n");
  auto whole = w.dir / "runs/no_latest_whole", run = w.dir / "runs/no_latest";
  train_ok(cfg, ar_sets(whole, 8, 3));
  auto crashed = run_command("TESS_FAULT=after_step:7 " + tess_cmd("train " + cfg.string() + ar_sets(run, 8, 3)));
  REQUIRE(crashed.exit_code != 0);
  fs::remove(run / "checkpoints/latest");
  // Used to: start again from step 0, truncating metrics.jsonl.
  auto r = run_tess("train " + cfg.string() + ar_sets(run, 8, 3));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.err, Contains("no 'latest' pointer: it now names step_00000006"));
  CHECK(resumed_step(r.err) == 6);
  CHECK(loss_texts(run) == loss_texts(whole));
}

TEST_CASE("a second run in the same run directory is refused, naming the process that holds it",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("locked", "run:\n  stage: ar\n");
  auto run = w.dir / "runs/locked";
  auto script = w.dir / "locked.sh";
  std::ofstream(script) << tess_cmd("train " + cfg.string() + ar_sets(run, 100000, 0)) << " >/dev/null 2>&1 &\n"
                        << "pid=$!\n"
                        << "for i in $(seq 1 2400); do grep -q '\"step\":2,' '" << (run / "metrics.jsonl").string()
                        << "' 2>/dev/null && break; sleep 0.05; done\n"
                        << tess_cmd("train " + cfg.string() + ar_sets(run, 3, 0)) << "\nrc=$?\n"
                        << "echo \"holder=$pid\" >&2\nkill -TERM $pid; wait $pid\nexit $rc\n";
  auto r = run_command("bash " + script.string());
  INFO(r.err);
  CHECK(r.exit_code == 1);
  auto holder = r.err.substr(r.err.find("holder=") + 7);
  holder = holder.substr(0, holder.find('\n'));
  CHECK_THAT(r.err, Contains("run.dir '" + run.string() + "' is in use by another process (pid " + holder + " on host"));
}

// A user's crash: SIGKILL at moments nobody chose (seeded delays), while
// adaptation steps run and checkpoints are written every step in the
// background. Wherever the kills land, the run ends with the uninterrupted
// run's losses (a resume that skipped the random streams fails here).
TEST_CASE("a run SIGKILLed at random moments of training and saving ends with the uninterrupted run's losses",
          "[faults][train]") {
  auto& w = workspace();
  auto cfg = w.config("random_kills", "run:\n  stage: adaptation\n");
  auto whole = w.dir / "runs/random_kills_whole", run = w.dir / "runs/random_kills";
  train_ok(cfg, ar_sets(whole, 300, 1));
  auto command = tess_cmd("train " + cfg.string() + ar_sets(run, 300, 1));
  std::mt19937 rng(20261204);
  std::uniform_int_distribution<int> delay_ms(150, 1200);
  int killed = 0;
  for (int i = 0; i < 5; ++i) {
    int ms = delay_ms(rng);
    auto r = run_command(fmt::format("({} >/dev/null 2>&1 & pid=$!; sleep {}.{:03d}; kill -9 $pid 2>/dev/null && "
                                     "echo killed; wait $pid; exit 0)",
                                     command, ms / 1000, ms % 1000));
    if (r.out.find("killed") != std::string::npos) ++killed;
  }
  INFO(killed << " of 5 runs were killed before they finished");
  auto r = run_command(command);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(loss_texts(run) == loss_texts(whole));
  CHECK(run_tess("checkpoint verify " + run.string()).exit_code == 0);
  CHECK(killed >= 1);  // else the delays no longer reach into the runs: shorten them
}
