// `tess tokenize train-spm|encode|decode`: train a SentencePiece tokenizer and
// look at what a tokenizer does with a piece of text. Each sub-subcommand has
// its own argument struct and add_* function, so new ones slot in beside them.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/util/error.h"
#include "data/tokenizer.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

// ---- train-spm -------------------------------------------------------------

struct TrainSpmArgs {
  std::vector<std::string> inputs;
  std::string output;
  data::SentencePieceTrainOptions options;
};

int train_spm(const TrainSpmArgs& a) {
  auto options = a.options;
  options.inputs.assign(a.inputs.begin(), a.inputs.end());
  std::filesystem::path dir(a.output);
  options.model_prefix = dir / "tokenizer";
  data::train_sentencepiece(options);
  auto tok = data::load_tokenizer(dir);
  std::cout << fmt::format(
      "wrote {}\nvocab size: {} (requested {})\nspecial ids: unk={} bos={} eos={} pad={}\n"
      "content hash: {}\n",
      (dir / "tokenizer.model").string(), tok->vocab_size(), options.vocab_size, tok->unk_id(),
      tok->bos_id(), tok->eos_id(), tok->pad_id(), tok->content_hash());
  return 0;
}

void add_train_spm(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<TrainSpmArgs>();
  auto* c = cmd.add_subcommand("train-spm", "Train a SentencePiece tokenizer (Llama id convention) into DIR/tokenizer.model");
  c->add_option("--input", args->inputs, "Plain-text training file, one sentence per line; .gz works (repeatable)")
      ->required()
      ->allow_extra_args(false);
  c->add_option("--output", args->output, "Directory to write tokenizer.model and tokenizer.vocab into")->required();
  c->add_option("--vocab-size", args->options.vocab_size, "Number of pieces (small corpora may give fewer)")
      ->required()
      ->check(CLI::PositiveNumber);
  c->add_option("--model-type", args->options.model_type, "SentencePiece algorithm")
      ->check(CLI::IsMember({"unigram", "bpe"}))
      ->capture_default_str();
  c->add_option("--seed", args->options.seed, "Random seed (training is reproducible for a fixed seed)")
      ->capture_default_str();
  c->add_option("--threads", args->options.threads, "Training threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--character-coverage", args->options.character_coverage,
                "Fraction of characters covered by pieces; the rest fall back to bytes")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  c->add_option("--input-sentence-size", args->options.input_sentence_size,
                "Sentences sampled from the inputs (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->callback([&action, args] { action = [args] { return train_spm(*args); }; });
}

// ---- encode / decode --------------------------------------------------------

struct EncodeArgs {
  std::string tokenizer;
  std::string text;
  bool pieces = false;
};

int encode(const EncodeArgs& a) {
  auto tok = data::load_tokenizer(a.tokenizer);
  auto ids = tok->encode(a.text);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += a.pieces ? tok->piece(ids[i]) : std::to_string(ids[i]);
  }
  std::cout << line << '\n';
  spdlog::debug("{} token(s) with tokenizer {}", ids.size(), tok->content_hash());
  return 0;
}

void add_encode(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<EncodeArgs>();
  auto* c = cmd.add_subcommand("encode", "Print the token ids of a text (no BOS/EOS), space-separated");
  c->add_option("--tokenizer", args->tokenizer, "Model directory, tokenizer.model or tokenizer.json")->required();
  c->add_option("--text", args->text, "Text to encode")->required();
  c->add_flag("--pieces", args->pieces, "Print the pieces instead of the ids");
  c->callback([&action, args] { action = [args] { return encode(*args); }; });
}

struct DecodeArgs {
  std::string tokenizer;
  std::string ids;
};

int decode(const DecodeArgs& a) {
  auto tok = data::load_tokenizer(a.tokenizer);
  auto wide = parse_token_ids(a.ids, "--ids", tok->vocab_size());
  std::vector<int32_t> ids(wide.begin(), wide.end());
  std::cout << tok->decode(ids) << '\n';
  return 0;
}

void add_decode(CLI::App& cmd, Action& action) {
  auto args = std::make_shared<DecodeArgs>();
  auto* c = cmd.add_subcommand("decode", "Print the text of token ids (special tokens left out)");
  c->add_option("--tokenizer", args->tokenizer, "Model directory, tokenizer.model or tokenizer.json")->required();
  c->add_option("--ids", args->ids, "Token ids separated by spaces or commas: --ids \"1 2 3\"")->required();
  c->callback([&action, args] { action = [args] { return decode(*args); }; });
}

}  // namespace

void add_tokenize_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("tokenize", "Train tokenizers and inspect tokenization");
  cmd->require_subcommand(1);
  add_train_spm(*cmd, action);
  add_encode(*cmd, action);
  add_decode(*cmd, action);
  add_tokenize_corpus_commands(*cmd, action);
  add_tokenize_chat_commands(*cmd, action);
}

}  // namespace tess::cli
