#include "core/config/choices.h"

namespace tess::config {

const util::Choices<RunStage>& run_stage_choices() {
  static const util::Choices<RunStage> c("run.stage", {{RunStage::Ar, "ar"},
                                                       {RunStage::Adaptation, "adaptation"},
                                                       {RunStage::Instruction, "instruction"},
                                                       {RunStage::Reward, "reward"}});
  return c;
}

const util::Choices<Precision>& precision_choices() {
  static const util::Choices<Precision> c("train.precision", {{Precision::Fp32, "fp32"},
                                                              {Precision::Bf16Autocast, "bf16_autocast"},
                                                              {Precision::Bf16Master, "bf16_master"}});
  return c;
}

const util::Choices<NonfinitePolicy>& nonfinite_policy_choices() {
  static const util::Choices<NonfinitePolicy> c("train.nonfinite_policy", {{NonfinitePolicy::Skip, "skip"},
                                                                           {NonfinitePolicy::Rollback, "rollback"},
                                                                           {NonfinitePolicy::Abort, "abort"}});
  return c;
}

const util::Choices<LogWriteError>& log_write_error_choices() {
  static const util::Choices<LogWriteError> c("log.on_write_error",
                                              {{LogWriteError::Stop, "stop"}, {LogWriteError::Warn, "warn"}});
  return c;
}

const util::Choices<LossNormalization>& loss_normalization_choices() {
  static const util::Choices<LossNormalization> c(
      "diffusion.loss_normalization",
      {{LossNormalization::GlobalTokens, "global_tokens"}, {LossNormalization::MicroBatch, "micro_batch"}});
  return c;
}

const util::Choices<LrShape>& lr_shape_choices() {
  static const util::Choices<LrShape> c(
      "train.lr_schedule", {{LrShape::Constant, "constant"}, {LrShape::Linear, "linear"}, {LrShape::Cosine, "cosine"}});
  return c;
}

const util::Choices<CpuAllocator>& cpu_allocator_choices() {
  static const util::Choices<CpuAllocator> c("run.cpu_allocator",
                                             {{CpuAllocator::Caching, "caching"}, {CpuAllocator::System, "system"}});
  return c;
}

const util::Choices<AttentionSetting>& attention_setting_choices() {
  static const util::Choices<AttentionSetting> c("model.attention", {{AttentionSetting::Auto, "auto"},
                                                                     {AttentionSetting::Causal, "causal"},
                                                                     {AttentionSetting::Bidirectional, "bidirectional"}});
  return c;
}

const util::Choices<ChatTurns>& chat_turns_choices() {
  static const util::Choices<ChatTurns> c("data.chat.turns", {{ChatTurns::First, "first"}, {ChatTurns::All, "all"}});
  return c;
}

const util::Choices<TooLongPolicy>& too_long_choices() {
  static const util::Choices<TooLongPolicy> c(
      "data.chat.too_long", {{TooLongPolicy::TruncateRight, "truncate_right"},
                             {TooLongPolicy::TruncatePrompt, "truncate_prompt"},
                             {TooLongPolicy::Drop, "drop"}});
  return c;
}

const util::Choices<Ul2Variant>& ul2_variant_choices() {
  static const util::Choices<Ul2Variant> c("data.ul2.variant",
                                           {{Ul2Variant::Reference, "reference"}, {Ul2Variant::TessV1, "tess_v1"}});
  return c;
}

}  // namespace tess::config
