// The stages of `run.stage`: ar (causal LM), adaptation (stage 1),
// instruction (stage 2) and reward (Bradley-Terry reward model). Adaptation
// and instruction are one DiffusionStage over two example sources (packed
// corpus + UL2 masks, or chat sequences).
#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/deferred_copy.h"
#include "core/config/config.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/lm_head_loss.h"
#include "core/model/reward_model.h"
#include "core/util/error.h"
#include "core/util/rng.h"
#include "core/util/test_hooks.h"
#include "data/chat.h"
#include "data/loader.h"
#include "data/masking.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "train/stage.h"

namespace tess::train {
namespace fs = std::filesystem;
namespace {

using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------
// Example sources: fixed-length examples with a 0/1 mask per position.

class Examples {
 public:
  virtual ~Examples() = default;
  virtual int64_t size() const = 0;
  virtual int64_t seq_len() const = 0;
  // ids [n, L] and mask [n, L] (1 = span / target position) of `indices`.
  virtual void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const = 0;
  virtual bool needs_span_masker() const = 0;  // corpus text gets UL2 masks in diffusion stages
  // What a batch's loss is averaged over: its predicted positions (position
  // 0 has no predictor), or pairs for preference data.
  virtual int64_t loss_units(const torch::Tensor& span_mask) const {
    return span_mask.narrow(1, 1, span_mask.size(1) - 1).sum().item<int64_t>();
  }
};

class CorpusExamples : public Examples {
 public:
  // `text_hash`: the hash of the tokenizer's base vocabulary (text maps to
  // the same ids with or without added special tokens).
  CorpusExamples(const std::vector<std::string>& dirs, const config::Config& cfg, const data::Tokenizer& tok,
                 const std::string& text_hash, const std::string& split) {
    std::vector<std::shared_ptr<const data::TokenDataset>> sets;
    data::OpenOptions open;
    open.verify_checksums = cfg.get_bool("data.verify_checksums");
    for (const auto& d : dirs) {
      auto ds = std::make_shared<data::TokenDataset>(d, split, open);
      // Shards record the tokenizer they were made with, usually before the
      // run added [PAD]; special tokens never occur in their text.
      if (ds->tokenizer_hash() != text_hash) ds->check_tokenizer(tok.content_hash());
      sets.push_back(ds);
    }
    seqs_ = std::make_unique<data::PackedSequences>(sets, data::PackingOptions::from_config(cfg, tok.pad_id()));
    if (seqs_->size() == 0)
      throw Error(fmt::format("data: {} holds fewer tokens than one sequence of data.seq_len = {}", dirs.front(),
                              seqs_->seq_len()));
  }
  int64_t size() const override { return seqs_->size(); }
  int64_t seq_len() const override { return seqs_->seq_len(); }
  bool needs_span_masker() const override { return true; }
  void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const override {
    std::vector<int64_t> real(indices.size());
    seqs_->gather(indices, ids, real.data());
    int64_t l = seq_len();
    for (size_t i = 0; i < indices.size(); ++i)
      for (int64_t j = 0; j < l; ++j) mask[i * l + j] = j < real[i] ? 1 : 0;
  }

 private:
  std::unique_ptr<data::PackedSequences> seqs_;
};

class ChatExamples : public Examples {
 public:
  ChatExamples(const std::vector<std::string>& files, const config::Config& cfg, const data::Tokenizer& tok) {
    std::vector<fs::path> paths(files.begin(), files.end());
    auto options = data::ChatOptions::from_config(cfg);
    ds_ = std::make_unique<data::ChatDataset>(data::ChatDataset::build(paths, tok, options));
    if (ds_->size() == 0) throw Error(fmt::format("data: no usable chat example in {}", files.front()));
  }
  int64_t size() const override { return ds_->size(); }
  int64_t seq_len() const override { return ds_->seq_len(); }
  bool needs_span_masker() const override { return false; }
  void fill(const std::vector<int64_t>& indices, int64_t* ids, uint8_t* mask) const override {
    int64_t l = seq_len();
    for (size_t i = 0; i < indices.size(); ++i) {
      std::copy(ds_->ids(indices[i]), ds_->ids(indices[i]) + l, ids + i * l);
      std::copy(ds_->span_mask(indices[i]), ds_->span_mask(indices[i]) + l, mask + i * l);
    }
  }

