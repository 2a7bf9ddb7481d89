#include "data/batches.h"

#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/checkpoint/checkpoint.h"
#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/rng.h"
#include "core/util/test_hooks.h"
#include "data/chat.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"

namespace tess::data {
namespace fs = std::filesystem;

const char* data_kind_description(DataKind kind) {
  switch (kind) {
    case DataKind::TokenShards: return "token-shard directories (tess tokenize corpus)";
    case DataKind::Chat: return "chat JSONL files (\"messages\" records)";
    case DataKind::Preferences: return "preference JSONL files (\"prompt\", \"chosen\", \"rejected\" records)";
  }
  return "?";
}

int64_t Examples::loss_units(const at::Tensor& span_mask) const {
  return span_mask.narrow(1, 1, span_mask.size(1) - 1).sum().item<int64_t>();
}

namespace {

class CorpusExamples : public Examples {
 public:
  CorpusExamples(const std::vector<std::string>& dirs, const config::Config& cfg, const Tokenizer& tok,
                 const std::string& text_hash, const std::string& split) {
    std::vector<std::shared_ptr<const TokenDataset>> sets;
    OpenOptions open;
    open.verify_checksums = cfg.get_bool("data.verify_checksums");
    for (const auto& d : dirs) {
      auto ds = std::make_shared<TokenDataset>(d, split, open);
      // Shards record the tokenizer they were made with, usually before the
      // run added [PAD]; special tokens never occur in their text.
      if (ds->tokenizer_hash() != text_hash) ds->check_tokenizer(tok.content_hash());
      sets.push_back(ds);
    }
    seqs_ = std::make_unique<PackedSequences>(sets, PackingOptions::from_config(cfg, tok.pad_id()));
    if (seqs_->size() == 0)
      throw Error(fmt::format("data: {} holds fewer tokens than one sequence of data.seq_len = {}", dirs.front(),
                              seqs_->seq_len()));
  }
  int64_t size() const override { return seqs_->size(); }
  int64_t seq_len() const override { return seqs_->seq_len(); }
  void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const override {
    std::vector<int64_t> real(indices.size());
    seqs_->gather(indices, ids, real.data());
    int64_t l = seq_len();
    for (size_t i = 0; i < indices.size(); ++i)
      for (int64_t j = 0; j < l; ++j) mask[i * l + j] = j < real[i] ? 1 : 0;
  }

 private:
  std::unique_ptr<PackedSequences> seqs_;
};

class ChatExamples : public Examples {
 public:
  ChatExamples(const std::vector<std::string>& files, const config::Config& cfg, const Tokenizer& tok) {
    std::vector<fs::path> paths(files.begin(), files.end());
    ds_ = std::make_unique<ChatDataset>(ChatDataset::build(paths, tok, ChatOptions::from_config(cfg)));
    if (ds_->size() == 0) throw Error(fmt::format("data: no usable chat example in {}", files.front()));
  }
  int64_t size() const override { return ds_->size(); }
  int64_t seq_len() const override { return ds_->seq_len(); }
  void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const override {
    int64_t l = seq_len();
    for (size_t i = 0; i < indices.size(); ++i) {
      std::copy(ds_->ids(indices[i]), ds_->ids(indices[i]) + l, ids + i * l);
      std::copy(ds_->span_mask(indices[i]), ds_->span_mask(indices[i]) + l, mask + i * l);
    }
  }

