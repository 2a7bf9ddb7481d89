// `tess tokenize synthetic|english-corpus|chat`: quickstart data from Debian
// packages and seeds, and a look at how chat JSONL becomes training sequences
// (the preprocessing report, and examples rendered with their span).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/choices.h"
#include "core/util/error.h"
#include "data/chat.h"
#include "data/jsonl.h"
#include "data/synthetic.h"
#include "data/tokenizer.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

// ---- synthetic --------------------------------------------------------------

struct SyntheticArgs {
  std::string output;
  data::SyntheticOptions options;
  std::vector<std::string> tasks;
  std::string wordnet_dir;
};

int synthetic(const SyntheticArgs& a) {
  auto options = a.options;
  if (!a.tasks.empty()) options.tasks = a.tasks;
  if (!a.wordnet_dir.empty()) options.wordnet_dir = a.wordnet_dir;
  std::filesystem::path dir(a.output);
  auto summary = data::write_synthetic(options, dir);
  std::cout << fmt::format("wrote {}, {}, {} (seed {})\n", (dir / "chat_train.jsonl").string(),
                           (dir / "chat_test.jsonl").string(), (dir / "preferences.jsonl").string(), options.seed)
            << summary.table();
  return 0;
}

void add_synthetic(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<SyntheticArgs>();
  auto* c = cmd.add_subcommand(
      "synthetic",
      "Write synthetic chat tasks with exact answers: DIR/chat_train.jsonl, DIR/chat_test.jsonl (held out, no "
      "problem in common) and DIR/preferences.jsonl (reward-model pairs)");
  c->add_option("--output", args->output, "Directory to write the three JSONL files into")->required();
  c->add_option("--seed", args->options.seed, "Seed: the same seed writes the same files")->capture_default_str();
  c->add_option("--train", args->options.train, "Training examples (round-robin over the tasks)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--test", args->options.test, "Held-out test examples")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--preferences", args->options.preferences, "Preference pairs")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--tasks", args->tasks,
                "Tasks to generate, comma-separated (default: all of addition, sorting, reverse, counting, lookup, "
                "definition; definition reads WordNet)")
      ->delimiter(',')
      ->check(CLI::IsMember(data::synthetic_tasks()));
  c->add_option("--wordnet-dir", args->wordnet_dir, "WordNet data directory (Debian package wordnet-base)")
      ->default_str(args->options.wordnet_dir.string());
  c->callback([&action, args] { action = [args] { return synthetic(*args); }; });
}

// ---- english-corpus -----------------------------------------------------------

struct CorpusArgs {
  std::string output;
  data::EnglishCorpusOptions options;
  std::string fortunes_dir, wordnet_dir;
};

int english_corpus(const CorpusArgs& a) {
  auto options = a.options;
  if (!a.fortunes_dir.empty()) options.fortunes_dir = a.fortunes_dir;
  if (!a.wordnet_dir.empty()) options.wordnet_dir = a.wordnet_dir;
  auto report = data::write_english_corpus(options, a.output);
  std::cout << fmt::format("wrote {}: {}\n", a.output, report.summary());
  return 0;
}

void add_english_corpus(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<CorpusArgs>();
  auto* c = cmd.add_subcommand(
      "english-corpus",
      "Write a plain-text English corpus (one document per blank-line-separated block) from the Debian fortunes "
      "and the WordNet glosses, for stage 1");
  c->add_option("--output", args->output, "Text file to write")->required();
  c->add_option("--max-documents", args->options.max_documents, "Keep at most N documents (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--seed", args->options.seed, "Seed of the document order")->capture_default_str();
  c->add_option("--fortunes-dir", args->fortunes_dir, "Fortune files (Debian packages fortunes, fortunes-min)")
      ->default_str(args->options.fortunes_dir.string());
  c->add_option("--wordnet-dir", args->wordnet_dir, "WordNet data directory (Debian package wordnet-base)")
      ->default_str(args->options.wordnet_dir.string());
  c->callback([&action, args] { action = [args] { return english_corpus(*args); }; });
}

// ---- chat -------------------------------------------------------------------

struct ChatArgs {
  std::string tokenizer;
  std::vector<std::string> inputs;
  int64_t seq_len = 512;
  bool system_message = false;
  std::string turns = "first";
  std::string too_long = "truncate_right";
  bool skip_bad = false;
  bool preferences = false;
  int64_t show = 0;
};