 private:
  std::unique_ptr<data::ChatDataset> ds_;
};

// Preference pairs for the reward model, one example per pair: the chosen and
// the rejected sequence side by side in one row of 2L tokens, the mask marking
// the last real token (EOS) of each half, where the reward is read.
class PreferenceExamples : public Examples {
 public:
  PreferenceExamples(const std::vector<std::string>& files, const config::Config& cfg, const data::Tokenizer& tok) {
    std::vector<fs::path> paths(files.begin(), files.end());
    ds_ = std::make_unique<data::PreferenceDataset>(
        data::PreferenceDataset::build(paths, tok, data::ChatOptions::from_config(cfg)));
    if (ds_->size() == 0) throw Error(fmt::format("data: no usable preference pair in {}", files.front()));
  }
  int64_t size() const override { return ds_->size(); }
  int64_t seq_len() const override { return 2 * ds_->seq_len(); }
  bool needs_span_masker() const override { return false; }
  int64_t loss_units(const torch::Tensor& span_mask) const override { return span_mask.size(0); }
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
  std::unique_ptr<data::PreferenceDataset> ds_;
};

bool is_token_dataset(const std::string& path) { return fs::is_directory(path) && fs::exists(fs::path(path) / "meta.json"); }

std::shared_ptr<Examples> open_examples(const std::vector<std::string>& inputs, const config::Config& cfg,
                                        const data::Tokenizer& tok, const std::string& text_hash,
                                        const std::string& split, const char* key, bool preferences) {
  if (inputs.empty()) throw Error(fmt::format("{} is empty: give token-shard directories or chat JSONL files", key));
  if (preferences) {
    for (const auto& in : inputs)
      if (!fs::is_regular_file(in))
        throw Error(fmt::format("{}: '{}' is not a preference JSONL file (stage reward trains on prompt/chosen/rejected "
                                "pairs)",
                                key, in));
    return std::make_shared<PreferenceExamples>(inputs, cfg, tok);
  }
  bool corpus = is_token_dataset(inputs.front());
  for (const auto& in : inputs) {
    if (!fs::exists(in)) throw Error(fmt::format("{}: '{}' does not exist", key, in));
    if (is_token_dataset(in) != corpus)
      throw Error(fmt::format("{}: mixes token-shard directories and chat files ('{}')", key, in));
  }
  if (corpus) return std::make_shared<CorpusExamples>(inputs, cfg, tok, text_hash, split);
  return std::make_shared<ChatExamples>(inputs, cfg, tok);
}

// ---------------------------------------------------------------------------
// Random streams per micro-batch slot (MicroBatch::slot).

// The micro-batch slots of this rank: its k-th micro-batch of a step is slot
// k * world + rank.
struct Slots {
  int64_t world = 1, rank = 0, accum = 1;
  int64_t of(int64_t k) const { return k * world + rank; }
  int64_t total() const { return world * accum; }
};

// Stream `name` of slot `slot`. The seed string says "rank" because slot s
// was rank s's only stream before accumulation had streams of its own: runs
// without accumulation draw what they always drew.
std::string slot_stream(const std::string& name, int64_t slot) { return fmt::format("{}.rank{}", name, slot); }

std::vector<util::Rng> slot_streams(uint64_t seed, const std::string& name, const Slots& slots) {
  std::vector<util::Rng> out;
  for (int64_t k = 0; k < slots.accum; ++k) out.emplace_back(seed, slot_stream(name, slots.of(k)));
  return out;
}

std::string slot_key(const std::string& stream, int64_t slot) { return fmt::format("rng.{}.slot{}", stream, slot); }

void save_slot_streams(std::map<std::string, std::string>& out, const std::string& stream, const Slots& slots,
                       const std::vector<std::vector<uint8_t>>& states) {
  for (int64_t k = 0; k < slots.accum; ++k) out[slot_key(stream, slots.of(k))] = checkpoint::hex_encode(states[k]);
}

// The states of stream `stream` for this rank's slots, from the saved run's
// rank states. A saved run with as many slots (world x accumulation) gives
// every slot its own state back, however the slots were spread; with another
// count, slot s continues saved slot s mod (saved count). Checkpoints written
// before slots had streams of their own hold one "rng.<stream>" per rank:
// rank r's is slot r's. Under the test mutation "resume_without_streams"
// nothing is restored (no states).
struct SavedSlotStreams {
  std::vector<std::vector<uint8_t>> states;  // per slot of this rank
  int64_t saved_slots = 0;                   // how many the saved run had
};
SavedSlotStreams load_slot_streams(const std::vector<std::map<std::string, std::string>>& rank_states,
                                                    const std::string& stream, const Slots& slots,
                                                    const std::string& source) {
  std::map<int64_t, std::string> saved;
  std::string prefix = fmt::format("rng.{}.slot", stream);
  for (size_t r = 0; r < rank_states.size(); ++r)
    for (const auto& [key, value] : rank_states[r]) {
      if (key.rfind(prefix, 0) == 0) saved[std::stoll(key.substr(prefix.size()))] = value;
      if (key == "rng." + stream) saved[static_cast<int64_t>(r)] = value;
    }
  if (saved.empty()) throw Error(fmt::format("{}: stage state 'rng.{}' is missing", source, stream));
  int64_t count = saved.rbegin()->first + 1;
  if (static_cast<int64_t>(saved.size()) != count)
    throw Error(fmt::format("{}: stage state 'rng.{}' has {} of {} slots", source, stream, saved.size(), count));
  SavedSlotStreams out{{}, count};
  if (util::test_mutation("resume_without_streams")) return out;
  for (int64_t k = 0; k < slots.accum; ++k) {
    int64_t s = slots.of(k) % count;
    out.states.push_back(checkpoint::hex_decode(saved.at(s), fmt::format("{} {}", source, slot_key(stream, s))));
  }
  return out;
}

// ---------------------------------------------------------------------------
// The background loader: sampler -> examples -> (UL2 masks) -> MicroBatch.

struct LoaderState {
  data::SamplerState sampler;
  std::vector<Bytes> mask_rng;  // per slot of this rank
  int64_t next_k = 0;           // the micro-batch of the step that comes next
};

class BatchLoader {
 public:
  BatchLoader(std::shared_ptr<Examples> examples, data::DistributedSampler::Options sampler,
              std::shared_ptr<data::SpanMasker> masker, std::vector<util::Rng> mask_rng, Slots slots,
              int64_t prefetch)
      : examples_(std::move(examples)),
        sampler_(sampler),
        masker_(std::move(masker)),
        mask_rng_(std::move(mask_rng)),
        slots_(slots),
        prefetch_(prefetch) {
    state_ = snapshot();
  }

