#pragma once
// What every stage shares: the run's tokenizer (with a [PAD] added when it
// has none), the training and validation examples of the kinds the stage
// declares, the background loader with its resumable state, and building
// the decoder from model.path or fresh from model.* keys.
#include <memory>
#include <string>
#include <vector>

#include "core/model/hf_checkpoint.h"
#include "data/batches.h"
#include "train/stage.h"

namespace tess::data {
class Tokenizer;
}

namespace tess::train {

// The data a stage takes (data.train, data.validation) and how its masks come.
struct StageData {
  std::vector<data::DataKind> kinds;
  bool ul2_spans = false;  // span masks from diffusion.ul2 (training) and eval masks (validation)
};

class StageBase : public Stage {
 public:
  std::string name() const override { return name_; }
  MicroBatch next_batch() override { return loader_->next(); }
  std::vector<MicroBatch> validation_batches(int64_t count) override;
  std::map<std::string, std::string> state() const override { return loader_->state(); }
  void load_state(const std::vector<std::map<std::string, std::string>>& rank_states,
                  const std::string& source) override {
    loader_->load_state(rank_states, source);
  }
  std::string tokenizer_hash() const override;
  int64_t samples_per_epoch() const override { return loader_->samples(); }

 protected:
  StageBase(const config::Config& cfg, const StageContext& ctx, std::string name, StageData data);
  ~StageBase() override;

  // How this stage uses the decoder it builds.
  struct DecoderUse {
    bool body_only = false;         // a sequence classifier: no LM head
    bool refuse_diffusion = false;  // a causal LM stage: a diffusion checkpoint is an error
  };
  // The decoder of model.path (plus its non-decoder tensors), or a fresh one
  // shaped by model.* and sized to the tokenizer.
  model::LoadedModel build_decoder(const config::Config& cfg, DecoderUse use) const;

  // Writes `image` and the tokenizer (see Stage::model_writer).
  std::function<void(const std::filesystem::path&)> image_writer(model::HfModelImage image,
                                                                 checkpoint::DeferredCopies* snapshot) const;
  // `m`'s parameters under their HF names (`strip` removed from the front).
  static std::vector<NamedParameter> named(torch::nn::Module& m, const std::string& strip);

  const StageContext ctx_;
  const data::SlotLayout slots_;
  std::unique_ptr<data::Tokenizer> tokenizer_;

 private:
  std::string name_;
  std::optional<config::Ul2Variant> eval_spans_;  // validation masks of data.ul2.variant (adaptation)
  int64_t batch_size_ = 1;
  std::shared_ptr<const data::Examples> validation_;
  std::unique_ptr<data::BatchLoader> loader_;
};

}  // namespace tess::train
