#pragma once
// The LM head and cross-entropy as one fused, chunked operation: the loss of
// both the AR stage and the diffusion stages.
//
// Unfused, a loss over N rows materialises the logits [N, V], the
// log-softmax LibTorch keeps for backward [N, V], and in backward two more
// [N, V] gradients (for medium: N = 1024 rows x 32k = 134 MB each). Here the
// logits exist one chunk of rows at a time, in one reused buffer: each chunk
// is turned into its loss and, when a gradient is wanted, into
// d loss / d logits = w (softmax - onehot) in place, which is immediately
// multiplied into the hidden rows' and the head weight's gradients. Backward
// then only scales those by the incoming gradient. Same FLOPs (2VH per row
// forward, 4VH backward, now all in the forward call); the vocabulary-space
// memory of the loss drops from ~4 N V floats to one chunk plus a [V, H]
// gradient.
//
// Precision: the matmuls run in the compute dtype (bf16 under autocast, as
// the unfused LM head would; otherwise the inputs' dtype), the softmax and
// the loss in fp32 (fp64 for fp64 inputs), and the head weight's gradient
// accumulates over chunks in fp32.
#include <cstdint>

namespace at {
class Tensor;
}

namespace tess::model {

// Rows of logits per chunk: 512 x 32k fp32 = 64 MB.
inline constexpr int64_t kLmLossChunkRows = 512;

// sum_r row_weight[r] * CE(hidden[r] @ weight^T, labels[r]): an fp32 (fp64)
// scalar with gradients for `hidden` [N, H] and `weight` [V, H] (whichever
// requires grad while grad mode is on). labels: int64 [N] in [0, V);
// row_weight: [N], 0 drops a row (it must still carry a valid label).
at::Tensor lm_head_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                                 const at::Tensor& row_weight, int64_t chunk_rows = kLmLossChunkRows);

}  // namespace tess::model
