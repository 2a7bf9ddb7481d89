// The trainer tests' shared inputs and helpers (tests/train/trainer_workspace.h).
#include "tests/train/trainer_workspace.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include <fmt/format.h>

#include "core/checkpoint/checkpoint.h"
#include "data/corpus.h"
#include "data/tokenizer.h"

namespace tess::test {
namespace fs = std::filesystem;

Workspace::Workspace() {
  std::string text;
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "park", "in", "sun",
                         "birds", "sing", "loud", "every", "morning", "and", "night", "we", "walk", "home"};
  uint32_t x = 12345;
  for (int doc = 0; doc < 300; ++doc) {
    for (int w = 0; w < 30; ++w) {
      x = x * 1103515245u + 12345u;
      text += std::string(words[(x >> 16) % 22]) + (w % 10 == 9 ? ".\n" : " ");
    }
    text += "\n";
  }
  auto corpus_txt = dir.write("corpus.txt", text);
  tess::data::SentencePieceTrainOptions spm;
  spm.inputs = {corpus_txt};
  spm.model_prefix = dir / "spm";
  spm.vocab_size = 400;
  spm.threads = 1;
  tess::data::train_sentencepiece(spm);
  fs::create_directories(dir / "tok");
  fs::copy_file(dir / "spm.model", dir / "tok" / "tokenizer.model");
  tokenizer = dir / "tok";
  auto tok = tess::data::load_tokenizer(tokenizer);
  vocab = tok->vocab_size();
  tess::data::CorpusOptions co;
  co.inputs = {corpus_txt.string()};
  co.output = dir / "corpus";
  co.threads = 1;
  co.progress = false;
  tess::data::tokenize_corpus(*tok, co);
  corpus = co.output;
  std::string chat_text;
  for (int i = 0; i < 60; ++i)
    chat_text += fmt::format("{{\"messages\": [{{\"role\": \"user\", \"content\": \"add {} and {}\"}}, "
                             "{{\"role\": \"assistant\", \"content\": \"{}\"}}]}}\n",
                             i, i + 1, 2 * i + 1);
  chat = dir.write("chat.jsonl", chat_text);
  std::string pref_text;  // the right sum preferred over a refusal
  for (int i = 0; i < 60; ++i)
    pref_text += fmt::format("{{\"prompt\": \"add {} and {}\", \"chosen\": \"{}\", \"rejected\": \"the cat sat "
                             "on a mat\"}}\n",
                             i, i + 1, 2 * i + 1);
  preferences = dir.write("preferences.jsonl", pref_text);
}
fs::path Workspace::config(const std::string& name, const std::string& body, bool fresh) {
  std::string shape = fresh ? "model:\n  hidden_size: 32\n  intermediate_size: 64\n  num_layers: 2\n  num_heads: 4\n"
                              "  num_kv_heads: 2\n  max_position_embeddings: 64\n"
                            : "";
  // The tiny tokenizer spends most of the 32 positions on the chat template:
  // the reference's right cut (data.chat.too_long's default) would leave no
  // answer token, so chat runs cut the prompt instead.
  std::string chat = body.find("stage: instruction") != std::string::npos ? "  chat:\n    too_long: truncate_prompt\n" : "";
  return dir.write(name + ".yaml",
                   shape +
                   "data:\n  seq_len: 32\n  prefetch: 2\n" + chat +
                   "train:\n  batch_size: 4\n  lr: 3.0e-3\n  lr_schedule: cosine\n  warmup_steps: 2\n"
                   "log:\n  every: 1\n  progress_interval_s: 1000\n" +
                       body);
}
Workspace& workspace() {
  static Workspace w;
  return w;
}

std::vector<nlohmann::json> metrics(const fs::path& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

std::vector<std::string> loss_texts(const fs::path& run) {
  std::vector<std::string> out;
  for (const auto& j : metrics(run)) out.push_back(j.at("loss").dump());
  return out;
}

std::vector<std::string> differing_steps(const fs::path& a, const fs::path& b, double rel) {
  auto x = metrics(a), y = metrics(b);
  std::vector<std::string> out;
  if (x.size() != y.size()) out.push_back(fmt::format("{} vs {} steps", x.size(), y.size()));
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)
    for (const char* key : {"loss", "grad_norm", "tokens"}) {
      double u = x[i].at(key).get<double>(), v = y[i].at(key).get<double>();
      bool same = rel == 0 ? x[i].at(key).dump() == y[i].at(key).dump() : std::abs(u - v) <= rel * std::abs(u);
      if (!same) out.push_back(fmt::format("step {} {}: {} vs {}", i + 1, key, x[i].at(key).dump(), y[i].at(key).dump()));
    }
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

void train_ok(const fs::path& cfg, const std::string& sets) {
  auto r = run_tess("train " + cfg.string() + " " + sets);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
}

int64_t train_killed_and_resumed(const std::string& command, int kill_after, const fs::path& run,
                                 const std::string& resume_env) {
  auto crashed = run_command(fmt::format("TESS_FAULT=after_step:{} {}", kill_after, command));
  INFO(crashed.err);
  REQUIRE(crashed.exit_code != 0);
  REQUIRE(metrics(run).size() == static_cast<size_t>(kill_after));
  REQUIRE_FALSE(fs::exists(run / "final"));
  auto latest = tess::checkpoint::latest_checkpoint(run);
  REQUIRE(latest);
  auto saved = tess::checkpoint::verify_checkpoint(*latest).step;
  REQUIRE(saved > 0);
  REQUIRE(saved <= kill_after);
  auto resumed = run_command(resume_env + " " + command);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  auto at = resumed.err.find("resumed from ");
  REQUIRE(at != std::string::npos);
  auto step_at = resumed.err.find(" at step ", at);
  REQUIRE(step_at != std::string::npos);
  int64_t step = std::stoll(resumed.err.substr(step_at + 9));
  CHECK(step == saved);
  return step;
}

std::string tess_cmd(const std::string& args) { return fmt::format("'{}' {}", TESS_BINARY, args); }

}  // namespace tess::test
