#include "train/plan.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/diffusion/diffusion_lm.h"
#include "core/model/lm_head_loss.h"
#include "core/util/error.h"
#include "data/tokenizer.h"
#include "train/flops.h"
#include "train/options.h"

namespace tess::train {
namespace fs = std::filesystem;
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// DiffusionLMImpl::kRowChunk: rows of vocabulary-space input work per chunk
// (core/diffusion/diffusion_lm.h; that header needs torch, the value is fixed).
constexpr int64_t kRowChunk = 512;


std::string count(int64_t n) {  // 7241732096 -> "7,241,732,096"
  auto digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

double gib(double bytes) { return bytes / kGiB; }

// One trained tensor, in the trainer's parameter order (named_parameters()).
struct Param {
  std::string name;
  int64_t numel = 0;
  bool linear = false;  // a matmul weight (autocast casts it to bf16 and caches the copy)
  bool in_layer = false;
};

std::vector<Param> parameter_list(const PlanInputs& in) {
  const auto& m = in.model;
  int64_t h = m.hidden_size, v = m.vocab_size, hd = m.resolved_head_dim();
  int64_t hq = m.num_attention_heads * hd, hkv = m.num_key_value_heads * hd, i = m.intermediate_size;
  bool reward = in.stage == RunStage::Reward;
  std::vector<Param> out;
  // An untied embedding is only gathered from; tied, it is also the LM head's matmul weight.
  out.push_back({"model.embed_tokens.weight", v * h, m.tie_word_embeddings && !reward, false});
  for (int64_t l = 0; l < m.num_hidden_layers; ++l) {
    auto p = fmt::format("model.layers.{}.", l);
    out.push_back({p + "self_attn.q_proj.weight", hq * h, true, true});
    if (m.qkv_bias()) out.push_back({p + "self_attn.q_proj.bias", hq, false, true});  // Qwen2
    out.push_back({p + "self_attn.k_proj.weight", hkv * h, true, true});
    if (m.qkv_bias()) out.push_back({p + "self_attn.k_proj.bias", hkv, false, true});
    out.push_back({p + "self_attn.v_proj.weight", hkv * h, true, true});
    if (m.qkv_bias()) out.push_back({p + "self_attn.v_proj.bias", hkv, false, true});
    out.push_back({p + "self_attn.o_proj.weight", h * hq, true, true});
    out.push_back({p + "mlp.gate_proj.weight", i * h, true, true});
    out.push_back({p + "mlp.up_proj.weight", i * h, true, true});
    out.push_back({p + "mlp.down_proj.weight", h * i, true, true});
    out.push_back({p + "input_layernorm.weight", h, false, true});
    out.push_back({p + "post_attention_layernorm.weight", h, false, true});
  }
  out.push_back({"model.norm.weight", h, false, false});
  if (reward) {
    out.push_back({"score.weight", h, true, false});  // [1, H]; the LM head is not part of a classifier
  } else {
    if (!m.tie_word_embeddings) out.push_back({"lm_head.weight", v * h, true, false});
    if (config::is_diffusion(in.stage)) out.push_back({"timestep_embed.weight", h, true, false});  // Linear(1 -> H)
  }
  return out;
}

// The trainer's ZeRO-1 owner assignment (train/weight_update.cpp): each
// tensor goes to the rank with the fewest elements so far.
std::vector<int64_t> owner_loads(const std::vector<Param>& params, int64_t ranks, std::vector<int64_t>* owners) {
  std::vector<int64_t> load(static_cast<size_t>(std::max<int64_t>(ranks, 1)), 0);
  for (const auto& p : params) {
    auto r = std::min_element(load.begin(), load.end()) - load.begin();
    load[static_cast<size_t>(r)] += p.numel;
    if (owners) owners->push_back(r);
  }
  return load;
}

// The largest all-reduce bucket of Trainer::all_reduce_gradients: whole
// gradients packed in order while they fit; a gradient larger than the
// bucket travels alone.
int64_t largest_bucket_bytes(const std::vector<Param>& params, double bucket_mb, int64_t elem_bytes) {
  auto limit = static_cast<int64_t>(bucket_mb * 1024 * 1024);
  int64_t largest = 0;
  size_t start = 0;
  while (start < params.size()) {
    size_t end = start;
    int64_t bytes = 0;
    while (end < params.size() && (end == start || bytes + params[end].numel * elem_bytes <= limit))
      bytes += params[end++].numel * elem_bytes;
    largest = std::max(largest, bytes);
    start = end;
  }
  return largest;
}

struct Bytes {
  int w, r, a, logits;  // weights, residual stream, matmul activations, logits
};

Bytes bytes_of(Precision p) {
  switch (p) {
    case Precision::Fp32: return {4, 4, 4, 4};
    case Precision::Bf16Autocast: return {4, 4, 2, 2};
    case Precision::Bf16Master: return {2, 2, 2, 2};
  }
  return {4, 4, 4, 4};
}

}  // namespace

std::vector<SavedTensor> layer_saved_tensors(const model::ModelConfig& m, Precision p, bool autocast) {
  int64_t h = m.hidden_size, hd = m.resolved_head_dim(), i = m.intermediate_size;
  int64_t hq = m.num_attention_heads * hd, hkv = m.num_key_value_heads * hd;
  bool cast = p == Precision::Bf16Autocast && autocast;
  // Without autocast an autocast run's layer is plain fp32 (the checkpoint recomputation).
  int64_t r = p == Precision::Bf16Master ? 2 : 4;
  int64_t a = p == Precision::Fp32 || (p == Precision::Bf16Autocast && !autocast) ? 4 : 2;
  std::vector<SavedTensor> out;
  auto norm = [&](const std::string& which) {
    // RMSNorm (decoder.cpp): h = x in fp32; h * rsqrt(mean(h^2) + eps); cast back; * weight.
    out.push_back({which + " norm input in fp32 (the layer input itself unless weights are bf16)", 4 * h});
    out.push_back({which + " norm 1/rms (fp32)", 4});
    out.push_back({which + " norm x/rms (saved by the weight product)", r * h});
    // The projections keep their input: the norm output itself, or under
    // autocast one bf16 cast per projection (the fp32 output is then freed).
    if (!cast) out.push_back({which + " norm output (projection input)", r * h});
  };
  norm("attention");
  if (cast) out.push_back({"q/k/v projection inputs cast to bf16 (3 copies)", 3 * 2 * h});
  out.push_back({"q after RoPE", a * hq});
  out.push_back({"k after RoPE (kv heads)", a * hkv});
  out.push_back({"v (kv heads)", a * hkv});
  out.push_back({"attention output = o_proj input (same storage)", a * hq});
  out.push_back({"attention log-sum-exp (fp32, per head)", 4 * m.num_attention_heads});
  norm("MLP");
  if (cast) out.push_back({"gate/up projection inputs cast to bf16 (2 copies)", 2 * 2 * h});
  out.push_back({"gate projection output (SiLU input)", a * i});
  out.push_back({"SiLU output", a * i});
  out.push_back({"up projection output", a * i});
  out.push_back({"SiLU x up (down_proj input)", a * i});
  return out;
}

const PlanTerm* MemoryPlan::term(const std::string& key) const {
  for (const auto& t : terms)
    if (t.key == key) return &t;
  return nullptr;
}

MemoryPlan estimate(const PlanInputs& in) {
  const auto& m = in.model;
  m.validate("plan model");
  if (in.world_size < 1) throw Error(fmt::format("world size must be at least 1, got {}", in.world_size));
  if (in.batch_size < 1 || in.seq_len < 2 || in.grad_accum < 1)
    throw Error("plan: batch size, grad accumulation must be >= 1 and the sequence length >= 2");
  if (!(in.span_fraction > 0 && in.span_fraction <= 1))
    throw Error(fmt::format("plan: span fraction must be in (0, 1], got {}", in.span_fraction));

  MemoryPlan plan;
  plan.in = in;
  const bool diffusion = config::is_diffusion(in.stage), reward = in.stage == RunStage::Reward, ar = in.stage == RunStage::Ar;
  const bool autocast = in.precision == Precision::Bf16Autocast, master = in.precision == Precision::Bf16Master;
  const bool ckpt = in.activation_checkpointing;
  const auto b = bytes_of(in.precision);
  const int64_t h = m.hidden_size, v = m.vocab_size, layers = m.num_hidden_layers, inter = m.intermediate_size;
  const int64_t hq = m.num_attention_heads * m.resolved_head_dim();
  const int64_t w = in.world_size;

  // ---- parameters and their state
  auto params = parameter_list(in);
  int64_t total = 0, linear = 0, layer_linear = 0, largest = 0, largest_layer_matrix = 0;
  for (const auto& p : params) {
    total += p.numel;
    largest = std::max(largest, p.numel);
    if (p.linear) linear += p.numel;
    if (p.linear && p.in_layer) {
      layer_linear += p.numel;
      largest_layer_matrix = std::max(largest_layer_matrix, p.numel);
    }
  }
  plan.parameters = total;
  std::vector<int64_t> owners;
  auto loads = owner_loads(params, in.zero ? w : 1, &owners);
  plan.owned_parameters = *std::max_element(loads.begin(), loads.end());

  auto add = [&](std::string key, std::string label, std::string phase, double value, std::string formula) {
    plan.terms.push_back({std::move(key), std::move(label), std::move(phase), value, std::move(formula)});
    return value;
  };
  const char* wname = b.w == 4 ? "fp32" : "bf16";
  double persistent = 0;
  persistent += add("weights", fmt::format("weights ({})", wname), "persistent", double(total) * b.w,
                    fmt::format("{} params x {} B", count(total), b.w));
  persistent += add("gradients", fmt::format("gradients ({})", wname), "persistent", double(total) * b.w,
                    fmt::format("{} params x {} B", count(total), b.w));
  if (master) {
    persistent += add("master_weights", "fp32 master weights (every rank)", "persistent", double(total) * 4,
                      fmt::format("{} params x 4 B; not sharded by ZeRO-1 in tess", count(total)));
    persistent += add("master_gradients", "fp32 master gradients", "persistent", double(total) * 4,
                      fmt::format("{} params x 4 B (bf16 gradients moved to fp32 for reduce/clip/step)", count(total)));
  }
  std::string adam_formula =
      in.zero && w > 1
          ? fmt::format("2 x 4 B x {} params owned by the fullest of {} ranks (whole tensors; P/{} = {})",
                        count(plan.owned_parameters), w, w, count(total / w))
          : fmt::format("2 x 4 B x {} params{}", count(total), in.zero ? " (ZeRO-1 with 1 rank: nothing to shard)" : "");
  persistent += add("adamw_states", "AdamW moments (fp32 exp_avg, exp_avg_sq)", "persistent",
                    double(plan.owned_parameters) * 8, adam_formula);
  plan.persistent = persistent;

  // ---- one micro-batch through the model
  const int64_t seqs = reward ? 2 * in.batch_size : in.batch_size;
  const int64_t len = ar ? in.seq_len - 1 : in.seq_len;  // the AR loss feeds L - 1 positions
  const int64_t tokens = seqs * len;
  int64_t rows = 0;  // rows of [rows, V] logits
  if (diffusion) rows = std::max<int64_t>(1, std::llround(in.span_fraction * double(tokens)));
  if (ar) rows = tokens;
  const std::string tok = fmt::format("{} tokens ({} x {})", count(tokens), seqs, len);

  auto sum_bytes = [](const std::vector<SavedTensor>& list) {
    int64_t s = 0;
    for (const auto& t : list) s += t.bytes_per_token;
    return s;
  };
  int64_t per_layer = sum_bytes(layer_saved_tensors(m, in.precision, autocast));
  // The checkpoint recomputes a layer under the forward's autocast state
  // (model/decoder.cpp): bf16 saved tensors, plus that layer's cached bf16
  // weight copies for as long as the recomputation runs.
  int64_t per_layer_recompute = per_layer;
  const double recompute_weight_copies = autocast ? double(layer_linear) / double(layers) * 2 : 0;

  double stored;
  if (ckpt) {
    stored = add("activations", "activations: checkpointed layer inputs", "forward",
                 double(layers) * double(tokens) * double(h) * b.r,
                 fmt::format("{} layers x {} x H {} x {} B", layers, tok, h, b.r));
  } else {
    stored = add("activations", "activations: tensors saved by every layer", "forward",
                 double(layers) * double(tokens) * double(per_layer),
                 fmt::format("{} layers x {} x {} B/token/layer", layers, tok, count(per_layer)));
  }
  double recompute = 0;
  if (ckpt)
    recompute = add("recomputed_layer", "recomputed layer (checkpointing backward)", "backward",
                    double(tokens) * double(per_layer_recompute) + recompute_weight_copies,
                    fmt::format("{} x {} B/token{}", tok, count(per_layer_recompute),
                                autocast ? " + the layer's bf16 weight copies (recomputed under autocast)" : ""));
  // Gradients in flight through one layer (its MLP: dL/d of gate, up and the
  // product, and of the residual and the norm output) plus the temporary
  // weight gradient that is added into the existing .grad.
  int64_t ab = ckpt && autocast ? 4 : b.a;  // an autocast run's recomputation is fp32
  double working = add("backward_working_set", "backward working set of one layer", "backward",
                       double(tokens) * double(3 * inter * ab + 3 * h * b.r) + double(largest_layer_matrix) * b.w,
                       fmt::format("{} x (3 x I {} x {} B + 3 x H x {} B) + largest layer matrix {} x {} B", tok,
                                   inter, ab, b.r, count(largest_layer_matrix), b.w));
  // Outside the layers: the final norm's saved tensors and, for reward, the
  // score head's input (one row per sequence; under autocast its bf16 cast).
  // The fused LM-head loss of ar and diffusion keeps none of its input.
  int64_t head_rows = reward ? seqs : 0;
  int64_t head_bytes = autocast ? 2 : b.r;
  double outside = add("final_norm_head_input", reward ? "final norm + score head input" : "final norm", "forward",
                       double(tokens) * double(4 * h + 4 + h * b.r) + double(head_rows) * double(h) * head_bytes,
                       reward ? fmt::format("{} x (4H + 4 + H x {} B) + {} sequences x H x {} B", tok, b.r,
                                            count(head_rows), head_bytes)
                              : fmt::format("{} x (4H + 4 + H x {} B)", tok, b.r));

  // Autocast caches the bf16 cast of each weight used with grad enabled, and
  // the graph keeps it for backward; checkpointed layers run without grad in
  // the forward, so only the weights outside them are cast and kept.
  double cache = 0;
  if (autocast) {
    int64_t cast = ckpt ? linear - layer_linear : linear;
    // The fused loss casts the LM head itself; autocast caches the head's copy
    // only when the self-conditioning pass ran the unfused head (span_logits).
    const bool head_cached = diffusion && in.self_condition;
    if (!head_cached && !reward) cast -= v * h;
    cache = add("autocast_weight_copies", "autocast bf16 copies of matmul weights", "forward", double(cast) * 2,
                ckpt ? fmt::format("{} matmul params outside the checkpointed layers x 2 B", count(cast))
                     : fmt::format("{} matmul params x 2 B (kept by the graph until their backward)", count(cast)));
  }

  double vocab_fwd = 0, vocab_bwd = 0, prev = 0, input_proj = 0;
  if (rows > 0) {
    // The fused LM-head loss (model/lm_head_loss.h): one chunk of logits in
    // fp32 (plus its bf16 matmul output and bf16 gradient when the matmuls
    // run in bf16), the head weight's gradient accumulated in fp32 (plus the
    // bf16 product of each chunk), the hidden rows' gradient and, under
    // autocast, bf16 casts of the weight and of the rows. The two gradients
    // stay until the head's backward, which scales them (a new fp32 weight
    // gradient, cast to the weight's dtype when that is bf16).
    const bool bf16_head = autocast || master;
    const int cb = bf16_head ? 2 : 4;
    const int64_t chunk = std::min(rows, model::kLmLossChunkRows);
    const double vh = double(v) * double(h), nh = double(rows) * double(h);
    const double kept = vh * 4 + nh * cb;
    // Diffusion gathers its span rows into a new tensor (ar's rows are the final norm's output).
    const double gathered = diffusion ? nh * b.r : 0;
    vocab_fwd = add("lm_head_loss", "fused LM head + cross-entropy (chunked)", "forward",
                    kept + double(chunk) * double(v) * (bf16_head ? 8 : 4) + (bf16_head ? vh * 2 : 0) +
                        (autocast ? vh * 2 + nh * 2 : 0) + gathered,
                    fmt::format("{} chunk rows x V x {} B + V x H x {} B{} + {} rows x H x {} B{}{}", chunk,
                                bf16_head ? "(4 + 2 + 2)" : "4", bf16_head ? "(4 + 2)" : "4",
                                autocast ? " + bf16 weight cast V x H x 2 B" : "", count(rows), cb,
                                autocast ? " + bf16 rows x H x 2 B" : "",
                                diffusion ? fmt::format(" + gathered span rows x H x {} B", b.r) : ""));
    vocab_bwd = add("lm_head_loss_backward", "LM head gradients scaled in backward", "backward",
                    kept + vh * (4 + (b.w == 2 ? 2 : 0)) + nh * cb,
                    fmt::format("kept V x H x 4 B + {} rows x H x {} B, scaled copies of both{}", count(rows), cb,
                                b.w == 2 ? " (weight's cast to bf16 too)" : ""));
    // Self-conditioning: the no-grad pass keeps only its predicting hidden
    // rows; their logits are made chunk by chunk inside the input projection.
    const bool sc = diffusion && in.self_condition;
    if (sc) {
      prev = add("self_condition_states", "self-conditioning states (no-grad pass)", "forward", nh * b.r,
                 fmt::format("{} rows x H x {} B, alive through the graded forward", count(rows), b.r));
    }
    if (diffusion) {
      int64_t chunk = std::min(rows, kRowChunk);
      double e_cast = autocast ? double(v) * h * 2 : 0;
      double prev_logits = sc ? double(chunk) * double(v) * (b.logits + (b.logits == 2 ? 4 : 0)) : 0;
      input_proj = add("input_projection", "input projection softmax(x_t) @ E (chunked)", "forward_start",
                       4.0 * double(chunk) * double(v) * 4 + (master ? 2.0 * double(chunk) * double(v) : 0) + e_cast +
                           prev_logits,
                       fmt::format("4 fp32 buffers x {} rows x V{}{}{}", chunk, master ? " + bf16 copy" : "",
                                   autocast ? " + bf16 cast of E (V x H x 2 B)" : "",
                                   sc ? fmt::format(" + the chunk's previous logits x V x {} B",
                                                    b.logits == 2 ? "(2 + 4 fp32)" : "4")
                                      : ""));
    }
  }

  // ---- optimizer step
  double step = 0;
  if (w > 1) {
    step = std::max(step, add("allreduce_bucket", "gradient all-reduce bucket (fp32)", "step",
                              double(largest_bucket_bytes(params, in.bucket_mb, 4)),
                              fmt::format("dist.bucket_mb {} MiB, or the largest gradient when bigger ({} x 4 B)",
                                          in.bucket_mb, count(largest))));
  }
  if (in.zero && w > 1) {
    // Each owner's updated tensors travel as one flat buffer (Dist::broadcast).
    std::vector<int64_t> group_tensors(static_cast<size_t>(w), 0);
    for (auto o : owners) ++group_tensors[static_cast<size_t>(o)];
    double flat = 0;
    for (int64_t r = 0; r < w; ++r)
      if (group_tensors[static_cast<size_t>(r)] > 1) flat = std::max(flat, double(loads[static_cast<size_t>(r)]) * 4);
    step = std::max(step, add("zero_broadcast", "ZeRO-1 parameter broadcast buffer", "step", flat,
                              "largest rank share x 4 B (fp32 weights or masters)"));
  }

  plan.forward_peak = cache + stored + outside + vocab_fwd + prev;
  plan.backward_peak = cache + stored + outside + std::max(vocab_bwd, recompute + working);
  plan.step_peak = step;
  plan.forward_start_peak = input_proj > 0 ? input_proj + prev : 0;
  plan.total = persistent + std::max({plan.forward_peak, plan.backward_peak, plan.step_peak, plan.forward_start_peak});

  // ---- compute per token: train/flops.h's count of one sequence, over its L positions
  {
    double p = diffusion && in.self_condition ? in.self_condition_prob : 0.0;
    auto span = static_cast<int64_t>(std::llround(in.span_fraction * double(len)));
    auto f = step_flops(m, in.stage, 1, len, span, p);
    auto per = [&](double v) { return v / double(len); };
    auto flop = [&](std::string key, std::string label, double value, std::string formula) {
      plan.flops.push_back({std::move(key), std::move(label), "flops", value, std::move(formula)});
      plan.flops_per_token += value;
    };
    const double weights = double(layer_matmul_parameters(m));
    flop("body", "decoder layers, forward + backward", per(f.body),
         fmt::format("6 x layer matmul weights {}{}", count(static_cast<int64_t>(weights)), ar ? " x (L-1)/L" : ""));
    flop("attention", "attention scores and values", per(f.attention),
         fmt::format("12 x layers {} x H {} x attended length", layers, hq));
    if (f.lm_head > 0)
      flop("lm_head", "LM head, forward + backward", per(f.lm_head),
           diffusion ? fmt::format("6 x V {} x H {} x span fraction {}", v, h, in.span_fraction)
                     : fmt::format("6 x V {} x H {} x (L-1)/L", v, h));
    if (diffusion) {
      flop("input_projection", "input projection softmax(x_t) @ E", per(f.input_projection),
           fmt::format("2 x V {} x H {} x span fraction {}", v, h, in.span_fraction));
      if (p > 0)
        flop("self_condition", "self-conditioning forward (average)", per(f.self_condition),
             fmt::format("p {} x (the forward of the terms above)", p));
    }
  }
  plan.tokens_per_step = in.batch_size * in.grad_accum * w * (reward ? 2 * in.seq_len : in.seq_len);
  return plan;
}

ThroughputPlan throughput(const MemoryPlan& plan, double mfu, double peak_tflops) {
  ThroughputPlan t;
  if (!(peak_tflops > 0) || !(mfu > 0) || mfu > 1)
    throw Error(fmt::format("throughput needs 0 < mfu <= 1 and peak TFLOP/s > 0 (got mfu {}, peak {})", mfu, peak_tflops));
  t.tokens_per_s_per_rank = mfu * peak_tflops * 1e12 / plan.flops_per_token;
  t.step_seconds = double(plan.tokens_per_step) / (t.tokens_per_s_per_rank * double(plan.in.world_size));
  t.total_seconds = double(plan.in.max_steps) * t.step_seconds;
  return t;
}

// ---------------------------------------------------------------------------
PlanInputs plan_inputs(const config::Config& cfg, const PlanOptions& options) {
  PlanInputs in;
  // The checks the trainer makes are made here by the same code.
  auto train = TrainOptions::from_config(cfg);
  in.stage = train.stage;
  in.precision = train.precision;
  const auto& dtype = cfg.get_string("model.dtype");
  if (options.world_size < 1) throw Error(fmt::format("--world-size must be at least 1, got {}", options.world_size));
  in.world_size = options.world_size;
  in.zero = train.zero;
  in.bucket_mb = train.bucket_mb;
  in.activation_checkpointing = cfg.get_bool("model.activation_checkpointing");
  in.batch_size = train.batch_size;
  in.seq_len = cfg.get_int("data.seq_len");
  in.grad_accum = train.grad_accum;
  in.max_steps = train.max_steps;
  if (config::is_diffusion(in.stage)) {
    in.self_condition_prob = cfg.get_float("diffusion.self_condition_prob");
    in.self_condition =
        diffusion::parse_self_condition(cfg.get_string("diffusion.self_condition")) != diffusion::SelfCondition::None &&
        in.self_condition_prob > 0;
    if (!in.self_condition) in.self_condition_prob = 0;
  } else {
    in.self_condition = false;
    in.self_condition_prob = 0;
  }
  if (in.max_steps == 0)
    in.assumptions.push_back("train.max_steps is 0 (the run is sized by train.epochs): the step count depends on the "
                             "dataset, so no total wall time is given");

  // The model shape, as StageBase::build_decoder (train/stages/stage_base.cpp) gets it.
  const auto& path = cfg.get_string("model.path");
  bool from_checkpoint = false;
  if (!options.model_preset.empty()) {
    in.model = model::ModelConfig::preset(options.model_preset);
    in.model_source = "preset " + options.model_preset + (path.empty() ? "" : " (instead of model.path " + path + ")");
    from_checkpoint = true;
  } else if (!path.empty()) {
    if (!fs::exists(fs::path(path) / "config.json"))
      throw Error(fmt::format("model.path '{}' (set at {}) has no config.json here; pass --model-preset NAME (tiny, "
                              "tinyllama-1.1b, mistral-7b-v0.1, llama-3-8b, llama-3.2-1b, qwen2.5-0.5b) to plan "
                              "with a known shape",
                              path, cfg.origin("model.path").where));
    in.model = model::ModelConfig::from_json_file(fs::path(path) / "config.json");
    in.model_source = (fs::path(path) / "config.json").string();
    from_checkpoint = true;
  } else {
    in.model = model::ModelConfig::from_run_config(cfg);
    in.model_source = "model.* keys (fresh model)";
  }
  in.model.torch_dtype = dtype;  // the trainer loads with model.dtype
  in.model.attention = in.stage == RunStage::Ar || in.stage == RunStage::Reward ? model::Attention::Causal
                                                                : model::Attention::Bidirectional;

  // The vocabulary: the tokenizer's, grown by [PAD] when it has none.
  bool add_pad = cfg.get_bool("model.add_pad_token");
  std::string tok_path = cfg.get_string("data.tokenizer");
  if (tok_path.empty() && options.model_preset.empty()) tok_path = path;
  std::unique_ptr<data::Tokenizer> tok;
  if (!tok_path.empty() && fs::exists(tok_path)) tok = data::load_tokenizer(tok_path);
  int64_t v_model = in.model.vocab_size;
  if (tok) {
    int64_t v_tok = tok->vocab_size();
    if (tok->pad_id() < 0) {
      if (!add_pad)
        throw Error(fmt::format("the tokenizer {} has no PAD token and model.add_pad_token is false; chat data and "
                                "packing need one",
                                tok_path));
      ++v_tok;
      in.assumptions.push_back(fmt::format("[PAD] added: the tokenizer {} has {} tokens and no PAD -> V {}", tok_path,
                                           tok->vocab_size(), v_tok));
    }
    if (!from_checkpoint) {
      if (cfg.origin("model.vocab_size").where != "default" && v_model != tok->vocab_size())
        throw Error(fmt::format("{}: model.vocab_size = {} but the tokenizer has {} tokens",
                                cfg.origin("model.vocab_size").where, v_model, tok->vocab_size()));
      in.model.vocab_size = v_tok;
    } else {
      // The trainer grows the embeddings to the tokenizer and keeps padding rows.
      in.model.vocab_size = model::ModelConfig::trained_vocab(in.model_source, v_model, v_tok);
      if (v_model > v_tok)
        in.assumptions.push_back(fmt::format("{} padding rows beyond the tokenizer's {} tokens kept: V {}",
                                             v_model - v_tok, v_tok, v_model));
    }
  } else {
    std::string where = !tok_path.empty()                ? fmt::format("{} is not here", tok_path)
                        : !options.model_preset.empty() ? std::string("planning from a preset")
                                                        : std::string("no tokenizer path is set");
    if (from_checkpoint && in.model.pad_token_id >= 0) {
      in.assumptions.push_back(fmt::format("tokenizer unknown ({}): assumed to have the PAD of config.json "
                                           "(pad_token_id {}) -> V {}",
                                           where, in.model.pad_token_id, v_model));
    } else if (add_pad) {
      in.model.vocab_size = v_model + 1;
      in.assumptions.push_back(fmt::format("tokenizer unknown ({}): assumed to have {} tokens and no PAD, so the "
                                           "trainer adds [PAD] -> V {}",
                                           where, v_model, v_model + 1));
    } else {
      in.assumptions.push_back(fmt::format("tokenizer unknown ({}): assumed V {} (model.add_pad_token is false)",
                                           where, v_model));
    }
  }
  in.model.validate(in.model_source);
  if (!(options.span_fraction > 0 && options.span_fraction <= 1))
    throw Error(fmt::format("the span fraction must be in (0, 1], got {}", options.span_fraction));
  in.span_fraction = options.span_fraction;
  if (config::is_diffusion(in.stage))
    in.assumptions.push_back(in.span_fraction == 1.0
                                 ? std::string("worst case for the vocabulary-space tensors: every position is a span "
                                               "row (N = B x L)")
                                 : fmt::format("span rows N = {} x B x L (--span-fraction)", in.span_fraction));
  in.assumptions.push_back("attention through a fused kernel (FlashAttention / LibTorch's flash kernel): no [L, L] "
                           "score matrix is kept");
  return in;
}

// ---------------------------------------------------------------------------
namespace {

std::string phase_name(const std::string& phase) {
  if (phase == "forward_start") return "fwd start";
  return phase;
}

std::string fit_line(const MemoryPlan& plan, double gpu_gib, std::string* suggestions) {
  double total = gib(plan.total), head = gpu_gib - total;
  if (head >= 0)
    return fmt::format("fits in {:.1f} GiB: headroom {:.2f} GiB ({:.0f}%) before the CUDA context and allocator "
                       "fragmentation",
                       gpu_gib, head, 100.0 * head / gpu_gib);
  // The largest terms, and what each remedy would give.
  // The largest terms of the persistent state and of the phase that sets the peak.
  std::string dominant = "forward";
  double top = plan.forward_peak;
  if (plan.backward_peak > top) dominant = "backward", top = plan.backward_peak;
  if (plan.step_peak > top) dominant = "step", top = plan.step_peak;
  if (plan.forward_start_peak > top) dominant = "forward_start";
  std::vector<const PlanTerm*> sorted;
  for (const auto& t : plan.terms) {
    bool in_phase = t.phase == "persistent" || t.phase == dominant ||
                    (dominant == "backward" && t.phase == "forward" && t.key != "lm_head_loss" &&
                     t.key != "self_condition_states");
    if (in_phase) sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->value > b->value; });
  std::string largest;
  for (size_t i = 0; i < std::min<size_t>(3, sorted.size()); ++i)
    largest += fmt::format("{}{} {:.2f} GiB", i ? ", " : "", sorted[i]->label, gib(sorted[i]->value));
  auto retry = [&](const std::string& what, PlanInputs in) {
    double t = gib(estimate(in).total);
    *suggestions += fmt::format("  - {}: {:.2f} GiB{}\n", what, t, t <= gpu_gib ? " (fits)" : "");
  };
  const auto& in = plan.in;
  if (!in.zero && in.world_size > 1) {
    auto x = in;
    x.zero = true;
    retry("dist.zero: 1 (ZeRO-1, AdamW moments sharded)", x);
  }
  if (!in.activation_checkpointing) {
    auto x = in;
    x.activation_checkpointing = true;
    retry("model.activation_checkpointing: true", x);
  }
  if (in.batch_size > 1) {
    auto x = in;
    x.grad_accum = in.grad_accum * in.batch_size;
    x.batch_size = 1;
    retry(fmt::format("train.batch_size: 1 with train.grad_accum: {} (same global batch)", x.grad_accum), x);
  }
  if (!in.zero && in.world_size > 1 && !in.activation_checkpointing) {
    auto x = in;
    x.zero = true;
    x.activation_checkpointing = true;
    retry("both ZeRO-1 and activation checkpointing", x);
  }
  if (in.precision == Precision::Bf16Master) {
    auto x = in;
    x.precision = Precision::Bf16Autocast;
    retry("train.precision: bf16_autocast with model.dtype: float32 (no unsharded fp32 masters)", x);
  }
  if (in.zero && in.world_size == 1) *suggestions += "  - more ranks: ZeRO-1 shards the AdamW moments over them\n";
  return fmt::format("DOES NOT FIT in {:.1f} GiB: over by {:.2f} GiB; largest terms: {}", gpu_gib, -head, largest);
}

}  // namespace