 private:
  std::unique_ptr<ChatDataset> ds_;
};

// Preference pairs for the reward model, one example per pair: the chosen and
// the rejected sequence side by side in one row of 2L tokens, the mask marking
// the last real token (EOS) of each half, where the reward is read.
class PreferenceExamples : public Examples {
 public:
  PreferenceExamples(const std::vector<std::string>& files, const config::Config& cfg, const Tokenizer& tok) {
    std::vector<fs::path> paths(files.begin(), files.end());
    ds_ = std::make_unique<PreferenceDataset>(PreferenceDataset::build(paths, tok, ChatOptions::from_config(cfg)));
    if (ds_->size() == 0) throw Error(fmt::format("data: no usable preference pair in {}", files.front()));
  }
  int64_t size() const override { return ds_->size(); }
  int64_t seq_len() const override { return 2 * ds_->seq_len(); }
  int64_t loss_units(const at::Tensor& span_mask) const override { return span_mask.size(0); }
  void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const override {
    int64_t half = ds_->seq_len(), l = seq_len();
    std::fill(mask, mask + indices.size() * static_cast<size_t>(l), 0);
    for (size_t i = 0; i < indices.size(); ++i) {
      int64_t* row = ids + i * l;
      std::copy(ds_->chosen_ids(indices[i]), ds_->chosen_ids(indices[i]) + half, row);
      std::copy(ds_->rejected_ids(indices[i]), ds_->rejected_ids(indices[i]) + half, row + half);
      mask[i * l + ds_->chosen_last(indices[i])] = 1;
      mask[i * l + half + ds_->rejected_last(indices[i])] = 1;
    }
  }

 private:
  std::unique_ptr<PreferenceDataset> ds_;
};

bool is_token_dataset(const std::string& path) {
  return fs::is_directory(path) && fs::exists(fs::path(path) / "meta.json");
}

// What kind of training input `path` is: a token dataset directory, or a
// JSONL file, which the stage reads as the JSONL kind it accepts (its record
// reader names the line when the fields are not that kind's).
DataKind kind_of_input(const std::string& path, const std::vector<DataKind>& accepted, const std::string& stage,
                       const std::string& wanted, const char* key) {
  if (!fs::exists(path)) throw Error(fmt::format("{}: '{}' does not exist", key, path));
  if (is_token_dataset(path)) return DataKind::TokenShards;
  if (fs::is_directory(path))
    throw Error(fmt::format("{}: '{}' is a directory without meta.json, not a token dataset of tess tokenize corpus",
                            key, path));
  for (auto kind : accepted)
    if (kind != DataKind::TokenShards) return kind;
  throw Error(fmt::format("{}: '{}' is a file (JSONL records), but stage {} trains on {}", key, path, stage, wanted));
}

}  // namespace

std::shared_ptr<Examples> open_examples(const std::vector<std::string>& inputs, const std::vector<DataKind>& accepted,
                                        const std::string& stage, const config::Config& cfg, const Tokenizer& tok,
                                        const std::string& text_hash, const std::string& split, const char* key) {
  std::string wanted;
  for (auto kind : accepted) wanted += (wanted.empty() ? "" : " or ") + std::string(data_kind_description(kind));
  if (inputs.empty()) throw Error(fmt::format("{} is empty: stage {} trains on {}", key, stage, wanted));
  std::optional<DataKind> kind;
  for (const auto& in : inputs) {
    auto k = kind_of_input(in, accepted, stage, wanted, key);
    if (std::find(accepted.begin(), accepted.end(), k) == accepted.end())
      throw Error(fmt::format("{}: '{}' is a token-shard directory, but stage {} trains on {}", key, in, stage, wanted));
    if (kind && *kind != k)
      throw Error(fmt::format("{}: mixes {} and {} ('{}'); give one kind", key, data_kind_description(*kind),
                              data_kind_description(k), in));
    kind = k;
  }
  switch (*kind) {
    case DataKind::TokenShards: return std::make_shared<CorpusExamples>(inputs, cfg, tok, text_hash, split);
    case DataKind::Chat: return std::make_shared<ChatExamples>(inputs, cfg, tok);
    case DataKind::Preferences: return std::make_shared<PreferenceExamples>(inputs, cfg, tok);
  }
  throw Error("internal: unknown data kind");
}

Batch make_batch(const Examples& examples, const std::vector<int64_t>& indices, const SpanMaskSource& spans) {
  int64_t b = static_cast<int64_t>(indices.size()), l = examples.seq_len();
  auto ids = torch::empty({b, l}, torch::kInt64);
  std::vector<uint8_t> mask(static_cast<size_t>(b * l));
  examples.fill(indices, ids.data_ptr<int64_t>(), mask.data());
  if (spans) mask = spans(b, l).mask;
  Batch out;
  out.ids = ids;
  out.span_mask = torch::from_blob(mask.data(), {b, l}, torch::kUInt8).to(torch::kBool);
  out.span_positions = out.span_mask.nonzero();
  out.tokens = examples.loss_units(out.span_mask);
  return out;
}

std::vector<Batch> validation_batches(const Examples& examples, int64_t batch_size, int64_t count,
                                      std::optional<config::Ul2Variant> eval_spans) {
  std::vector<Batch> out;
  SpanMaskSource spans;
  if (eval_spans) spans = [v = *eval_spans](int64_t b, int64_t l) { return SpanMasker::eval_batch(b, l, v); };
  for (int64_t start = 0; start < examples.size() && static_cast<int64_t>(out.size()) < count; start += batch_size) {
    std::vector<int64_t> indices;
    for (int64_t i = start; i < std::min(start + batch_size, examples.size()); ++i) indices.push_back(i);
    out.push_back(make_batch(examples, indices, spans));
  }
  return out;
}

// ---------------------------------------------------------------------------

namespace {

// The seed string says "rank" because slot s was rank s's only stream
// before accumulation had streams of its own: runs without accumulation draw
// what they always drew.
std::string slot_stream_name(const std::string& name, int64_t slot) { return fmt::format("{}.rank{}", name, slot); }

std::string slot_key(const std::string& name, int64_t slot) { return fmt::format("rng.{}.slot{}", name, slot); }

}  // namespace

std::vector<util::Rng> slot_streams(uint64_t seed, const std::string& name, const SlotLayout& slots) {
  std::vector<util::Rng> out;
  for (int64_t k = 0; k < slots.accum; ++k) out.emplace_back(seed, slot_stream_name(name, slots.of(k)));
  return out;
}

std::vector<std::vector<uint8_t>> stream_states(const std::vector<util::Rng>& streams) {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& rng : streams) out.push_back(rng.state());
  return out;
}

