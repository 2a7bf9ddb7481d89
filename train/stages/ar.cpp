// Stage ar: a causal LM, next-token cross-entropy on the target positions
// (every real token of packed text, or the response of a chat example).
// Trains the quickstart's base model and the AR comparison runs.
#include <torch/torch.h>

#include "core/config/config.h"
#include "core/model/lm_head_loss.h"
#include "core/util/error.h"
#include "train/stages/stage_base.h"
#include "train/stages/stages.h"

namespace tess::train {
namespace {

class ArStage : public StageBase {
 public:
  ArStage(const config::Config& cfg, const StageContext& ctx)
      : StageBase(cfg, ctx, "ar", {{data::DataKind::TokenShards, data::DataKind::Chat}, false}) {
    if (config::attention_setting_choices().parse(cfg.get_string("model.attention")) ==
        config::AttentionSetting::Bidirectional)
      throw Error("stage ar trains causal LMs: model.attention must be auto or causal");
    decoder_ = build_decoder(cfg, {/*body_only=*/false, /*refuse_diffusion=*/true}).decoder;
    decoder_->mutable_config().attention = model::Attention::Causal;
  }
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

  StepFlops flops(int64_t examples, int64_t row_len, int64_t, double) const override {
    return step_flops(decoder_->config(), config::RunStage::Ar, examples, row_len, 0, 0);
  }

  std::function<void(const std::filesystem::path&)> model_writer(checkpoint::DeferredCopies* snapshot) override {
    return image_writer(model::hf_model_image(*decoder_), snapshot);
  }

 private:
  model::Decoder decoder_{nullptr};
};

}  // namespace

std::unique_ptr<Stage> make_ar_stage(const config::Config& cfg, const StageContext& ctx) {
  return std::make_unique<ArStage>(cfg, ctx);
}

}  // namespace tess::train