std::string format_plan(const MemoryPlan& plan, double gpu_gib, double mfu, double peak_tflops) {
  const auto& in = plan.in;
  const auto& m = in.model;
  std::string s;
  s += fmt::format("tess plan: stage {}, {} rank(s); model from {}\n", config::run_stage_choices().name(in.stage),
                   in.world_size, in.model_source);
  s += fmt::format("model: {} V {} H {} I {} layers {} heads {}/{} kv x {}; {} trained parameters\n", m.model_type,
                   m.vocab_size, m.hidden_size, m.intermediate_size, m.num_hidden_layers, m.num_attention_heads,
                   m.num_key_value_heads, m.resolved_head_dim(), count(plan.parameters));
  s += fmt::format("run: precision {}, ZeRO-1 {}, activation checkpointing {}; micro-batch {} x {} tokens, grad "
                   "accumulation {}{}\n",
                   config::precision_choices().name(in.precision), in.zero ? "on" : "off", in.activation_checkpointing ? "on" : "off",
                   in.batch_size, in.seq_len, in.grad_accum,
                   in.stage == RunStage::Reward ? " (pairs: 2 sequences each)" : "");
  if (!in.assumptions.empty()) {
    s += "assumptions:\n";
    for (const auto& a : in.assumptions) s += "  - " + a + "\n";
  }
  s += fmt::format("\n{:<46} {:>9}  {:<11} {}\n", "per-rank memory", "GiB", "phase", "formula");
  for (const auto& t : plan.terms)
    s += fmt::format("{:<46} {:>9.3f}  {:<11} {}\n", t.label, gib(t.value), phase_name(t.phase), t.formula);
  double start = plan.forward_start_peak;
  s += fmt::format("\nphases: persistent {:.2f} GiB; transients: forward end {:.2f}, backward {:.2f}, optimizer step "
                   "{:.2f}{} GiB\n",
                   gib(plan.persistent), gib(plan.forward_peak), gib(plan.backward_peak), gib(plan.step_peak),
                   start > 0 ? fmt::format(", forward start {:.2f}", gib(start)) : std::string());
  s += fmt::format("{:<46} {:>9.3f}  = persistent + largest transient phase\n", "total per rank", gib(plan.total));
  if (gpu_gib > 0) {
    std::string suggestions;
    s += fit_line(plan, gpu_gib, &suggestions) + "\n";
    if (!suggestions.empty()) s += "what would change it (per-rank total):\n" + suggestions;
  }

  s += fmt::format("\n{:<46} {:>9}  {}\n", "compute per token (train/flops.h)", "GFLOP", "formula");
  for (const auto& f : plan.flops) s += fmt::format("{:<46} {:>9.3f}  {}\n", f.label, f.value / 1e9, f.formula);
  s += fmt::format("{:<46} {:>9.3f}\n", "total", plan.flops_per_token / 1e9);
  if (peak_tflops > 0) {
    auto t = throughput(plan, mfu, peak_tflops);
    s += fmt::format("at {:.0f}% MFU of {} TFLOP/s: {} tokens/s per rank; a step of {} tokens on {} rank(s) takes "
                     "{:.3g} s",
                     mfu * 100, peak_tflops, count(std::llround(t.tokens_per_s_per_rank)), count(plan.tokens_per_step),
                     in.world_size, t.step_seconds);
    if (in.max_steps > 0)
      s += fmt::format("; {} steps: {:.1f} hours = {:.1f} days", count(in.max_steps), t.total_seconds / 3600.0,
                       t.total_seconds / 86400.0);
    s += "\n";
  }
  return s;
}