  MicroBatch next() {
    if (!prefetcher_)
      prefetcher_ = std::make_unique<data::Prefetcher<MicroBatch, LoaderState>>(
          [this]() -> std::optional<MicroBatch> { return produce(); }, [this] { return snapshot(); }, prefetch_);
    auto item = prefetcher_->next();
    if (!item) throw Error("the data loader stopped unexpectedly");
    state_ = item->state;
    return std::move(item->batch);
  }

  const LoaderState& state() const { return state_; }
  void set_state(const LoaderState& s) {
    prefetcher_.reset();  // drop batches produced from the old state
    sampler_.set_state(s.sampler);
    for (size_t k = 0; k < s.mask_rng.size(); ++k) mask_rng_.at(k).set_state(s.mask_rng[k]);
    next_k_ = s.next_k;
    state_ = s;
  }
  int64_t samples() const { return examples_->size(); }

 private:
  LoaderState snapshot() const {
    LoaderState s{sampler_.state(), {}, next_k_};
    for (const auto& rng : mask_rng_) s.mask_rng.push_back(rng.state());
    return s;
  }

  MicroBatch produce() {
    auto indices = sampler_.next_batch();
    int64_t b = static_cast<int64_t>(indices.size()), l = examples_->seq_len();
    auto ids = torch::empty({b, l}, torch::kInt64);
    std::vector<uint8_t> mask(static_cast<size_t>(b * l));
    examples_->fill(indices, ids.data_ptr<int64_t>(), mask.data());
    if (masker_ && examples_->needs_span_masker()) {
      auto spans = masker_->train_batch(b, l, mask_rng_[static_cast<size_t>(next_k_)]);
      mask = spans.mask;
    }
    MicroBatch mb;
    mb.ids = ids;
    mb.span_mask = torch::from_blob(mask.data(), {b, l}, torch::kUInt8).to(torch::kBool);
    mb.tokens = examples_->loss_units(mb.span_mask);
    mb.slot = slots_.of(next_k_);
    next_k_ = (next_k_ + 1) % slots_.accum;
    return mb;
  }

