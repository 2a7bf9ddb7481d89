#pragma once
// Configuration choices as enums, each with its one name table
// (util::Choices): the code parses a key through it (the trainer and `tess
// plan` through train::TrainOptions), and the schema lists the same names.
// They live here, below data/ and train/, because the schema
// (core/config/keys.cpp) must see them; the enums of choices that belong to
// core's own modules (noise schedule, self-conditioning, attention) keep
// their tables there.
#include "core/util/choices.h"

namespace tess::config {

enum class RunStage { Ar, Adaptation, Instruction, Reward };
const util::Choices<RunStage>& run_stage_choices();  // run.stage
inline bool is_diffusion(RunStage s) { return s == RunStage::Adaptation || s == RunStage::Instruction; }

enum class Precision { Fp32, Bf16Autocast, Bf16Master };
const util::Choices<Precision>& precision_choices();  // train.precision

enum class NonfinitePolicy { Skip, Rollback, Abort };
const util::Choices<NonfinitePolicy>& nonfinite_policy_choices();  // train.nonfinite_policy

// log.on_write_error: a failed write of the log file stops the run, or warns once.
enum class LogWriteError { Stop, Warn };
const util::Choices<LogWriteError>& log_write_error_choices();

enum class LossNormalization { GlobalTokens, MicroBatch };
const util::Choices<LossNormalization>& loss_normalization_choices();  // diffusion.loss_normalization

enum class LrShape { Constant, Linear, Cosine };
const util::Choices<LrShape>& lr_shape_choices();  // train.lr_schedule

enum class CpuAllocator { Caching, System };
const util::Choices<CpuAllocator>& cpu_allocator_choices();  // run.cpu_allocator

// model.attention: auto = causal for the causal stages, bidirectional for diffusion.
enum class AttentionSetting { Auto, Causal, Bidirectional };
const util::Choices<AttentionSetting>& attention_setting_choices();

// data.chat.turns and data.chat.too_long (data/chat.h uses these enums).
enum class ChatTurns { First, All };
const util::Choices<ChatTurns>& chat_turns_choices();
enum class TooLongPolicy { TruncateRight, TruncatePrompt, Drop };
const util::Choices<TooLongPolicy>& too_long_choices();

// data.ul2.variant (data/masking.h uses this enum).
enum class Ul2Variant { Reference, TessV1 };
const util::Choices<Ul2Variant>& ul2_variant_choices();

}  // namespace tess::config
