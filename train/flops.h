#pragma once
// Model FLOPs of a training step, by term: the one count behind `tess plan`'s
// compute figures, `tess bench`'s MFU and the trainer's per-step `mfu` in
// metrics.jsonl (docs/performance.md, "Counting rules"). Each term is counted
// where tess computes it: the decoder's matmul weights on every position the
// model reads (an embedding lookup is no matmul), the LM head only on the
// rows whose loss is computed (every next token for ar; span rows for the
// diffusion stages: the fused loss never makes the other rows' logits), the
// input projection softmax(x_t) @ E forward only on span rows, and the
// self-conditioning pass as the forward of all of that, at the rate it ran.
#include <cstdint>

#include "core/config/choices.h"
#include "core/model/model_config.h"

namespace tess::train {

struct StepFlops {
  double body = 0;              // 6 x the layers' matmul weights per position read
  double attention = 0;         // 12 x layers x heads x head_dim x (attended length) per position read
  double lm_head = 0;           // 6 x V x H per predicted row
  double input_projection = 0;  // 2 x V x H per span row, forward only (E without gradient)
  double self_condition = 0;    // rate x (forward of body + attention + input projection + LM head)
  double total() const { return body + attention + lm_head + input_projection + self_condition; }
};

// One step over `sequences` rows of `seq_len` tokens (a reward pair is two
// sequences). `span_tokens`: the step's noised positions (diffusion stages;
// ignored otherwise). `self_condition_rate`: the share of its micro-batches
// that ran the self-conditioning pass.
StepFlops step_flops(const model::ModelConfig& model, config::RunStage stage, int64_t sequences, int64_t seq_len,
                     int64_t span_tokens, double self_condition_rate);

// The decoder layers' linear weights (what `body` multiplies by 6).
int64_t layer_matmul_parameters(const model::ModelConfig& model);

}  // namespace tess::train
