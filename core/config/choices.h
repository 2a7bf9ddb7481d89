#pragma once
// The training loop's configuration choices as enums, each with its one name
// table (util::Choices): the trainer and `tess plan` parse them through
// train::TrainOptions, and the schema lists the same names. They live here,
// below train/, because the schema (core/config/keys.cpp) must see them.
#include "core/util/choices.h"

namespace tess::config {

enum class RunStage { Ar, Adaptation, Instruction, Reward };
const util::Choices<RunStage>& run_stage_choices();  // run.stage
inline bool is_diffusion(RunStage s) { return s == RunStage::Adaptation || s == RunStage::Instruction; }

enum class Precision { Fp32, Bf16Autocast, Bf16Master };
const util::Choices<Precision>& precision_choices();  // train.precision

enum class NonfinitePolicy { Skip, Rollback, Abort };
const util::Choices<NonfinitePolicy>& nonfinite_policy_choices();  // train.nonfinite_policy

enum class LossNormalization { GlobalTokens, MicroBatch };
const util::Choices<LossNormalization>& loss_normalization_choices();  // diffusion.loss_normalization

enum class LrShape { Constant, Linear, Cosine };
const util::Choices<LrShape>& lr_shape_choices();  // train.lr_schedule

}  // namespace tess::config