  std::shared_ptr<Examples> examples_;
  data::DistributedSampler sampler_;
  std::shared_ptr<data::SpanMasker> masker_;
  std::vector<util::Rng> mask_rng_;
  Slots slots_;
  int64_t next_k_ = 0;
  int64_t prefetch_;
  LoaderState state_;
  std::unique_ptr<data::Prefetcher<MicroBatch, LoaderState>> prefetcher_;
};

// ---------------------------------------------------------------------------
// Shared model plumbing.

std::unique_ptr<data::Tokenizer> load_run_tokenizer(const config::Config& cfg) {
  const auto& explicit_path = cfg.get_string("data.tokenizer");
  const auto& model_path = cfg.get_string("model.path");
  if (!explicit_path.empty()) return data::load_tokenizer(explicit_path);
  if (!model_path.empty()) return data::load_tokenizer(model_path);
  throw Error("no tokenizer: set data.tokenizer (a tokenizer.model or a model directory) or model.path");
}

// The tokenizer gets a [PAD] when it has none (as the reference adds one to Mistral's).
void ensure_pad(const config::Config& cfg, data::Tokenizer& tok) {
  bool add = cfg.get_bool("model.add_pad_token");
  if (tok.pad_id() < 0) {
    if (!add) throw Error("the tokenizer has no PAD token and model.add_pad_token is false; chat data and packing need one");
    int32_t id = tok.add_special_token("[PAD]", true);
    spdlog::info("added [PAD] to the tokenizer as id {}", id);
  }
}

// The decoder of model.path (plus its non-decoder tensors), or a fresh one.
model::LoadedModel build_decoder(const config::Config& cfg, const data::Tokenizer& tok, uint64_t seed) {
  const auto& path = cfg.get_string("model.path");
  model::Decoder decoder{nullptr};
  std::map<std::string, torch::Tensor> extra;
  if (path.empty()) {
    auto mc = model::ModelConfig::from_run_config(cfg);
    if (cfg.origin("model.vocab_size").where != "default" && mc.vocab_size != tok.vocab_size())
      throw Error(fmt::format("{}: model.vocab_size = {} but the tokenizer has {} tokens", cfg.origin("model.vocab_size").where,
                              mc.vocab_size, tok.vocab_size()));
    mc.vocab_size = tok.vocab_size();
    mc.bos_token_id = tok.bos_id();
    mc.eos_token_id = tok.eos_id();
    mc.pad_token_id = tok.pad_id();
    decoder = model::Decoder(mc, seed);
  } else {
    model::LoadOptions lo;
    lo.dtype = cfg.get_string("model.dtype");
    lo.body_only = cfg.get_string("run.stage") == "reward";  // a classifier has no LM head
    auto loaded = model::load_hf_model(path, lo);
    if (!loaded.extra_tensors.empty() && cfg.get_string("run.stage") == "ar")
      throw Error(fmt::format("{}: holds '{}', a diffusion model's tensor; stage ar trains causal LMs", path,
                              loaded.extra_tensors.begin()->first));
    decoder = loaded.decoder;
    extra = std::move(loaded.extra_tensors);
    if (decoder->config().vocab_size < tok.vocab_size()) decoder->resize_vocab(tok.vocab_size());
    if (decoder->config().vocab_size != tok.vocab_size())
      throw Error(fmt::format("{}: the model's vocabulary ({}) does not match its tokenizer ({})", path,
                              decoder->config().vocab_size, tok.vocab_size()));
    auto& mc = decoder->mutable_config();
    mc.pad_token_id = tok.pad_id();
  }
  decoder->set_activation_checkpointing(cfg.get_bool("model.activation_checkpointing"));
  return {decoder, std::move(extra)};
}

std::vector<NamedParameter> named(torch::nn::Module& m, const std::string& strip) {
  std::vector<NamedParameter> out;
  for (auto& p : m.named_parameters()) {
    auto name = p.key();
    if (!strip.empty() && name.rfind(strip, 0) == 0) name = name.substr(strip.size());
    out.push_back({name, p.value(), true});
  }
  return out;
}

data::DistributedSampler::Options sampler_options(const config::Config& cfg, const StageContext& ctx, int64_t n) {
  data::DistributedSampler::Options o;
  o.num_samples = n;
  o.world_size = ctx.world_size;
  o.rank = ctx.rank;
  o.per_rank_batch = cfg.get_int("train.batch_size");
  o.shuffle = cfg.get_bool("data.shuffle");
  o.seed = ctx.seed;
  return o;
}

// Everything the stages share: tokenizer, loader, stream states.
class StageBase : public Stage {
 protected:
  StageBase(const config::Config& cfg, const StageContext& ctx)
      : ctx_(ctx),
        slots_{ctx.world_size, ctx.rank, ctx.grad_accum},
        tokenizer_(load_run_tokenizer(cfg)),
        preferences_(cfg.get_string("run.stage") == "reward") {
    text_hash_ = tokenizer_->base_hash();
    ensure_pad(cfg, *tokenizer_);
    auto inputs = cfg.get_string_list("data.train");
    examples_ = open_examples(inputs, cfg, *tokenizer_, text_hash_, "train", "data.train", preferences_);
    validation_inputs_ = cfg.get_string_list("data.validation");
    prefetch_ = cfg.get_int("data.prefetch");
  }

