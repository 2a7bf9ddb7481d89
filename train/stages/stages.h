#pragma once
// One factory per stage module (train/stages/<stage>.cpp); make_stage
// (train/stage.cpp) picks the one `run.stage` names.
#include <memory>

#include "train/stage.h"

namespace tess::train {

std::unique_ptr<Stage> make_ar_stage(const config::Config& cfg, const StageContext& ctx);
std::unique_ptr<Stage> make_adaptation_stage(const config::Config& cfg, const StageContext& ctx);
std::unique_ptr<Stage> make_instruction_stage(const config::Config& cfg, const StageContext& ctx);
std::unique_ptr<Stage> make_reward_stage(const config::Config& cfg, const StageContext& ctx);

}  // namespace tess::train
