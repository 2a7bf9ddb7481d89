#include "train/stage.h"

#include <fmt/format.h>

#include "core/config/config.h"
#include "core/util/error.h"
#include "train/stages/stages.h"

namespace tess::train {

std::unique_ptr<Stage> make_stage(const config::Config& cfg, const StageContext& ctx) {
  using Factory = std::unique_ptr<Stage> (*)(const config::Config&, const StageContext&);
  static const std::pair<const char*, Factory> kStages[] = {{"ar", make_ar_stage},
                                                            {"adaptation", make_adaptation_stage},
                                                            {"instruction", make_instruction_stage},
                                                            {"reward", make_reward_stage}};
  const auto& name = cfg.get_string("run.stage");
  for (const auto& [stage, factory] : kStages)
    if (name == stage) return factory(cfg, ctx);
  throw Error(fmt::format("run.stage '{}' is unknown (ar, adaptation, instruction, reward)", name));
}

}  // namespace tess::train
