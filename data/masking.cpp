#include "data/masking.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/rng.h"

namespace tess::data {

namespace {

const std::vector<SpanObjective>& known_objectives() {
  static const std::vector<SpanObjective> known = {
      {"prefix_lm", "prefix", true, 0.0, 0.0, 1.0},
      {"t5_short", "t5", false, 0.15, 3.0, 1.0},
      {"t5_long", "t5", false, 0.15, 8.0, 1.0},
      {"extreme_8", "aggressive_t5", false, 0.5, 8.0, 1.0},
      {"extreme_3", "aggressive_t5", false, 0.5, 3.0, 1.0},
      {"extreme_48", "aggressive_t5", false, 0.5, 48.0, 1.0},
  };
  return known;
}

// Lengths of a uniformly random composition of `items` into `parts` parts,
// each >= 1: parts - 1 distinct cut points among the items - 1 gaps.
void random_composition(int64_t items, int64_t parts, util::Rng& rng, std::vector<int64_t>& lengths) {
  lengths.assign(static_cast<size_t>(parts), 0);
  if (parts == 1) {
    lengths[0] = items;
    return;
  }
  std::vector<int64_t> gaps(static_cast<size_t>(items - 1));
  std::iota(gaps.begin(), gaps.end(), int64_t{1});
  const int64_t n_gaps = items - 1;
  for (int64_t i = 0; i < parts - 1; ++i) {
    int64_t j = rng.uniform_int(i, n_gaps - 1);
    std::swap(gaps[static_cast<size_t>(i)], gaps[static_cast<size_t>(j)]);
  }
  std::sort(gaps.begin(), gaps.begin() + (parts - 1));
  int64_t prev = 0;
  for (int64_t k = 0; k < parts - 1; ++k) {
    lengths[static_cast<size_t>(k)] = gaps[static_cast<size_t>(k)] - prev;
    prev = gaps[static_cast<size_t>(k)];
  }
  lengths[static_cast<size_t>(parts - 1)] = items - prev;
}

void check_length(int64_t length, int64_t minimum) {
  if (length < minimum)
    throw Error(fmt::format("span masking needs sequences of at least {} tokens, got {}", minimum, length));
}

}  // namespace

// ---- options -----------------------------------------------------------------

Ul2Options Ul2Options::defaults(Ul2Variant variant) {
  Ul2Options o;
  o.objectives = known_objectives();
  o.variant = variant;
  return o;
}

SpanObjective Ul2Options::objective(const std::string& name) {
  std::string names;
  for (const auto& k : known_objectives()) {
    if (k.name == name) return k;
    names += (names.empty() ? "" : ", ") + k.name;
  }
  throw Error(fmt::format("unknown UL2 objective '{}' (known: {})", name, names));
}

Ul2Options Ul2Options::from_config(const config::Config& config) {
  Ul2Options o;
  for (const auto& name : config.get_string_list("data.ul2.objectives")) {
    SpanObjective obj = objective(name);
    if (obj.prefix) {
      obj.max_prefix_ratio = config.get_float("data.ul2.prefix_lm.max_prefix_ratio");
    } else {
      obj.mask_ratio = config.get_float("data.ul2." + name + ".mask_ratio");
      obj.mean_span = config.get_float("data.ul2." + name + ".mean_span");
    }
    o.objectives.push_back(obj);
  }
  o.weights = config.get_float_list("data.ul2.weights");
  o.variant = config::ul2_variant_choices().parse(config.get_string("data.ul2.variant"));
  if (!o.weights.empty() && o.weights.size() != o.objectives.size())
    throw Error(fmt::format("data.ul2.weights has {} value(s) but data.ul2.objectives names {} objective(s)",
                            o.weights.size(), o.objectives.size()));
  return o;
}

int64_t SpanMaskBatch::count(int64_t b) const {
  const uint8_t* r = row(b);
  return std::count(r, r + length, uint8_t{1});
}

at::Tensor to_tensor(const SpanMaskBatch& masks) {
  auto t = torch::empty({masks.batch, masks.length}, torch::kUInt8);
  if (!masks.mask.empty()) std::memcpy(t.data_ptr<uint8_t>(), masks.mask.data(), masks.mask.size());
  return t.to(torch::kBool);
}

// ---- masker ----------------------------------------------------------------

SpanMasker::SpanMasker(Ul2Options options) : options_(std::move(options)) {
  if (options_.objectives.empty()) throw Error("UL2 span masking needs at least one objective (data.ul2.objectives)");
  for (const auto& o : options_.objectives) {
    if (o.prefix) {
      if (!(o.max_prefix_ratio > 0.0 && o.max_prefix_ratio <= 1.0))
        throw Error(fmt::format("UL2 objective '{}': max_prefix_ratio must be in (0, 1], got {}", o.name,
                                o.max_prefix_ratio));
      continue;
    }
    if (!(o.mask_ratio > 0.0 && o.mask_ratio <= 1.0))
      throw Error(fmt::format("UL2 objective '{}': mask_ratio must be in (0, 1], got {}", o.name, o.mask_ratio));
    if (!(o.mean_span >= 1.0))
      throw Error(fmt::format("UL2 objective '{}': mean_span must be >= 1, got {}", o.name, o.mean_span));
  }
  auto w = options_.weights;
  if (w.empty() && options_.variant == Ul2Variant::Reference) {
    // Equal chance per group present, then per member of the group.
    std::map<std::string, int> members;
    for (const auto& o : options_.objectives) ++members[o.group];
    for (const auto& o : options_.objectives)
      w.push_back(1.0 / static_cast<double>(members.size()) / static_cast<double>(members[o.group]));
  }
  if (!w.empty()) {
    if (w.size() != options_.objectives.size())
      throw Error(fmt::format("UL2 weights: {} value(s) for {} objective(s)", w.size(), options_.objectives.size()));
    double total = 0.0;
    for (double x : w) {
      if (!(x >= 0.0) || !std::isfinite(x)) throw Error(fmt::format("UL2 weights must be finite and >= 0, got {}", x));
      total += x;
    }
    if (!(total > 0.0)) throw Error("UL2 weights sum to 0");
    bool equal = std::all_of(w.begin(), w.end(), [&](double x) { return x == w[0]; });
    if (!equal) {
      double acc = 0.0;
      for (double x : w) {
        acc += x / total;
        cumulative_.push_back(acc);
      }
      cumulative_.back() = 1.0;
    }
  }
}

namespace {

// N and n of a T5 row; the variants differ only in how they make them whole.
using ToWhole = double (*)(double);
const ToWhole kRound = [](double x) { return std::round(x); };
const ToWhole kFloor = [](double x) { return std::floor(x); };

int64_t noise_count(int64_t length, double mask_ratio, ToWhole whole) {
  auto n = static_cast<int64_t>(whole(static_cast<double>(length) * mask_ratio));
  return std::clamp<int64_t>(n, 1, length - 1);
}

int64_t span_count(int64_t length, double mask_ratio, double mean_span, ToWhole whole) {
  int64_t noise = noise_count(length, mask_ratio, whole);
  auto n = static_cast<int64_t>(whole(static_cast<double>(noise) / mean_span));
  return std::clamp<int64_t>(n, 1, std::min(noise, length - noise));
}

}  // namespace

int64_t SpanMasker::num_noise_tokens(int64_t length, double mask_ratio) {
  return noise_count(length, mask_ratio, kRound);
}

int64_t SpanMasker::num_spans(int64_t length, double mask_ratio, double mean_span) {
  return span_count(length, mask_ratio, mean_span, kRound);
}

void SpanMasker::prefix_mask(int64_t length, int64_t prefix, uint8_t* out) {
  if (prefix < 1 || prefix > length - 1)
    throw Error(fmt::format("prefix mask: prefix {} outside [1, {}]", prefix, length - 1));
  std::fill(out, out + prefix, uint8_t{0});
  std::fill(out + prefix, out + length, uint8_t{1});
}

void SpanMasker::random_spans(int64_t length, double mask_ratio, double mean_span, util::Rng& rng,
                              uint8_t* out) {
  check_length(length, 2);
  const int64_t noise = num_noise_tokens(length, mask_ratio);
  const int64_t clean = length - noise;
  const int64_t spans = num_spans(length, mask_ratio, mean_span);
  std::vector<int64_t> noise_lengths, clean_lengths;
  random_composition(noise, spans, rng, noise_lengths);
  random_composition(clean + 1, spans + 1, rng, clean_lengths);
  clean_lengths.back() -= 1;  // the last clean segment may be empty
  int64_t pos = 0;
  for (int64_t k = 0; k <= spans; ++k) {
    int64_t c = clean_lengths[static_cast<size_t>(k)];
    std::fill(out + pos, out + pos + c, uint8_t{0});
    pos += c;
    if (k == spans) break;
    int64_t s = noise_lengths[static_cast<size_t>(k)];
    std::fill(out + pos, out + pos + s, uint8_t{1});
    pos += s;
  }
}

int64_t SpanMasker::reference_noise_tokens(int64_t length, double mask_ratio) {
  return noise_count(length, mask_ratio, kFloor);
}

int64_t SpanMasker::reference_num_spans(int64_t length, double mask_ratio, double mean_span) {
  return span_count(length, mask_ratio, mean_span, kFloor);
}

void SpanMasker::reference_random_spans(int64_t length, double mask_ratio, double mean_span, util::Rng& rng,
                                        uint8_t* out) {
  check_length(length, 2);
  const int64_t noise = reference_noise_tokens(length, mask_ratio);
  const int64_t spans = reference_num_spans(length, mask_ratio, mean_span);
  std::vector<int64_t> noise_lengths, clean_lengths;
  random_composition(noise, spans, rng, noise_lengths);
  random_composition(length - noise, spans, rng, clean_lengths);
  int64_t pos = 0;
  for (int64_t k = 0; k < spans; ++k) {
    int64_t c = clean_lengths[static_cast<size_t>(k)], s = noise_lengths[static_cast<size_t>(k)];
    std::fill(out + pos, out + pos + c, uint8_t{0});
    std::fill(out + pos + c, out + pos + c + s, uint8_t{1});
    pos += c + s;
  }
}

int64_t SpanMasker::reference_prefix(int64_t length, double max_prefix_ratio, util::Rng& rng) {
  check_length(length, 3);
  int64_t high = std::min<int64_t>((length - 1) / 2,
                                   static_cast<int64_t>(std::floor(max_prefix_ratio * static_cast<double>(length))));
  return 1 + rng.uniform_int(1, std::max<int64_t>(1, high - 1));
}

void SpanMasker::draw_row(const SpanObjective& objective, int64_t length, util::Rng& rng, uint8_t* out) const {
  if (options_.variant == Ul2Variant::Reference) {
    if (objective.prefix)
      prefix_mask(length, reference_prefix(length, objective.max_prefix_ratio, rng), out);
    else
      reference_random_spans(length, objective.mask_ratio, objective.mean_span, rng, out);
    return;
  }
  if (objective.prefix) {
    int64_t max_prefix = std::clamp<int64_t>(
        static_cast<int64_t>(std::floor(objective.max_prefix_ratio * static_cast<double>(length))), 1, length - 2);
    prefix_mask(length, rng.uniform_int(1, max_prefix), out);
  } else {
    random_spans(length, objective.mask_ratio, objective.mean_span, rng, out);
  }
}

SpanMaskBatch SpanMasker::batch_for(int objective_index, int64_t batch, int64_t length, util::Rng& rng) const {
  check_length(length, 3);
  if (objective_index < 0 || objective_index >= static_cast<int>(options_.objectives.size()))
    throw Error(fmt::format("UL2 objective index {} out of range", objective_index));
  if (batch < 0) throw Error(fmt::format("span masking: negative batch size {}", batch));
  const auto& objective = options_.objectives[static_cast<size_t>(objective_index)];
  SpanMaskBatch out;
  out.objective = objective.name;
  out.objective_index = objective_index;
  out.batch = batch;
  out.length = length;
  out.mask.resize(static_cast<size_t>(batch * length));
  for (int64_t b = 0; b < batch; ++b) draw_row(objective, length, rng, out.mask.data() + b * length);
  return out;
}

SpanMaskBatch SpanMasker::train_batch(int64_t batch, int64_t length, util::Rng& rng) const {
  check_length(length, 3);
  int index = 0;
  if (cumulative_.empty()) {
    index = static_cast<int>(rng.uniform_int(0, static_cast<int64_t>(options_.objectives.size()) - 1));
  } else {
    double u = rng.uniform();
    index = static_cast<int>(std::upper_bound(cumulative_.begin(), cumulative_.end(), u) - cumulative_.begin());
    index = std::min(index, static_cast<int>(cumulative_.size()) - 1);
  }
  return batch_for(index, batch, length, rng);
}

SpanMaskBatch SpanMasker::eval_batch(int64_t batch, int64_t length, Ul2Variant variant) {
  check_length(length, 2);
  SpanMaskBatch out;
  out.objective = "eval_prefix";
  out.batch = batch;
  out.length = length;
  out.mask.resize(static_cast<size_t>(batch * length));
  int64_t prefix = variant == Ul2Variant::Reference ? 1 + (length - 1) / 2 : length / 2;
  for (int64_t b = 0; b < batch; ++b) prefix_mask(length, prefix, out.mask.data() + b * length);
  return out;
}

}  // namespace tess::data