  // Writes `image` and the tokenizer (fixed once the stage is built).
  std::function<void(const fs::path&)> image_writer(model::HfModelImage image,
                                                    checkpoint::DeferredCopies* snapshot) const {
    if (snapshot) snapshot->take_all(image.tensors);
    return [image = std::move(image), tok = tokenizer_.get()](const fs::path& dir) {
      image.write(dir);
      tok->save(dir);
    };
  }

  void start_loader(const config::Config& cfg, std::shared_ptr<data::SpanMasker> masker) {
    masker_ = masker;
    loader_ = std::make_unique<BatchLoader>(examples_, sampler_options(cfg, ctx_, examples_->size()), masker,
                                            slot_streams(ctx_.seed, "span_mask", slots_), slots_, prefetch_);
  }

 public:
  MicroBatch next_batch() override { return loader_->next(); }
  std::string tokenizer_hash() const override { return tokenizer_->content_hash(); }
  int64_t samples_per_epoch() const override { return loader_->samples(); }

  std::map<std::string, std::string> state() const override {
    const auto& s = loader_->state();
    if (s.next_k != 0) throw Error("internal: stage state taken in the middle of an optimizer step");
    std::map<std::string, std::string> out{{"loader.epoch", std::to_string(s.sampler.epoch)},
                                           {"loader.position", std::to_string(s.sampler.position)}};
    save_slot_streams(out, "span_mask", slots_, s.mask_rng);
    return out;
  }
  void load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                  const std::string& source) override {
    const auto& first = rank_states.at(0);  // the data order is global: every rank saved the same position
    auto get = [&](const std::string& k) -> const std::string& {
      auto it = first.find(k);
      if (it == first.end()) throw Error(fmt::format("{}: stage state '{}' is missing", source, k));
      return it->second;
    };
    LoaderState s;
    s.sampler.epoch = std::stoll(get("loader.epoch"));
    s.sampler.position = std::stoll(get("loader.position"));
    auto masks = load_slot_streams(rank_states, "span_mask", slots_, source);
    s.mask_rng = std::move(masks.states);
    loader_->set_state(s);
    if (masks.saved_slots != slots_.total() && ctx_.rank == 0)
      spdlog::warn("{}: saved with {} micro-batch slot(s) per step (processes x train.grad_accum), this run has {}: "
                   "the data order continues exactly, but slot s continues the random streams of saved slot "
                   "(s mod {}), so steps differ from the saved run's own continuation",
                   source, masks.saved_slots, slots_.total(), masks.saved_slots);
  }