void save_slot_streams(std::map<std::string, std::string>& out, const std::string& name, const SlotLayout& slots,
                       const std::vector<std::vector<uint8_t>>& states) {
  for (int64_t k = 0; k < slots.accum; ++k)
    out[slot_key(name, slots.of(k))] = checkpoint::hex_encode(states.at(static_cast<size_t>(k)));
}

int64_t load_slot_streams(const std::vector<std::map<std::string, std::string>>& rank_states,
                          const std::string& name, const SlotLayout& slots, const std::string& source,
                          std::vector<util::Rng>& streams) {
  std::map<int64_t, std::string> saved;
  std::string prefix = fmt::format("rng.{}.slot", name);
  for (size_t r = 0; r < rank_states.size(); ++r)
    for (const auto& [key, value] : rank_states[r]) {
      if (key.rfind(prefix, 0) == 0) saved[std::stoll(key.substr(prefix.size()))] = value;
      if (key == "rng." + name) saved[static_cast<int64_t>(r)] = value;
    }
  if (saved.empty()) throw Error(fmt::format("{}: stage state 'rng.{}' is missing", source, name));
  int64_t count = saved.rbegin()->first + 1;
  if (static_cast<int64_t>(saved.size()) != count)
    throw Error(fmt::format("{}: stage state 'rng.{}' has {} of {} slots", source, name, saved.size(), count));
  if (util::test_mutation("resume_without_streams")) return count;
  for (int64_t k = 0; k < slots.accum; ++k) {
    int64_t s = slots.of(k) % count;
    streams.at(static_cast<size_t>(k)).set_state(checkpoint::hex_decode(saved.at(s), fmt::format("{} {}", source, slot_key(name, s))));
  }
  return count;
}

// ---------------------------------------------------------------------------

