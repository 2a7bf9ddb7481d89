// Stage 1, AR-to-diffusion adaptation (method.md 5): continued pretraining on
// token shards of plain text, each sequence noised on UL2 spans
// (diffusion.ul2: prefix-LM and T5 span objectives), loss on the spans.
#include "train/stages/diffusion_stage.h"
#include "train/stages/stages.h"

namespace tess::train {
namespace {

class AdaptationStage : public DiffusionStage {
 public:
  AdaptationStage(const config::Config& cfg, const StageContext& ctx)
      : DiffusionStage(cfg, ctx, "adaptation", {{data::DataKind::TokenShards}, /*ul2_spans=*/true}) {}
};

}  // namespace

std::unique_ptr<Stage> make_adaptation_stage(const config::Config& cfg, const StageContext& ctx) {
  return std::make_unique<AdaptationStage>(cfg, ctx);
}

}  // namespace tess::train