  std::vector<MicroBatch> validation_batches(int64_t count) override {
    if (validation_inputs_.empty()) return {};
    if (!validation_) throw Error("internal: validation examples were not opened");
    std::vector<MicroBatch> out;
    int64_t b = batch_size_, l = validation_->seq_len();
    for (int64_t start = 0; start < validation_->size() && static_cast<int64_t>(out.size()) < count; start += b) {
      std::vector<int64_t> idx;
      for (int64_t i = start; i < std::min(start + b, validation_->size()); ++i) idx.push_back(i);
      auto ids = torch::empty({static_cast<int64_t>(idx.size()), l}, torch::kInt64);
      std::vector<uint8_t> mask(idx.size() * static_cast<size_t>(l));
      validation_->fill(idx, ids.data_ptr<int64_t>(), mask.data());
      if (masker_ && validation_->needs_span_masker())
        mask = data::SpanMasker::eval_batch(static_cast<int64_t>(idx.size()), l).mask;
      MicroBatch mb;
      mb.ids = ids;
      mb.span_mask = torch::from_blob(mask.data(), {ids.size(0), l}, torch::kUInt8).to(torch::kBool);
      mb.tokens = validation_->loss_units(mb.span_mask);
      out.push_back(mb);
    }
    return out;
  }

 protected:
  void open_validation(const config::Config& cfg) {
    batch_size_ = cfg.get_int("train.batch_size");
    if (!validation_inputs_.empty())
      validation_ = open_examples(validation_inputs_, cfg, *tokenizer_, text_hash_,
                                  is_token_dataset(validation_inputs_.front()) ? "validation" : "train",
                                  "data.validation", preferences_);
  }

  StageContext ctx_;
  Slots slots_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  std::string text_hash_;
  bool preferences_ = false;
  std::shared_ptr<Examples> examples_, validation_;
  std::vector<std::string> validation_inputs_;
  std::shared_ptr<data::SpanMasker> masker_;
  std::unique_ptr<BatchLoader> loader_;
  int64_t prefetch_ = 0, batch_size_ = 1;
};

// ---------------------------------------------------------------------------
class ArStage : public StageBase {
 public:
  ArStage(const config::Config& cfg, const StageContext& ctx) : StageBase(cfg, ctx) {
    decoder_ = build_decoder(cfg, *tokenizer_, ctx.seed).decoder;
    if (cfg.get_string("model.attention") == "bidirectional")
      throw Error("stage ar trains causal LMs: model.attention must be auto or causal");
    decoder_->mutable_config().attention = model::Attention::Causal;
    open_validation(cfg);
    start_loader(cfg, nullptr);
  }
  std::string name() const override { return "ar"; }
  torch::nn::Module& module() override { return *decoder_; }
  std::vector<NamedParameter> parameters() override { return named(*decoder_, ""); }

  LossTerms loss(const MicroBatch& mb) override {
    int64_t l = mb.ids.size(1);
    model::ForwardOptions opt;
    opt.attention = model::Attention::Causal;
    auto hidden = decoder_->hidden_states(decoder_->embed(mb.ids.narrow(1, 0, l - 1)), opt);
    auto targets = mb.ids.narrow(1, 1, l - 1).reshape(-1);
    auto keep = mb.span_mask.narrow(1, 1, l - 1).reshape(-1).to(torch::kFloat32);
    auto loss = model::lm_head_cross_entropy(hidden.reshape({-1, hidden.size(2)}), decoder_->lm_head_weight(),
                                             targets, keep);
    return {loss, mb.tokens};
  }

