#pragma once
// The part both diffusion stages share (method.md 3-6): the DiffusionLM
// around the decoder (bidirectional attention, timestep embedding from the
// checkpoint or fresh), the one DiffusionLoss over the one NoiseScheduler,
// and the noise and self-conditioning streams of each micro-batch slot
// (validation draws from streams of its own, the same at every evaluation).
// AdaptationStage and InstructionStage say only which data they take and how
// its spans are masked.
#include "core/diffusion/diffusion_loss.h"
#include "core/util/rng.h"
#include "train/stages/stage_base.h"

namespace tess::train {

class DiffusionStage : public StageBase {
 public:
  torch::nn::Module& module() override;
  std::vector<NamedParameter> parameters() override { return named(module(), "decoder."); }
  LossTerms loss(const MicroBatch& mb) override;
  StepFlops flops(int64_t examples, int64_t row_len, int64_t span_rows, double self_condition_rate) const override;
  std::vector<MicroBatch> validation_batches(int64_t count) override;
  std::map<std::string, std::string> state() const override;
  void load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                  const std::string& source) override;
  std::function<void(const std::filesystem::path&)> model_writer(checkpoint::DeferredCopies* snapshot) override;

 protected:
  DiffusionStage(const config::Config& cfg, const StageContext& ctx, std::string name, StageData data);

 private:
  diffusion::DiffusionLoss loss_;
  diffusion::DiffusionLM model_{nullptr};
  std::vector<util::Rng> noise_, coin_;  // per slot of this rank
  util::Rng validation_noise_{0, "noise.validation"}, validation_coin_{0, "self_condition.validation"};
};

}  // namespace tess::train