std::string plan_json(const MemoryPlan& plan, double gpu_gib, double mfu, double peak_tflops) {
  using nlohmann::json;
  const auto& in = plan.in;
  const auto& m = in.model;
  json j;
  j["stage"] = config::run_stage_choices().name(in.stage);
  j["world_size"] = in.world_size;
  j["model"] = {{"source", in.model_source},
                {"model_type", m.model_type},
                {"vocab_size", m.vocab_size},
                {"hidden_size", m.hidden_size},
                {"intermediate_size", m.intermediate_size},
                {"num_hidden_layers", m.num_hidden_layers},
                {"num_attention_heads", m.num_attention_heads},
                {"num_key_value_heads", m.num_key_value_heads},
                {"head_dim", m.resolved_head_dim()},
                {"tie_word_embeddings", m.tie_word_embeddings},
                {"parameters", plan.parameters}};
  j["run"] = {{"precision", config::precision_choices().name(in.precision)},
              {"zero", in.zero ? 1 : 0},
              {"activation_checkpointing", in.activation_checkpointing},
              {"batch_size", in.batch_size},
              {"seq_len", in.seq_len},
              {"grad_accum", in.grad_accum},
              {"bucket_mb", in.bucket_mb},
              {"max_steps", in.max_steps},
              {"self_condition_prob", in.self_condition_prob},
              {"span_fraction", in.span_fraction}};
  j["assumptions"] = in.assumptions;
  json terms = json::array();
  for (const auto& t : plan.terms)
    terms.push_back({{"key", t.key}, {"label", t.label}, {"phase", t.phase}, {"bytes", t.value},
                     {"gib", gib(t.value)}, {"formula", t.formula}});
  j["memory"] = {{"terms", terms},
                 {"owned_parameters", plan.owned_parameters},
                 {"persistent_bytes", plan.persistent},
                 {"forward_peak_bytes", plan.forward_peak},
                 {"backward_peak_bytes", plan.backward_peak},
                 {"step_peak_bytes", plan.step_peak},
                 {"total_bytes", plan.total},
                 {"total_gib", gib(plan.total)}};
  if (gpu_gib > 0) {
    j["memory"]["gpu_memory_gib"] = gpu_gib;
    j["memory"]["fits"] = gib(plan.total) <= gpu_gib;
    j["memory"]["headroom_gib"] = gpu_gib - gib(plan.total);
  }
  json flops = json::array();
  for (const auto& f : plan.flops) flops.push_back({{"key", f.key}, {"label", f.label}, {"flops", f.value}, {"formula", f.formula}});
  j["compute"] = {{"terms", flops}, {"flops_per_token", plan.flops_per_token}, {"tokens_per_step", plan.tokens_per_step}};
  if (peak_tflops > 0) {
    auto t = throughput(plan, mfu, peak_tflops);
    j["compute"]["mfu"] = mfu;
    j["compute"]["peak_tflops"] = peak_tflops;
    j["compute"]["tokens_per_s_per_rank"] = t.tokens_per_s_per_rank;
    j["compute"]["step_seconds"] = t.step_seconds;
    if (in.max_steps > 0) j["compute"]["total_seconds"] = t.total_seconds;
  }
  return j.dump(2) + "\n";
}

}  // namespace tess::train