  std::function<void(const fs::path&)> model_writer(checkpoint::DeferredCopies* snapshot) override {
    return image_writer(model::hf_model_image(*decoder_), snapshot);
  }

 private:
  model::Decoder decoder_{nullptr};
};

// A diffusion model.path trained with other noise settings is allowed (the
// config decides) but worth a warning: its predictions assumed the old ones.
void warn_if_noise_changed(const config::Config& cfg, const std::map<std::string, std::string>& extra,
                           const diffusion::NoiseSettings& now) {
  if (!extra.count("simplex_value")) return;  // an AR model, or a checkpoint that does not say
  const auto& path = cfg.get_string("model.path");
  auto before = diffusion::read_noise_settings(extra, path + "/config.json");
  if (before == now) return;
  spdlog::warn("{} was trained with simplex_value {}, schedule {}, timesteps {}; this run uses {}, {}, {} "
               "(diffusion.* keys)",
               path, before.simplex_value, before.schedule, before.timesteps, now.simplex_value, now.schedule,
               now.timesteps);
}

// ---------------------------------------------------------------------------
class DiffusionStage : public StageBase {
 public:
  DiffusionStage(const config::Config& cfg, const StageContext& ctx)
      : StageBase(cfg, ctx),
        stage_(cfg.get_string("run.stage")),
        loss_(diffusion::NoiseScheduler::from_config(cfg), diffusion::DiffusionLossOptions::from_config(cfg)),
        noise_(slot_streams(ctx.seed, "noise", slots_)),
        coin_(slot_streams(ctx.seed, "self_condition", slots_)) {
    if (cfg.get_string("model.attention") == "causal")
      throw Error(fmt::format("stage {} trains diffusion LMs: model.attention must be auto or bidirectional", stage_));
    auto mode = diffusion::parse_self_condition(cfg.get_string("diffusion.self_condition"));
    bool embedding_grad = cfg.get_bool("diffusion.embedding_grad");
    auto built = build_decoder(cfg, *tokenizer_, ctx.seed);
    model_ = diffusion::DiffusionLM(built.decoder, mode, embedding_grad, ctx.seed);
    // A diffusion checkpoint brings its timestep embedding; an AR one does not.
    model_->load_extra_tensors(std::move(built.extra_tensors));
    model_->decoder->mutable_config().attention = model::Attention::Bidirectional;
    model_->noise = {cfg.get_float("diffusion.simplex_value"), cfg.get_string("diffusion.schedule"),
                     cfg.get_int("diffusion.timesteps")};
    warn_if_noise_changed(cfg, model_->decoder->config().extra, model_->noise);
    std::shared_ptr<data::SpanMasker> masker;
    if (examples_->needs_span_masker()) masker = std::make_shared<data::SpanMasker>(data::Ul2Options::from_config(cfg));
    open_validation(cfg);
    start_loader(cfg, masker);
  }

  std::string name() const override { return stage_; }
  torch::nn::Module& module() override { return *model_; }
  std::vector<NamedParameter> parameters() override { return named(*model_, "decoder."); }

  LossTerms loss(const MicroBatch& mb) override {
    auto k = static_cast<size_t>(mb.slot / ctx_.world_size);
    auto r = mb.slot < 0 ? loss_(*model_, mb.ids, mb.span_mask, {validation_noise_, validation_coin_})
                         : loss_(*model_, mb.ids, mb.span_mask, {noise_.at(k), coin_.at(k)});
    return {r.loss_sum, r.tokens};
  }

  // Every evaluation draws the same noise (a comparable validation curve),
  // from streams of its own (validation never shifts training's draws).
  std::vector<MicroBatch> validation_batches(int64_t count) override {
    validation_noise_ = util::Rng(ctx_.seed, "noise.validation");
    validation_coin_ = util::Rng(ctx_.seed, "self_condition.validation");
    return StageBase::validation_batches(count);
  }

