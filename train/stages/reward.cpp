// Stage reward: a Bradley-Terry reward model on preference pairs, loss
// -log sigmoid(r_chosen - r_rejected) per pair, the reward read at each
// response's EOS; saved as an HF sequence classifier.
#include <torch/torch.h>

#include <fmt/format.h>

#include "core/config/config.h"
#include "core/model/reward_model.h"
#include "core/util/error.h"
#include "train/stages/stage_base.h"
#include "train/stages/stages.h"

namespace tess::train {
namespace {

class RewardStage : public StageBase {
 public:
  RewardStage(const config::Config& cfg, const StageContext& ctx)
      : StageBase(cfg, ctx, "reward", {{data::DataKind::Preferences}, false}) {
    if (config::attention_setting_choices().parse(cfg.get_string("model.attention")) ==
        config::AttentionSetting::Bidirectional)
      throw Error("stage reward trains a causal sequence classifier: model.attention must be auto or causal");
    auto built = build_decoder(cfg, {/*body_only=*/true, /*refuse_diffusion=*/false});
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
  }
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

  // A row holds a pair: two sequences of half its length.
  StepFlops flops(int64_t examples, int64_t row_len, int64_t, double) const override {
    return step_flops(model_->decoder().config(), config::RunStage::Reward, 2 * examples, row_len / 2, 0, 0);
  }

  std::function<void(const std::filesystem::path&)> model_writer(checkpoint::DeferredCopies* snapshot) override {
    return image_writer(model::reward_model_image(*model_), snapshot);
  }

 private:
  model::RewardModel model_{nullptr};
};

}  // namespace

std::unique_ptr<Stage> make_reward_stage(const config::Config& cfg, const StageContext& ctx) {
  return std::make_unique<RewardStage>(cfg, ctx);
}

}  // namespace tess::train
