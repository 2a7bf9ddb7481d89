#include "train/options.h"

#include <cmath>

#include <fmt/format.h>

#include "core/config/config.h"
#include "core/util/error.h"

namespace tess::train {

TrainOptions TrainOptions::from_config(const config::Config& cfg) {
  TrainOptions o;
  o.stage = config::run_stage_choices().parse(cfg.get_string("run.stage"));
  o.precision = config::precision_choices().parse(cfg.get_string("train.precision"));
  const auto& dtype = cfg.get_string("model.dtype");
  if (o.precision == Precision::Bf16Master && dtype != "bfloat16")
    throw Error(fmt::format("train.precision: bf16_master trains bf16 weights with fp32 master copies; set "
                            "model.dtype: bfloat16 (it is {}, set at {})",
                            dtype, cfg.origin("model.dtype").where));
  if (o.precision != Precision::Bf16Master && dtype != "float32")
    throw Error(fmt::format("model.dtype: bfloat16 weights need train.precision: bf16_master (fp32 master copies); "
                            "train.precision is {} (set at {})",
                            config::precision_choices().name(o.precision), cfg.origin("train.precision").where));
  o.batch_size = cfg.get_int("train.batch_size");
  o.grad_accum = cfg.get_int("train.grad_accum");
  o.max_steps = cfg.get_int("train.max_steps");
  o.epochs = cfg.get_float("train.epochs");
  if (o.max_steps == 0 && o.epochs <= 0) throw Error("train.max_steps is 0 and train.epochs is 0: set one of them");
  if (o.max_steps > 0 && cfg.origin("train.epochs").where != "default")
    throw Error(fmt::format("{}: train.epochs is set but train.max_steps = {} decides the length; set max_steps: 0 "
                            "to train by epochs",
                            cfg.origin("train.epochs").where, o.max_steps));
  o.grad_clip = cfg.get_float("train.grad_clip");
  o.normalization = config::loss_normalization_choices().parse(cfg.get_string("diffusion.loss_normalization"));
  o.nonfinite = config::nonfinite_policy_choices().parse(cfg.get_string("train.nonfinite_policy"));
  o.max_rollbacks = cfg.get_int("train.max_rollbacks");
  o.inject_nonfinite_at = cfg.get_int("train.inject_nonfinite_at");
  o.adamw.beta1 = cfg.get_float("train.adam_beta1");
  o.adamw.beta2 = cfg.get_float("train.adam_beta2");
  o.adamw.eps = cfg.get_float("train.adam_eps");
  o.adamw.weight_decay = cfg.get_float("train.weight_decay");
  o.decay_norms_and_embeddings = cfg.get_bool("train.decay_norms_and_embeddings");
  o.zero = cfg.get_int("dist.zero") == 1;
  o.overlap = cfg.get_bool("dist.overlap");
  o.bucket_mb = cfg.get_float("dist.bucket_mb");
  o.log_every = cfg.get_int("log.every");
  o.eval_every = cfg.get_int("train.eval_every");
  o.eval_batches = cfg.get_int("train.eval_batches");
  return o;
}

int64_t TrainOptions::steps(int64_t samples_per_epoch, int world_size) const {
  if (max_steps > 0) return max_steps;
  double global_batch = static_cast<double>(batch_size * grad_accum * world_size);
  return static_cast<int64_t>(std::ceil(epochs * static_cast<double>(samples_per_epoch) / global_batch));
}

}  // namespace tess::train
