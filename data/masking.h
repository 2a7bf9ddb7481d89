#pragma once
// UL2-style span masking for stage 1 (docs/method.md section 5,
// docs/data.md). A span mask marks, per position, whether the
// token is noised and generated (1, "span") or given as clean context (0).
//
// One objective is drawn per BATCH from the configured mixture; every
// sequence of the batch then gets its own random mask of that objective:
//   prefix_lm   a clean prefix, the rest noised;
//   t5_short    ~15% of the tokens noised in spans of mean length 3,
//   t5_long     ~15% in spans of mean length 8,
//   extreme_3 / extreme_8 / extreme_48
//               ~50% in spans of mean length 3, 8, 48.
// Two variants (data.ul2.variant):
//   reference   the TESS 2 reference's `ul2` mode (sdlm/data/data_collator.py,
//               preprocessors.py): one of three groups with equal chance
//               (prefix-LM; t5 = t5_long, t5_short; aggressive t5 = extreme_8,
//               extreme_3, extreme_48), then a member uniformly, so prefix_lm
//               has 1/3, each t5 1/6, each extreme 1/9; prefix-LM keeps the
//               start token and a prefix of u in [1, floor((L-1)/2) - 1]
//               tokens clean; T5 counts are floored and a row's last span is
//               noised (clean and noised segments alternate, n each).
//   tess_v1     tess's first mixture: the six at equal chance, prefix
//               p in [1, L-2], counts rounded, the last segment clean or empty.
// Evaluation uses a fixed half-length prefix: the first floor(L/2) tokens
// clean, the rest noised (no random draw).
//
// Invariants of every mask: position 0 is clean (under shifted labels it has
// no prediction: the logits of position 0 are a zero row), at least one token
// is noised, and each row has exactly the number of noised tokens its
// objective prescribes for L (see num_noise_tokens()).
//
// Every random draw comes from the util::Rng handed in (the trainer's
// "span_mask" stream, saved in checkpoints), in a documented order, so a
// resumed run draws exactly the masks of the uninterrupted one.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config/choices.h"

namespace at {
class Tensor;
}
namespace tess::config {
class Config;
}
namespace tess::util {
class Rng;
}

namespace tess::data {

using config::Ul2Variant;  // data.ul2.variant

// One member of the UL2 mixture.
struct SpanObjective {
  std::string name;          // "prefix_lm", "t5_short", ...
  std::string group;         // the reference's objective group: "prefix", "t5" or "aggressive_t5"
  bool prefix = false;       // prefix-LM (clean prefix + noised rest) instead of random spans
  double mask_ratio = 0.0;   // random spans: fraction of noised tokens
  double mean_span = 0.0;    // random spans: mean span length
  double max_prefix_ratio = 1.0;  // prefix_lm: p <= max(1, min(L-2, floor(ratio * L)))
};

struct Ul2Options {
  std::vector<SpanObjective> objectives;
  // Relative chance of each objective (same order); empty = the variant's
  // mixture (reference: equal chance per group present, then per member;
  // tess_v1: equal chance).
  std::vector<double> weights;
  Ul2Variant variant = Ul2Variant::Reference;

  // The six objectives of the contract with their default parameters.
  static Ul2Options defaults(Ul2Variant variant = Ul2Variant::Reference);
  // The parameters of a known objective name; throws tess::Error naming the
  // known ones otherwise.
  static SpanObjective objective(const std::string& name);
  // data.ul2.objectives / data.ul2.weights / data.ul2.<name>.* (reads only
  // the keys of the chosen objectives).
  static Ul2Options from_config(const config::Config& config);
};

// Masks of one batch: row-major [batch, length], 1 = span (noised), 0 = clean.
struct SpanMaskBatch {
  std::string objective;     // name of the drawn objective ("eval_prefix" in eval mode)
  int objective_index = -1;  // index into Ul2Options::objectives; -1 in eval mode
  int64_t batch = 0;
  int64_t length = 0;
  std::vector<uint8_t> mask;