int chat(const ChatArgs& a) {
  auto tok = data::load_tokenizer(a.tokenizer);
  if (tok->pad_id() < 0) {
    int32_t pad = tok->add_special_token("[PAD]", /*as_pad=*/true);
    std::cout << fmt::format("note: the tokenizer has no PAD token; added [PAD] as id {} (as model.add_pad_token does)\n",
                             pad);
  }
  data::ChatOptions o;
  o.seq_len = a.seq_len;
  o.system_message = a.system_message;
  o.turns = config::chat_turns_choices().parse(a.turns);
  o.too_long = config::too_long_choices().parse(a.too_long);
  o.skip_bad = a.skip_bad;
  std::vector<std::filesystem::path> files(a.inputs.begin(), a.inputs.end());

  data::ChatReport report;
  std::vector<data::ChatSequence> shown;
  if (a.preferences) {
    auto ds = data::PreferenceDataset::build(files, *tok, o);
    report = ds.report();
    for (int64_t i = 0; i < ds.size() && static_cast<int64_t>(shown.size()) < 2 * a.show; ++i) {
      for (const int32_t* ids : {ds.chosen_ids(i), ds.rejected_ids(i)}) {
        data::ChatSequence s;
        s.ids.assign(ids, ids + ds.seq_len());
        s.prompt_length = ds.prompt_length(i);
        s.length = (ids == ds.chosen_ids(i) ? ds.chosen_last(i) : ds.rejected_last(i)) + 1;
        s.span_mask.assign(static_cast<size_t>(ds.seq_len()), 0);
        std::fill(s.span_mask.begin() + s.prompt_length, s.span_mask.end(), uint8_t{1});
        shown.push_back(std::move(s));
      }
    }
  } else {
    auto ds = data::ChatDataset::build(files, *tok, o);
    report = ds.report();
    for (int64_t i = 0; i < ds.size() && i < a.show; ++i) shown.push_back(ds.sequence(i));
  }
  const bool cut_right = o.too_long == config::TooLongPolicy::TruncateRight;
  std::cout << fmt::format(
      "{}: {} record(s), {} example(s) of {} tokens\n"
      "truncated ({}): {}\n"
      "dropped (too long, {}): {}\n"
      "dropped (response too long for the sequence length): {}\n"
      "bad lines skipped: {}\n"
      "system messages left out: {}\n",
      a.preferences ? "preference pairs" : "chat data", report.records, report.examples, a.seq_len,
      cut_right ? "cut at the sequence length" : "prompt cut from the left", report.truncated,
      cut_right ? "no answer token left" : "policy drop", report.dropped_too_long, report.dropped_response_too_long,
      report.bad_lines, report.system_left_out);
  for (const auto& b : report.first_bad) std::cout << "  bad: " << b << '\n';
  if (report.examples > 0) {
    const double n = static_cast<double>(report.examples) * (a.preferences ? 2.0 : 1.0);
    std::cout << fmt::format("mean tokens per sequence: {:.1f} real, {:.1f} in the span, {:.1f} PAD\n",
                             static_cast<double>(report.real_tokens) / n, static_cast<double>(report.span_tokens) / n,
                             static_cast<double>(report.pad_tokens) / n);
  }
  for (size_t i = 0; i < shown.size(); ++i) {
    std::string title = a.preferences ? fmt::format("pair {} ({})", i / 2 + 1, i % 2 == 0 ? "chosen" : "rejected")
                                      : fmt::format("example {}", i + 1);
    std::cout << "\n--- " << title << ": " << data::render_sequence(*tok, shown[i]);
  }
  return 0;
}

void add_chat(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<ChatArgs>();
  auto* c = cmd.add_subcommand(
      "chat",
      "Tokenize chat JSONL ({messages} or {prompt, completion}) with the Tulu template and print the preprocessing "
      "report; --show N renders examples with the span marked");
  c->add_option("--tokenizer", args->tokenizer, "Model directory, tokenizer.model or tokenizer.json")->required();
  c->add_option("--input", args->inputs, "Chat JSONL file (.gz works; repeatable)")->required()->allow_extra_args(false);
  c->add_option("--seq-len", args->seq_len, "Sequence length L")->required()->check(CLI::Range(int64_t{4}, int64_t{1} << 24));
  c->add_flag("--system-message", args->system_message,
              "Render a leading system message as <|system|>\\n{system}\\n (data.chat.system_message)");
  c->add_option("--turns", args->turns, "first user/assistant pair, or all turns with the last answer as the span (data.chat.turns)")
      ->check(CLI::IsMember(config::chat_turns_choices().names()))
      ->capture_default_str();
  c->add_option("--too-long", args->too_long,
                "Examples longer than L: cut the sequence at L (the reference), cut the prompt from the left, or drop "
                "them (data.chat.too_long)")
      ->check(CLI::IsMember(config::too_long_choices().names()))
      ->capture_default_str();
  c->add_flag("--skip-bad", args->skip_bad, "Skip malformed lines, reporting them (data.skip_bad_records)");
  c->add_flag("--preferences", args->preferences, "The input holds preference pairs {prompt, chosen, rejected}");
  c->add_option("--show", args->show, "Render the first N examples with the span between ⟦ ⟧")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->callback([&action, args] { action = [args] { return chat(*args); }; });
}

}  // namespace

void add_tokenize_chat_commands(CLI::App& tokenize, Action& action) {
  add_synthetic(tokenize, action);
  add_english_corpus(tokenize, action);
  add_chat(tokenize, action);
}

}  // namespace tess::cli
