// Stage 2, instruction tuning (method.md 6): chat JSONL through the Tulu
// template; the span (noised and scored) is the assistant's response, the
// prompt stays clean context.
#include "train/stages/diffusion_stage.h"
#include "train/stages/stages.h"

namespace tess::train {
namespace {

class InstructionStage : public DiffusionStage {
 public:
  InstructionStage(const config::Config& cfg, const StageContext& ctx)
      : DiffusionStage(cfg, ctx, "instruction", {{data::DataKind::Chat}, /*ul2_spans=*/false}) {}
};

}  // namespace

std::unique_ptr<Stage> make_instruction_stage(const config::Config& cfg, const StageContext& ctx) {
  return std::make_unique<InstructionStage>(cfg, ctx);
}

}  // namespace tess::train
