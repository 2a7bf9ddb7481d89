#pragma once
// What the trainer tests share: a tokenizer, a packed corpus, chat and
// preference files made once per test binary, small run configs over them,
// and helpers to run `tess train`, read metrics.jsonl and crash a run at an
// exact step.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace tess::test {

struct Workspace {
  TempDir dir;
  std::filesystem::path tokenizer, corpus, chat, preferences;
  int32_t vocab = 0;
  Workspace();
  // A run config `name`.yaml: seq 32, batch 4, every step logged, then
  // `body`; `fresh`: the run builds a new model, so the shape keys are part of it.
  std::filesystem::path config(const std::string& name, const std::string& body, bool fresh = true);
};
Workspace& workspace();

// metrics.jsonl's step lines (those with a loss).
std::vector<nlohmann::json> metrics(const std::filesystem::path& run);
// The exact text of each step's loss (bit-exact comparison).
std::vector<std::string> loss_texts(const std::filesystem::path& run);
// The steps whose loss, grad_norm or token count differ between two runs
// beyond the relative tolerance `rel` (0: the logged text must be identical),
// one line each; empty when the runs agree step for step.
std::vector<std::string> differing_steps(const std::filesystem::path& a, const std::filesystem::path& b, double rel);
std::string joined(const std::vector<std::string>& lines);

// `tess train CFG SETS` must succeed.
void train_ok(const std::filesystem::path& cfg, const std::string& sets);
// `tess ARGS` as a shell command line.
std::string tess_cmd(const std::string& args);

// Runs `command` (a shell command line that trains into `run`) with
// TESS_FAULT=after_step:<kill_after>, so every process SIGKILLs itself right
// after step `kill_after` is logged, and checks the crash landed where meant:
// the run failed, logged exactly `kill_after` steps, wrote no final model and
// left a committed checkpoint before it. Then runs `command` again (with
// `resume_env`, e.g. a test mutation) and returns the step the second run's
// log says it resumed from (> 0, or the test fails).
int64_t train_killed_and_resumed(const std::string& command, int kill_after, const std::filesystem::path& run,
                                 const std::string& resume_env = "");

}  // namespace tess::test