  std::map<std::string, std::string> state() const override {
    auto s = StageBase::state();
    for (auto [stream, rngs] : {std::pair<const char*, const std::vector<util::Rng>*>{"noise", &noise_},
                                {"self_condition", &coin_}}) {
      std::vector<std::vector<uint8_t>> states;
      for (const auto& rng : *rngs) states.push_back(rng.state());
      save_slot_streams(s, stream, slots_, states);
    }
    return s;
  }
  void load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                  const std::string& source) override {
    StageBase::load_state(rank_states, source);
    for (auto [stream, rngs] :
         {std::pair<const char*, std::vector<util::Rng>*>{"noise", &noise_}, {"self_condition", &coin_}}) {
      auto saved = load_slot_streams(rank_states, stream, slots_, source);
      for (size_t k = 0; k < saved.states.size(); ++k) rngs->at(k).set_state(saved.states[k]);
    }
  }

  std::function<void(const fs::path&)> model_writer(checkpoint::DeferredCopies* snapshot) override {
    return image_writer(diffusion::diffusion_lm_image(*model_), snapshot);
  }

 private:
  std::string stage_;
  diffusion::DiffusionLoss loss_;
  std::vector<util::Rng> noise_, coin_;  // per slot of this rank
  util::Rng validation_noise_{0, "noise.validation"}, validation_coin_{0, "self_condition.validation"};
  diffusion::DiffusionLM model_{nullptr};
};

// ---------------------------------------------------------------------------
// Bradley-Terry reward model on preference pairs: loss -log sigmoid(r_chosen -
// r_rejected) per pair, the reward read at each response's EOS.
class RewardStage : public StageBase {
 public:
  RewardStage(const config::Config& cfg, const StageContext& ctx) : StageBase(cfg, ctx) {
    if (cfg.get_string("model.attention") == "bidirectional")
      throw Error("stage reward trains a causal sequence classifier: model.attention must be auto or causal");
    auto built = build_decoder(cfg, *tokenizer_, ctx.seed);
    built.decoder->mutable_config().attention = model::Attention::Causal;
    model_ = model::RewardModel(built.decoder, ctx.seed);
    auto& extra = built.extra_tensors;
    if (auto it = extra.find("score.weight"); it != extra.end()) {  // continuing a reward model
      torch::NoGradGuard no_grad;
      model_->score->weight.copy_(it->second);
      extra.erase(it);
    }
    extra.erase("lm_head.weight");  // a causal LM's head: not part of a classifier
    if (!extra.empty())
      throw Error(fmt::format("{}: holds '{}'; stage reward starts from a causal LM or a reward model",
                              cfg.get_string("model.path"), extra.begin()->first));
    open_validation(cfg);
    start_loader(cfg, nullptr);
  }
  std::string name() const override { return "reward"; }
  torch::nn::Module& module() override { return *model_; }
  std::vector<NamedParameter> parameters() override { return named(*model_, ""); }

  LossTerms loss(const MicroBatch& mb) override {
    int64_t pairs = mb.ids.size(0), l = mb.ids.size(1) / 2;
    auto ids = mb.ids.reshape({2 * pairs, l});  // chosen, rejected, chosen, ...
    auto positions = mb.span_mask.reshape({2 * pairs, l}).to(torch::kInt64).argmax(1);
    auto scores = model_->forward(ids, positions).view({pairs, 2});
    auto margin = scores.select(1, 0) - scores.select(1, 1);
    return {-torch::log_sigmoid(margin).sum(), pairs};
  }

  std::function<void(const fs::path&)> model_writer(checkpoint::DeferredCopies* snapshot) override {
    return image_writer(model::reward_model_image(*model_), snapshot);
  }

 private:
  model::RewardModel model_{nullptr};
};

}  // namespace

std::unique_ptr<Stage> make_stage(const config::Config& cfg, const StageContext& ctx) {
  const auto& stage = cfg.get_string("run.stage");
  if (stage == "ar") return std::make_unique<ArStage>(cfg, ctx);
  if (stage == "adaptation" || stage == "instruction") return std::make_unique<DiffusionStage>(cfg, ctx);
  if (stage == "reward") return std::make_unique<RewardStage>(cfg, ctx);
  throw Error(fmt::format("run.stage '{}' is unknown (ar, adaptation, instruction, reward)", stage));
}

}  // namespace tess::train