namespace {

// Everything the loader's producer advances, as of some batch.
struct LoaderState {
  SamplerState sampler;
  std::vector<std::vector<uint8_t>> mask_rng;  // per slot of this rank
  int64_t next_k = 0;                          // the micro-batch of the step that comes next
};

}  // namespace

struct BatchLoader::Impl {
  std::shared_ptr<const Examples> examples;
  DistributedSampler sampler;
  Options options;
  std::vector<util::Rng> mask_rng;
  int64_t next_k = 0;
  LoaderState state;  // as of the last batch handed out
  std::unique_ptr<Prefetcher<Batch, LoaderState>> prefetcher;

  Impl(std::shared_ptr<const Examples> ex, Options o)
      : examples(std::move(ex)),
        sampler(o.sampler),
        options(std::move(o)),
        mask_rng(slot_streams(options.seed, "span_mask", options.slots)) {
    state = snapshot();
  }

  LoaderState snapshot() const { return {sampler.state(), stream_states(mask_rng), next_k}; }

  Batch produce() {
    SpanMaskSource spans;
    if (options.masker) {
      auto& rng = mask_rng[static_cast<size_t>(next_k)];
      spans = [&](int64_t b, int64_t l) { return options.masker->train_batch(b, l, rng); };
    }
    auto batch = make_batch(*examples, sampler.next_batch(), spans);
    batch.slot = options.slots.of(next_k);
    next_k = (next_k + 1) % options.slots.accum;
    return batch;
  }
};

BatchLoader::BatchLoader(std::shared_ptr<const Examples> examples, Options options)
    : impl_(std::make_unique<Impl>(std::move(examples), std::move(options))) {}
BatchLoader::~BatchLoader() = default;

Batch BatchLoader::next() {
  auto& m = *impl_;
  if (!m.prefetcher)
    m.prefetcher = std::make_unique<Prefetcher<Batch, LoaderState>>(
        [&m]() -> std::optional<Batch> { return m.produce(); }, [&m] { return m.snapshot(); }, m.options.prefetch);
  auto item = m.prefetcher->next();
  if (!item) throw Error("the data loader stopped unexpectedly");
  m.state = item->state;
  return std::move(item->batch);
}

int64_t BatchLoader::samples() const { return impl_->examples->size(); }

std::map<std::string, std::string> BatchLoader::state() const {
  const auto& s = impl_->state;
  if (s.next_k != 0) throw Error("internal: loader state taken in the middle of an optimizer step");
  std::map<std::string, std::string> out{{"loader.epoch", std::to_string(s.sampler.epoch)},
                                         {"loader.position", std::to_string(s.sampler.position)}};
  save_slot_streams(out, "span_mask", impl_->options.slots, s.mask_rng);
  return out;
}

void BatchLoader::load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                             const std::string& source) {
  auto& m = *impl_;
  m.prefetcher.reset();  // drop batches produced from the old state
  const auto& first = rank_states.at(0);  // the data order is global: every rank saved the same position
  auto get = [&](const std::string& k) -> const std::string& {
    auto it = first.find(k);
    if (it == first.end()) throw Error(fmt::format("{}: stage state '{}' is missing", source, k));
    return it->second;
  };
  m.sampler.set_state({std::stoll(get("loader.epoch")), std::stoll(get("loader.position"))});
  int64_t saved_slots = load_slot_streams(rank_states, "span_mask", m.options.slots, source, m.mask_rng);
  m.next_k = 0;
  m.state = m.snapshot();
  const auto& slots = m.options.slots;
  if (saved_slots != slots.total() && slots.rank == 0)
    spdlog::warn("{}: saved with {} micro-batch slot(s) per step (processes x train.grad_accum), this run has {}: "
                 "the data order continues exactly, but slot s continues the random streams of saved slot "
                 "(s mod {}), so steps differ from the saved run's own continuation",
                 source, saved_slots, slots.total(), saved_slots);
}

}  // namespace tess::data
