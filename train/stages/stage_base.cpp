#include "train/stages/stage_base.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/checkpoint/deferred_copy.h"
#include "core/config/config.h"
#include "core/util/cpu.h"
#include "core/util/error.h"
#include "core/util/format.h"
#include "data/tokenizer.h"

namespace tess::train {
namespace fs = std::filesystem;
namespace {

std::unique_ptr<data::Tokenizer> load_run_tokenizer(const config::Config& cfg) {
  const auto& explicit_path = cfg.get_string("data.tokenizer");
  const auto& model_path = cfg.get_string("model.path");
  if (!explicit_path.empty()) return data::load_tokenizer(explicit_path);
  if (!model_path.empty()) return data::load_tokenizer(model_path);
  throw Error("no tokenizer: set data.tokenizer (a tokenizer.model or a model directory) or model.path");
}

// The tokenizer gets a [PAD] when it has none (as the reference adds one to Mistral's).
void ensure_pad(const config::Config& cfg, data::Tokenizer& tok) {
  if (tok.pad_id() >= 0) return;
  if (!cfg.get_bool("model.add_pad_token"))
    throw Error("the tokenizer has no PAD token and model.add_pad_token is false; chat data and packing need one");
  int32_t id = tok.add_special_token("[PAD]", true);
  spdlog::info("added [PAD] to the tokenizer as id {}", id);
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

}  // namespace

StageBase::StageBase(const config::Config& cfg, const StageContext& ctx, std::string name, StageData data)
    : ctx_(ctx),
      slots_{ctx.world_size, ctx.rank, ctx.grad_accum},
      tokenizer_(load_run_tokenizer(cfg)),
      name_(std::move(name)),
      eval_spans_(data.ul2_spans ? std::optional(data::Ul2Options::from_config(cfg).variant) : std::nullopt),
      batch_size_(cfg.get_int("train.batch_size")) {
  auto text_hash = tokenizer_->base_hash();  // before [PAD]: shards made without it still match
  ensure_pad(cfg, *tokenizer_);
  auto train = data::open_examples(cfg.get_string_list("data.train"), data.kinds, name_, cfg, *tokenizer_, text_hash,
                                   "train", "data.train");
  if (auto inputs = cfg.get_string_list("data.validation"); !inputs.empty())
    validation_ = data::open_examples(inputs, data.kinds, name_, cfg, *tokenizer_, text_hash, "validation",
                                      "data.validation");
  data::BatchLoader::Options lo;
  lo.sampler = sampler_options(cfg, ctx, train->size());
  lo.slots = slots_;
  if (data.ul2_spans) lo.masker = std::make_shared<data::SpanMasker>(data::Ul2Options::from_config(cfg));
  lo.seed = ctx.seed;
  lo.prefetch = cfg.get_int("data.prefetch");
  loader_ = std::make_unique<data::BatchLoader>(std::move(train), lo);
}

StageBase::~StageBase() = default;

std::vector<MicroBatch> StageBase::validation_batches(int64_t count) {
  if (!validation_) return {};
  return data::validation_batches(*validation_, batch_size_, count, eval_spans_);
}

std::string StageBase::tokenizer_hash() const { return tokenizer_->content_hash(); }

model::LoadedModel StageBase::build_decoder(const config::Config& cfg, DecoderUse use) const {
  const auto& tok = *tokenizer_;
  const auto& path = cfg.get_string("model.path");
  model::Decoder decoder{nullptr};
  std::map<std::string, torch::Tensor> extra;
  if (path.empty()) {
    auto mc = model::ModelConfig::from_run_config(cfg);
    if (cfg.origin("model.vocab_size").where != "default" && mc.vocab_size != tok.vocab_size())
      throw Error(fmt::format("{}: model.vocab_size = {} but the tokenizer has {} tokens",
                              cfg.origin("model.vocab_size").where, mc.vocab_size, tok.vocab_size()));
    mc.vocab_size = tok.vocab_size();
    mc.bos_token_id = tok.bos_id();
    mc.eos_token_id = tok.eos_id();
    mc.pad_token_id = tok.pad_id();
    // The weights are made on the host first: refuse what cannot fit before allocating it.
    auto bytes = mc.parameter_bytes(cfg.get_string("model.dtype"));
    if (auto ram = util::physical_memory_bytes(); ram > 0 && bytes > ram)
      throw Error(fmt::format("the model.* keys describe {} parameters ({} of weights alone), more than this "
                              "machine's {} of memory; `tess plan CONFIG` shows what a run needs",
                              util::human_count(static_cast<double>(mc.num_parameters())),
                              util::human_bytes(static_cast<double>(bytes)), util::human_bytes(static_cast<double>(ram))));
    decoder = model::Decoder(mc, ctx_.seed);
  } else {
    model::LoadOptions lo;
    lo.dtype = cfg.get_string("model.dtype");
    lo.body_only = use.body_only;
    auto loaded = model::load_hf_model(path, lo);
    if (!loaded.extra_tensors.empty() && use.refuse_diffusion)
      throw Error(fmt::format("{}: holds '{}', a diffusion model's tensor; stage {} trains causal LMs", path,
                              loaded.extra_tensors.begin()->first, name_));
    decoder = loaded.decoder;
    extra = std::move(loaded.extra_tensors);
    auto vocab = model::ModelConfig::trained_vocab(path, decoder->config().vocab_size, tok.vocab_size());
    if (decoder->config().vocab_size < vocab) decoder->resize_vocab(vocab);
    if (decoder->config().vocab_size > tok.vocab_size())
      spdlog::info("{}: {} embedding rows beyond the tokenizer's {} tokens are padding (kept, never a label)", path,
                   decoder->config().vocab_size - tok.vocab_size(), tok.vocab_size());
    decoder->mutable_config().pad_token_id = tok.pad_id();
  }
  decoder->set_activation_checkpointing(cfg.get_bool("model.activation_checkpointing"));
  return {decoder, std::move(extra)};
}

std::function<void(const fs::path&)> StageBase::image_writer(model::HfModelImage image,
                                                             checkpoint::DeferredCopies* snapshot) const {
  if (snapshot) snapshot->take_all(image.tensors);
  return [image = std::move(image), tok = tokenizer_.get()](const fs::path& dir) {
    image.write(dir);
    tok->save(dir);
  };
}

std::vector<NamedParameter> StageBase::named(torch::nn::Module& m, const std::string& strip) {
  std::vector<NamedParameter> out;
  for (auto& p : m.named_parameters()) {
    auto name = p.key();
    if (!strip.empty() && name.rfind(strip, 0) == 0) name = name.substr(strip.size());
    out.push_back({name, p.value(), true});
  }
  return out;
}

}  // namespace tess::train
