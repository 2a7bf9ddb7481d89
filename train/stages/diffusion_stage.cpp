#include "train/stages/diffusion_stage.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/config/config.h"
#include "core/util/error.h"

namespace tess::train {
namespace {

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

// The same for the ablation layout of a diffusion model.path.
void warn_if_layout_changed(const config::Config& cfg, const std::map<std::string, std::string>& extra,
                            bool diffusion_checkpoint, const diffusion::DiffusionLayout& now) {
  if (!diffusion_checkpoint) return;  // an AR model: nothing to change from
  const auto& path = cfg.get_string("model.path");
  auto before = diffusion::read_layout(extra, path + "/config.json");
  if (before == now) return;
  spdlog::warn("{} was trained with {} attention and shift_labels {}; this run uses {} and {} (model.attention, "
               "diffusion.shift_labels)",
               path, model::attention_name(before.attention), before.shift_labels, model::attention_name(now.attention),
               now.shift_labels);
}

}  // namespace

DiffusionStage::DiffusionStage(const config::Config& cfg, const StageContext& ctx, std::string name, StageData data)
    : StageBase(cfg, ctx, std::move(name), std::move(data)),
      loss_(diffusion::NoiseScheduler::from_config(cfg), diffusion::DiffusionLossOptions::from_config(cfg)),
      noise_(data::slot_streams(ctx.seed, "noise", slots_)),
      coin_(data::slot_streams(ctx.seed, "self_condition", slots_)) {
  diffusion::DiffusionLayout layout;
  if (config::attention_setting_choices().parse(cfg.get_string("model.attention")) == config::AttentionSetting::Causal) {
    layout.attention = model::Attention::Causal;
    spdlog::warn("model.attention causal: a diffusion LM with causal attention, the paper's ablation (the recipe is "
                 "bidirectional)");
  }
  layout.shift_labels = cfg.get_bool("diffusion.shift_labels");
  if (!layout.shift_labels)
    spdlog::warn("diffusion.shift_labels false: position j predicts its own token, the paper's ablation (the recipe "
                 "shifts)");
  auto built = build_decoder(cfg, {});
  model_ = diffusion::DiffusionLM(built.decoder, diffusion::parse_self_condition(cfg.get_string("diffusion.self_condition")),
                                  cfg.get_bool("diffusion.embedding_grad"), ctx.seed);
  // A diffusion checkpoint brings its timestep embedding; an AR one does not.
  model_->load_extra_tensors(std::move(built.extra_tensors));
  warn_if_layout_changed(cfg, model_->decoder->config().extra, model_->timestep_embed_loaded(), layout);
  model_->layout = layout;
  model_->decoder->mutable_config().attention = layout.attention;
  model_->noise = {cfg.get_float("diffusion.simplex_value"), cfg.get_string("diffusion.schedule"),
                   cfg.get_int("diffusion.timesteps")};
  warn_if_noise_changed(cfg, model_->decoder->config().extra, model_->noise);
}

torch::nn::Module& DiffusionStage::module() { return *model_; }

LossTerms DiffusionStage::loss(const MicroBatch& mb) {
  auto k = static_cast<size_t>(mb.slot / ctx_.world_size);
  // The batch's span index and token count were made on the host (data/batches.h).
  auto span = mb.span_positions.defined() ? diffusion::SpanIndex::from_positions(mb.span_positions, mb.ids.size(1))
                                          : diffusion::SpanIndex::from_mask(mb.span_mask);
  diffusion::DiffusionStreams streams = mb.slot < 0 ? diffusion::DiffusionStreams{validation_noise_, validation_coin_}
                                                    : diffusion::DiffusionStreams{noise_.at(k), coin_.at(k)};
  auto r = loss_(*model_, mb.ids, mb.span_mask, span, mb.tokens, streams);
  return {r.loss_sum, r.tokens, r.span_rows, r.self_conditioned, r.noise_s, r.self_condition_s};
}

StepFlops DiffusionStage::flops(int64_t examples, int64_t row_len, int64_t span_rows, double rate) const {
  return step_flops(model_->decoder->config(), config::run_stage_choices().parse(name()), examples, row_len,
                    span_rows, rate);
}

std::vector<MicroBatch> DiffusionStage::validation_batches(int64_t count) {
  validation_noise_ = util::Rng(ctx_.seed, "noise.validation");
  validation_coin_ = util::Rng(ctx_.seed, "self_condition.validation");
  return StageBase::validation_batches(count);
}

std::map<std::string, std::string> DiffusionStage::state() const {
  auto s = StageBase::state();
  data::save_slot_streams(s, "noise", slots_, data::stream_states(noise_));
  data::save_slot_streams(s, "self_condition", slots_, data::stream_states(coin_));
  return s;
}

void DiffusionStage::load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                                const std::string& source) {
  StageBase::load_state(rank_states, source);
  data::load_slot_streams(rank_states, "noise", slots_, source, noise_);
  data::load_slot_streams(rank_states, "self_condition", slots_, source, coin_);
}

std::function<void(const std::filesystem::path&)> DiffusionStage::model_writer(checkpoint::DeferredCopies* snapshot) {
  return image_writer(diffusion::diffusion_lm_image(*model_), snapshot);
}

}  // namespace tess::train