  uint8_t at(int64_t b, int64_t i) const { return mask[static_cast<size_t>(b * length + i)]; }
  const uint8_t* row(int64_t b) const { return mask.data() + b * length; }
  int64_t count(int64_t b) const;  // noised tokens of row b
};

// The mask as a torch bool tensor [batch, length] (a copy; CPU).
at::Tensor to_tensor(const SpanMaskBatch& masks);

class SpanMasker {
 public:
  // Throws tess::Error when the options are unusable (no objective, a ratio
  // outside (0, 1], a mean span < 1, weights of the wrong count or sum 0).
  explicit SpanMasker(Ul2Options options = Ul2Options::defaults());

  const Ul2Options& options() const { return options_; }

  // Training masks. Draw order (part of the resume contract): one draw picks
  // the objective (uniform_int over the objectives when the weights are
  // equal, else one uniform() against the cumulative weights); then for each
  // row b = 0..batch-1 the row's draws (prefix: one uniform_int; spans: see
  // random_spans()). length must be >= 3.
  SpanMaskBatch train_batch(int64_t batch, int64_t length, util::Rng& rng) const;
  // Same with a fixed objective (index into options().objectives).
  SpanMaskBatch batch_for(int objective_index, int64_t batch, int64_t length, util::Rng& rng) const;
  // Evaluation masks: a fixed clean prefix, the rest noised. The prefix is
  // the reference's 1 + floor((length - 1) / 2) for the reference variant and
  // floor(length / 2) for tess_v1 (they differ by one token at odd lengths).
  static SpanMaskBatch eval_batch(int64_t batch, int64_t length, Ul2Variant variant = Ul2Variant::Reference);

  // ---- single rows (out has `length` entries) ----
  // First `prefix` tokens clean, the rest noised; 1 <= prefix <= length - 1.
  static void prefix_mask(int64_t length, int64_t prefix, uint8_t* out);
  // T5-style random spans: N = num_noise_tokens() noised tokens split into
  // n = num_spans() spans of random lengths >= 1 (a uniformly random
  // composition of N into n parts); the L - N clean tokens split into n + 1
  // segments, the first and the middle ones >= 1 token long and the last
  // >= 0 (a random composition of L - N + 1 into n + 1 parts, minus one from
  // the last); clean and noised segments alternate, starting clean.
  // Draws: the n - 1 cut points of the noise composition, then the n cut
  // points of the clean composition (partial Fisher-Yates, uniform_int each).
  static void random_spans(int64_t length, double mask_ratio, double mean_span, util::Rng& rng,
                           uint8_t* out);
  // N = clamp(round(length * mask_ratio), 1, length - 1).
  static int64_t num_noise_tokens(int64_t length, double mask_ratio);
  // n = clamp(round(N / mean_span), 1, min(N, length - N)).
  static int64_t num_spans(int64_t length, double mask_ratio, double mean_span);

  // ---- the reference variant ----
  // N = clamp(floor(length * mask_ratio), 1, length - 1).
  static int64_t reference_noise_tokens(int64_t length, double mask_ratio);
  // n = clamp(floor(N / mean_span), 1, min(N, length - N)).
  static int64_t reference_num_spans(int64_t length, double mask_ratio, double mean_span);
  // n clean segments (each >= 1) and n noised ones (each >= 1) alternate,
  // starting clean, ending noised. Draws: the noised composition's cuts,
  // then the clean one's (as random_spans()).
  static void reference_random_spans(int64_t length, double mask_ratio, double mean_span, util::Rng& rng,
                                     uint8_t* out);
  // Clean tokens of a prefix-LM row: the start token plus u, u uniform in
  // [1, max(1, min(floor((L-1)/2), floor(max_prefix_ratio * L)) - 1)] (one draw).
  static int64_t reference_prefix(int64_t length, double max_prefix_ratio, util::Rng& rng);

 private:
  void draw_row(const SpanObjective& objective, int64_t length, util::Rng& rng, uint8_t* out) const;
  Ul2Options options_;
  std::vector<double> cumulative_;  // empty when the weights are equal
};

}  // namespace tess::data
