#include "launch/bench/workspace.h"

#include <fstream>
#include <functional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/rng.h"
#include "data/chat.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"

namespace tess::bench {
namespace fs = std::filesystem;

namespace {

const char* const kWords[] = {"the", "model", "noise", "simplex", "token", "step", "train", "bench", "loss", "span",
                              "data", "rank", "batch", "layer", "head", "mask"};

std::string words(util::Rng& rng, int64_t count) {
  std::string s;
  for (int64_t w = 0; w < count; ++w) s += (w ? " " : "") + std::string(kWords[rng.uniform_int(0, 15)]);
  return s;
}

}  // namespace

void write_token_dataset(const fs::path& dir, int64_t tokens, int32_t vocab, const std::string& tokenizer_hash,
                         uint64_t seed) {
  fs::create_directories(dir / "train");
  fs::create_directories(dir / "validation");
  util::Rng rng(seed, "bench.dataset");
  std::vector<uint16_t> data(static_cast<size_t>(tokens));
  for (auto& t : data) t = static_cast<uint16_t>(3 + rng.uniform_int(0, vocab - 4));
  std::vector<int64_t> offsets{0};
  while (offsets.back() < tokens) offsets.push_back(std::min(tokens, offsets.back() + rng.uniform_int(64, 2048)));
  auto write = [&](const std::string& rel, const void* p, size_t bytes) {
    std::ofstream f(dir / rel, std::ios::binary);
    f.write(static_cast<const char*>(p), static_cast<std::streamsize>(bytes));
    if (!f) throw Error(fmt::format("cannot write {}", (dir / rel).string()));
    return static_cast<int64_t>(bytes);
  };
  data::DatasetMeta m;
  m.tokenizer_kind = "sentencepiece";
  m.tokenizer_hash = tokenizer_hash;
  m.vocab_size = vocab;
  m.bos_id = 1;
  m.eos_id = 2;
  m.dtype = "uint16";
  m.shard_tokens = tokens;
  m.doc_split = "blank-line";
  m.train.documents = static_cast<int64_t>(offsets.size()) - 1;
  m.train.tokens = tokens;
  m.train.index = {"train/docs.bin", 0, write("train/docs.bin", offsets.data(), offsets.size() * 8), ""};
  m.train.shards.push_back({"train/shard-00000.bin", tokens, write("train/shard-00000.bin", data.data(), data.size() * 2), ""});
  int64_t zero = 0;
  m.validation.index = {"validation/docs.bin", 0, write("validation/docs.bin", &zero, 8), ""};
  std::ofstream(dir / data::kTokenDatasetMetaFile) << m.to_json();
}

BenchWorkspace BenchWorkspace::at(const fs::path& root) {
  return {root, root / "tokenizer", root / "corpus", root / "chat.jsonl"};
}

BenchWorkspace BenchWorkspace::create(const fs::path& root, int64_t vocab, int64_t seq_len, int64_t corpus_tokens,
                                      int64_t chat_records) {
  auto w = at(root);
  fs::create_directories(w.tokenizer);
  util::Rng rng(0, "bench.text");
  auto text = root / "text.txt";
  {
    std::ofstream f(text);
    for (int line = 0; line < 400; ++line) f << words(rng, 12) << "\n";
  }
  data::SentencePieceTrainOptions so;
  so.inputs = {text};
  so.model_prefix = root / "spm";
  so.vocab_size = 320;  // byte fallback: 256 byte pieces + the text's characters + a few words
  so.threads = 1;
  data::train_sentencepiece(so);
  fs::copy_file(root / "spm.model", w.tokenizer / "tokenizer.model", fs::copy_options::overwrite_existing);
  // [PAD] and reserved tokens up to the preset's vocabulary.
  auto base = data::load_tokenizer(w.tokenizer);
  if (vocab <= base->vocab_size() + 1)
    throw Error(fmt::format("bench: vocabulary {} is not above the generated tokenizer's {}", vocab, base->vocab_size()));
  nlohmann::json added = {{"[PAD]", base->vocab_size()}};
  for (int64_t id = base->vocab_size() + 1; id < vocab; ++id) added[fmt::format("<reserved_{}>", id)] = id;
  std::ofstream(w.tokenizer / "added_tokens.json") << added.dump();
  write_token_dataset(w.corpus, corpus_tokens, static_cast<int32_t>(vocab), base->base_hash(), 0);
  // Chat: the templated prompt about L/2 tokens, the response (+ </s>) the
  // rest, measured with the base model (the reserved tokens never occur in
  // text, and matching thousands of them would make each encode slow).
  const auto& tok = base;
  std::ofstream chat(w.chat);
  for (int64_t i = 0; i < chat_records; ++i) {
    // Grows `text` word by word while `fits` says the next one still fits.
    auto grow = [&](std::string text, const std::function<bool(const std::string&)>& fits) {
      for (std::string next = text + " " + words(rng, 1); fits(next); next += " " + words(rng, 1)) text = next;
      return text;
    };
    auto user = grow(words(rng, 1), [&](const std::string& u) {
      return static_cast<int64_t>(data::encode_prompt(*tok, u).size()) <= seq_len / 2;
    });
    data::ChatPrompt prompt;
    prompt.user = user;
    auto text = data::prompt_text(prompt);
    int64_t room = seq_len - static_cast<int64_t>(data::encode_prompt(*tok, prompt).size()) - 1;  // - </s>
    auto answer = grow(words(rng, 1), [&](const std::string& a) {
      return static_cast<int64_t>(data::encode_response(*tok, text, a).size()) <= room;
    });
    chat << nlohmann::json{{"messages", {{{"role", "user"}, {"content", user}}, {{"role", "assistant"}, {"content", answer}}}}}
                .dump()
         << "\n";
  }
  return w;
}

std::string BenchWorkspace::config(const TrainPreset& preset, config::RunStage stage, const std::string& precision,
                                   const fs::path& run_dir) const {
  const auto& m = preset.model;
  return fmt::format(
      "run: {{stage: {}, dir: '{}', name: bench}}\n"
      "model: {{hidden_size: {}, intermediate_size: {}, num_layers: {}, num_heads: {}, num_kv_heads: {}, "
      "max_position_embeddings: {}, tie_word_embeddings: {}}}\n"
      "data: {{tokenizer: '{}', train: ['{}'], seq_len: {}}}\n"
      "train: {{batch_size: {}, max_steps: 1000000, precision: {}}}\n"
      "checkpoint: {{every: 0, resume: none}}\n"
      "log: {{tensorboard: false}}\n",
      config::run_stage_choices().name(stage), run_dir.string(), m.hidden_size, m.intermediate_size,
      m.num_hidden_layers, m.num_attention_heads, m.num_key_value_heads, m.max_position_embeddings,
      m.tie_word_embeddings ? "true" : "false", tokenizer.string(),
      (stage == config::RunStage::Instruction ? chat : corpus).string(), preset.seq_len, preset.batch,
      precision == "bf16" ? "bf16_autocast" : "fp32");
}

}  // namespace tess::bench
