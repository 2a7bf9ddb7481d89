// `tess tokenize corpus`: plain text / JSONL corpora -> a token dataset
// directory (shards + document index + meta.json) for stage ar/adaptation,
// and `tess tokenize inspect` to look at (and verify) such a directory.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/util/error.h"
#include "data/corpus.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

// ---- corpus ------------------------------------------------------------------------

struct CorpusArgs {
  std::string tokenizer;
  std::string doc_split = "blank-line";
  std::string format = "auto";
  bool no_progress = false;
  data::CorpusOptions options;
  std::string output;
};

int tokenize_corpus(const CorpusArgs& a) {
  auto options = a.options;
  options.output = a.output;
  options.doc_split = data::parse_doc_split(a.doc_split);
  options.format = data::parse_input_format(a.format);
  options.progress = !a.no_progress;
  auto tok = data::load_tokenizer(a.tokenizer);
  auto report = data::tokenize_corpus(*tok, options);
  std::cout << report.summary();
  std::cout << fmt::format("tokenizer: {} {} (vocab {}, eos {})\n", tok->kind(), tok->content_hash(),
                           tok->vocab_size(), tok->eos_id());
  return 0;
}

void add_corpus(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<CorpusArgs>();
  auto& o = args->options;
  auto* c = cmd.add_subcommand(
      "corpus", "Tokenize plain-text/JSONL corpora into a token dataset directory (binary shards + meta.json)");
  c->add_option("--tokenizer", args->tokenizer, "Model directory, tokenizer.model or tokenizer.json")->required();
  c->add_option("--input", o.inputs,
                "Text or JSONL file (.gz works), directory (recursive) or quoted glob; repeatable")
      ->required()
      ->allow_extra_args(false);
  c->add_option("--output", args->output, "Dataset directory to create")->required();
  c->add_option("--doc-split", args->doc_split,
                "Documents of a text file: blocks separated by blank lines, or the whole file")
      ->check(CLI::IsMember({"blank-line", "file"}))
      ->capture_default_str();
  c->add_option("--format", args->format,
                "Input format; auto = JSONL for *.jsonl, *.json, *.ndjson (optionally .gz), else text")
      ->check(CLI::IsMember({"auto", "text", "jsonl"}))
      ->capture_default_str();
  c->add_option("--text-field", o.text_field, "JSONL field holding the document text")->capture_default_str();
  auto* frac = c->add_option("--validation-fraction", o.validation_fraction,
                             "Share of the --input documents sent to the validation split (per document, seeded)")
                   ->check(CLI::Range(0.0, 0.999999))
                   ->capture_default_str();
  auto* vin = c->add_option("--validation-input", o.validation_inputs,
                            "Separate validation corpus (same kinds as --input); repeatable")
                  ->allow_extra_args(false);
  frac->excludes(vin);
  c->add_option("--seed", o.split_seed, "Seed of the train/validation split")->capture_default_str();
  c->add_option("--threads", o.threads, "Tokenizer threads (0 = all cores); the output does not depend on it")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--shard-tokens", o.shard_tokens, "Tokens per shard file")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--dtype", o.dtype, "Token storage: auto = uint16 when the vocabulary fits, else uint32")
      ->check(CLI::IsMember({"auto", "uint16", "uint32"}))
      ->capture_default_str();
  c->add_flag("--skip-bad-records", o.skip_bad_records,
              "Skip malformed JSONL lines (reported with file:line) instead of failing");
  c->add_flag("--overwrite", o.overwrite, "Replace an existing output directory (only once the new one is complete)");
  c->add_flag("--no-progress", args->no_progress, "Do not draw the progress line");
  c->callback([&action, args] { action = [args] { return tokenize_corpus(*args); }; });
}

// ---- inspect -----------------------------------------------------------------------

struct InspectArgs {
  std::string dataset;
  bool verify = false;
};

int inspect(const InspectArgs& a) {
  data::OpenOptions open;
  open.verify_checksums = a.verify;
  // Opening checks sizes (and checksums with --verify) of both splits.
  data::TokenDataset train(a.dataset, "train", open);
  data::TokenDataset validation(a.dataset, "validation", open);
  const auto& m = train.meta();
  std::cout << fmt::format("dataset {} (format {})\n", a.dataset, m.format_version);
  std::cout << fmt::format("tokenizer: {} {} (vocab {}, bos {}, eos {}, pad {})\n", m.tokenizer_kind,
                           m.tokenizer_hash, m.vocab_size, m.bos_id, m.eos_id, m.pad_id);
  std::cout << fmt::format("dtype {}, shard size {} tokens, doc split {}\n", m.dtype, m.shard_tokens, m.doc_split);
  for (const auto* ds : {&train, &validation})
    std::cout << fmt::format("{}: {} documents, {} tokens in {} shard(s)\n", ds->split(), ds->num_documents(),
                             ds->num_tokens(), m.split(ds->split()).shards.size());
  for (const auto& s : m.sources)
    std::cout << fmt::format("source {} ({}, {}): {} documents, {} tokens{}{}\n", s.path, s.format, s.role,
                             s.documents, s.tokens,
                             s.empty_documents ? fmt::format(", {} empty", s.empty_documents) : "",
                             s.skipped_records ? fmt::format(", {} skipped", s.skipped_records) : "");
  if (a.verify) {
    train.check_ids();
    validation.check_ids();
  }
  std::cout << (a.verify ? fmt::format("checksums: ok\nids: ok (all below the vocabulary of {})\n", m.vocab_size)
                         : "sizes: ok (pass --verify to check the sha256 of every file and every id)\n");
  return 0;
}

void add_inspect(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<InspectArgs>();
  auto* c = cmd.add_subcommand("inspect", "Print a token dataset's meta.json summary and check its files");
  c->add_option("--dataset", args->dataset, "Dataset directory written by `tess tokenize corpus`")->required();
  c->add_flag("--verify", args->verify, "Also check the sha256 of every shard and index, and every id against the vocabulary");
  c->callback([&action, args] { action = [args] { return inspect(*args); }; });
}

}  // namespace

void add_tokenize_corpus_commands(CLI::App& tokenize, Action& action) {
  add_corpus(tokenize, action);
  add_inspect(tokenize, action);
}

}  // namespace tess::cli
