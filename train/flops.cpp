#include "train/flops.h"

#include <algorithm>

namespace tess::train {

int64_t layer_matmul_parameters(const model::ModelConfig& c) {
  int64_t h = c.hidden_size, hd = c.resolved_head_dim();
  int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  int64_t attn = h * q + 2 * h * kv + q * h;
  int64_t mlp = 3 * h * c.intermediate_size;
  return c.num_hidden_layers * (attn + mlp);
}

StepFlops step_flops(const model::ModelConfig& c, config::RunStage stage, int64_t sequences, int64_t seq_len,
                     int64_t span_tokens, double self_condition_rate) {
  const double weights = static_cast<double>(layer_matmul_parameters(c));
  const double vh = static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);
  const double width = static_cast<double>(c.num_attention_heads) * static_cast<double>(c.resolved_head_dim());
  const double layers = static_cast<double>(c.num_hidden_layers);
  StepFlops f;
  if (!config::is_diffusion(stage)) {
    // ar reads L - 1 tokens per row and predicts each next one; a reward
    // model reads all L and has no LM head (its score is one dot product).
    const bool ar = stage == config::RunStage::Ar;
    const int64_t read = ar ? seq_len - 1 : seq_len;
    const int64_t attended = c.sliding_window > 0 ? std::min(read, c.sliding_window) : read;
    const double positions = static_cast<double>(sequences) * static_cast<double>(read);
    f.body = 6 * weights * positions;
    f.attention = 12.0 * layers * width * static_cast<double>(attended) * positions;
    f.lm_head = ar ? 6 * vh * positions : 0;
    return f;
  }
  const double positions = static_cast<double>(sequences) * static_cast<double>(seq_len);
  const double span = static_cast<double>(span_tokens);
  f.body = 6 * weights * positions;
  f.attention = 12.0 * layers * width * static_cast<double>(seq_len) * positions;  // bidirectional: all of L
  f.lm_head = 6 * vh * span;
  f.input_projection = 2 * vh * span;
  double forward = f.body / 3 + f.attention / 3 + f.lm_head / 3 + f.input_projection;
  f.self_condition = self_condition_rate * forward;
  return f;
}

}  // namespace tess::train
