#include "eval/generate.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/diffusion/guidance.h"
#include "core/diffusion/sampler.h"
#include "core/model/hf_checkpoint.h"
#include "core/util/error.h"
#include "core/util/rng.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;

namespace tess::eval {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One display line: newlines and tabs shown as spaces/arrows, at most `width`
// code points (UTF-8 safe), "…" when cut.
std::string display_line(const std::string& text, int64_t width) {
  std::string out;
  int64_t points = 0;
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + len > text.size()) len = 1;
    if (width > 0 && points >= width - 1 && i + len < text.size()) {
      out += "…";
      break;
    }
    if (c == '\n') out += "⏎";
    else if (c == '\t' || c == '\r') out += ' ';
    else if (c < 0x20) out += '?';
    else out.append(text, i, len);
    i += len;
    ++points;
  }
  return out;
}

int64_t terminal_width(std::FILE* out) {
  struct winsize w {};
  if (ioctl(fileno(out), TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  return 100;
}


}  // namespace

nlohmann::json generation_json(const Generation& g) {
  nlohmann::json j;
  j["prompt"] = g.prompt;
  j["output"] = g.output;
  j["steps"] = g.steps;
  if (g.frozen > 0) j["frozen"] = g.frozen;
  j["seconds"] = g.seconds;
  if (!g.task.empty()) j["task"] = g.task;
  if (!g.answer.empty()) j["answer"] = g.answer;
  return j;
}

std::vector<GenerationPrompt> read_prompts(const fs::path& file) {
  if (!fs::exists(file)) throw Error(fmt::format("prompt file {} does not exist", file.string()));
  if (fs::is_directory(file)) throw Error(fmt::format("prompt file {} is a directory, expected a JSONL file", file.string()));
  data::ChatOptions co;
  co.progress = false;
  auto records = data::read_eval_records(file, co);
  if (records.empty())
    throw Error(fmt::format("prompt file {} holds no prompts (expected {{\"prompt\": ...}} or chat \"messages\" lines)",
                            file.string()));
  std::vector<GenerationPrompt> out;
  out.reserve(records.size());
  for (auto& r : records) {
    GenerationPrompt p;
    p.prompt = std::move(r.prompt);
    p.task = std::move(r.task);
    p.answer = std::move(r.reference);
    p.line = r.line;
    out.push_back(std::move(p));
  }
  return out;
}

// ---- step printer ----------------------------------------------------------------

StepPrinter::StepPrinter(std::FILE* out, bool tty, int64_t max_width)
    : out_(out), tty_(tty), width_(max_width > 0 ? max_width : (tty ? terminal_width(out) : 0)) {}

void StepPrinter::operator()(const StepView& v) {
  auto rows = static_cast<int64_t>(v.texts.size());
  std::string head = fmt::format("step {}/{} t={}", v.step + 1, v.steps, v.t);
  if (tty_) {
    std::string s;
    if (drawn_lines_ > 0) s += fmt::format("\x1b[{}A", drawn_lines_);  // back to the first line of the block
    for (int64_t r = 0; r < rows; ++r) {
      std::string prefix = rows > 1 ? fmt::format("{} [{}]: ", head, r) : head + ": ";
      int64_t room = width_ - static_cast<int64_t>(prefix.size());
      s += "\r\x1b[2K" + prefix + display_line(v.texts[static_cast<size_t>(r)], std::max<int64_t>(room, 10)) + "\n";
    }
    drawn_lines_ = rows;
    std::fputs(s.c_str(), out_);
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      std::string prefix = rows > 1 ? fmt::format("{} [{}]: ", head, r) : head + ": ";
      std::string line = prefix + display_line(v.texts[static_cast<size_t>(r)], width_) + "\n";
      std::fputs(line.c_str(), out_);
    }
  }
  std::fflush(out_);
}

void StepPrinter::end_batch() { drawn_lines_ = 0; }

// ---- token choice and AR decoding ---------------------------------------------------

namespace {

torch::Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kInt64).unsqueeze(0);
}

int64_t pick(const torch::Tensor& last_logits, double top_p, double temperature, util::Rng& rng) {
  return diffusion::choose_tokens(last_logits.to(torch::kFloat32), top_p, temperature, rng)[0].item<int64_t>();
}

}  // namespace

std::vector<int64_t> ar_generate(model::DecoderImpl& decoder, const std::vector<int64_t>& prompt, int64_t max_new,
                                 int64_t eos_id, double top_p, double temperature, util::Rng& rng,
                                 const std::function<void(const std::vector<int64_t>&)>& on_token) {
  std::function<void(const std::vector<std::vector<int64_t>>&)> each;
  if (on_token) each = [&](const std::vector<std::vector<int64_t>>& so_far) { on_token(so_far.front()); };
  return ar_generate_batch(decoder, {prompt}, max_new, eos_id, top_p, temperature, rng, each).front();
}

std::vector<std::vector<int64_t>> ar_generate_batch(
    model::DecoderImpl& decoder, const std::vector<std::vector<int64_t>>& prompts, int64_t max_new, int64_t eos_id,
    double top_p, double temperature, util::Rng& rng,
    const std::function<void(const std::vector<std::vector<int64_t>>&)>& on_tokens) {
  const auto rows = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> out(prompts.size());
  if (prompts.empty()) return out;
  int64_t longest = 0, shortest = std::numeric_limits<int64_t>::max();
  for (const auto& p : prompts) {
    if (p.empty()) throw Error("autoregressive generation needs a non-empty prompt");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
    shortest = std::min<int64_t>(shortest, static_cast<int64_t>(p.size()));
  }
  const int64_t window = decoder.config().sliding_window, capacity = longest + std::max<int64_t>(max_new, 1);
  if (rows > 1 && shortest != longest && window > 0 && window < capacity) {
    for (size_t r = 0; r < prompts.size(); ++r)
      out[r] = ar_generate(decoder, prompts[r], max_new, eos_id, top_p, temperature, rng);
    if (on_tokens) on_tokens(out);
    return out;
  }
  torch::NoGradGuard no_grad;
  const auto& w = decoder.embedding_weight();
  const auto device = w.device();
  model::KVCache cache(decoder.config(), rows, capacity, torch::TensorOptions().dtype(w.scalar_type()).device(device));
  // Columns 0..longest-1 hold the prompts (right-padded), then one column per new token.
  auto ids = torch::zeros({rows, longest}, torch::kInt64);
  auto keys = torch::ones({rows, capacity}, torch::kBool);
  auto lengths = torch::empty({rows}, torch::kInt64);
  for (int64_t r = 0; r < rows; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    auto n = static_cast<int64_t>(p.size());
    std::copy(p.begin(), p.end(), ids[r].data_ptr<int64_t>());
    keys[r].narrow(0, n, longest - n).fill_(false);
    lengths[r] = n;
  }
  bool padded = shortest != longest;
  keys = keys.to(device);
  model::ForwardOptions fo;
  fo.attention = model::Attention::Causal;
  fo.cache = &cache;
  if (padded) fo.key_mask = keys.narrow(1, 0, longest);
  // Prefill; each row's logits at its last prompt token.
  auto hidden = decoder.hidden_states(decoder.embed(ids.to(device)), fo);
  auto last = hidden.gather(1, (lengths - 1).to(device).view({rows, 1, 1}).expand({rows, 1, hidden.size(2)}));
  auto logits = decoder.logits(last).squeeze(1);  // [rows, V]
  std::vector<bool> done(prompts.size(), false);
  int64_t running = rows;
  for (int64_t n = 0; n < max_new && running > 0; ++n) {
    auto next = diffusion::choose_tokens(logits.to(torch::kFloat32), top_p, temperature, rng).cpu();
    const auto* tok = next.data_ptr<int64_t>();
    bool grew = false;
    for (size_t r = 0; r < prompts.size(); ++r) {
      if (done[r]) continue;
      if (tok[r] == eos_id) {
        done[r] = true;
        --running;
      } else {
        out[r].push_back(tok[r]);
        grew = true;
      }
    }
    if (on_tokens && grew) on_tokens(out);
    if (n + 1 == max_new || running == 0) break;
    fo.position_ids = (lengths + n).view({rows, 1}).to(device);
    if (padded) fo.key_mask = keys.narrow(1, 0, longest + n + 1);
    logits = decoder.forward(next.view({rows, 1}).to(device), fo).select(1, -1);
  }
  return out;
}

std::vector<int64_t> ar_generate_uncached(model::DecoderImpl& decoder, const std::vector<int64_t>& prompt,
                                          int64_t max_new, int64_t eos_id, double top_p, double temperature,
                                          util::Rng& rng) {
  torch::NoGradGuard no_grad;
  model::ForwardOptions fo;
  fo.attention = model::Attention::Causal;
  auto seq = prompt;
  std::vector<int64_t> out;
  for (int64_t n = 0; n < max_new; ++n) {
    auto logits = decoder.forward(ids_tensor(seq), fo).select(1, -1);
    int64_t next = pick(logits, top_p, temperature, rng);
    if (next == eos_id) break;
    out.push_back(next);
    seq.push_back(next);
  }
  return out;
}

// ---- Generator ----------------------------------------------------------------------

c10::Device generation_device(const std::string& setting) {
  bool cuda = torch::cuda::is_available();
  if (setting == "auto") return cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  std::optional<c10::Device> d;
  try {
    d.emplace(setting);
  } catch (const std::exception&) {
  }
  if (!d || !(d->is_cpu() || d->is_cuda()))
    throw Error(fmt::format("--device '{}': expected auto, cpu, cuda or cuda:N", setting));
  if (d->is_cuda() && !cuda)
    throw Error(fmt::format("--device {}, but LibTorch sees no CUDA device (no GPU, no driver, or "
                            "CUDA_VISIBLE_DEVICES hides them)",
                            setting));
  if (d->is_cuda() && d->index() >= static_cast<int>(torch::cuda::device_count()))
    throw Error(fmt::format("--device {}: only {} CUDA device(s) are visible", setting, torch::cuda::device_count()));
  return d->is_cuda() && !d->has_index() ? c10::Device(c10::kCUDA, 0) : *d;
}


Generator::Generator(const fs::path& model_dir, GenerateOptions options) : opt_(options) {
  device_ = generation_device(opt_.device);
  if (opt_.cpu_cache && device_.is_cpu()) cpu_cache_.emplace();
  if (!fs::exists(model_dir)) throw Error(fmt::format("model directory {} does not exist", model_dir.string()));
  if (!fs::is_directory(model_dir))
    throw Error(fmt::format("--model {} is not a directory (expected an HF model directory)", model_dir.string()));
  if (!fs::exists(model_dir / "config.json"))
    throw Error(fmt::format("{} has no config.json: not a model directory", model_dir.string()));
  if (opt_.steps < 1 || opt_.steps > diffusion::kMaxSamplingSteps)
    throw Error(fmt::format("--steps must be in [1, {}], got {}", diffusion::kMaxSamplingSteps, opt_.steps));
  if (opt_.length < 1) throw Error(fmt::format("--length must be at least 1, got {}", opt_.length));
  if (opt_.batch_size < 1) throw Error(fmt::format("--batch-size must be at least 1, got {}", opt_.batch_size));
  // Written so that nan fails each comparison.
  if (!(opt_.temperature > 0 && std::isfinite(opt_.temperature)))
    throw Error(fmt::format("--temperature must be a finite number > 0, got {}", opt_.temperature));
  if (!(opt_.top_p >= 0 && opt_.top_p <= 1)) throw Error(fmt::format("--top-p must be in [0, 1], got {}", opt_.top_p));
  if (opt_.stop.freeze && opt_.ar)
    throw Error("freezing (--freeze) is the diffusion sampler's; it does not apply to --ar");
  if (opt_.stop.enabled || opt_.stop.freeze) {
    if (opt_.ar) throw Error("adaptive stopping (--adaptive) stops the diffusion sampler; it does not apply to --ar");
    if (opt_.stop.stable_steps < 1)
      throw Error(fmt::format("--stable-steps must be at least 1, got {}", opt_.stop.stable_steps));
    if (!(opt_.stop.margin >= 0 && opt_.stop.margin <= 1))
      throw Error(fmt::format("--margin must be in [0, 1], got {}", opt_.stop.margin));
  }

  if (opt_.cache_refresh < 0)
    throw Error(fmt::format("--cache-refresh must be >= 0 (0 = off), got {}", opt_.cache_refresh));
  if (opt_.seed_per_prompt && opt_.ar)
    throw Error("--seed-per-prompt gives each prompt its own diffusion sampler stream; --ar decoding draws per batch");
  if (opt_.cache_refresh > 0 && opt_.ar)
    throw Error("the prompt cache (--cache-refresh) is the diffusion sampler's; --ar decoding has its own KV cache");

  tok_ = data::load_tokenizer(model_dir);
  const model::ModelConfig* config = nullptr;
  // Each sampler refuses the other kind of model: it would run, and print garbage.
  if (opt_.ar) {
    auto loaded = model::load_hf_model(model_dir);
    if (loaded.extra_tensors.count("timestep_embed.weight"))
      throw Error(fmt::format("{} is a diffusion model (it has timestep_embed.weight; config.json is_causal: {}): "
                              "--ar would decode it token by token, which it was not trained for; leave out --ar",
                              model_dir.string(),
                              loaded.decoder->config().attention == model::Attention::Causal ? "true" : "false"));
    decoder_ = loaded.decoder;
    decoder_->to(device_);
    decoder_->eval();
    config = &decoder_->config();
  } else {
    lm_ = load_sampling_lm(model_dir, device_);
    config = &lm_->decoder->config();
  }
  max_positions_ = config->max_position_embeddings;
  check_tokenizer_fits(*tok_, *config, model_dir);
  rng_ = std::make_unique<util::Rng>(opt_.seed, "generate");
  if (!(opt_.guidance_scale >= 0 && std::isfinite(opt_.guidance_scale)))
    throw Error(fmt::format("--guidance-scale must be a finite number >= 0, got {}", opt_.guidance_scale));
  if (opt_.guidance_scale > 0) {
    if (opt_.ar) throw Error("reward guidance steers the diffusion sampler; it does not apply to --ar decoding");
    if (opt_.reward_model.empty()) throw Error("--guidance-scale > 0 needs --reward-model DIR");
    reward_model_ = load_guidance_model(*tok_, model_dir, config->vocab_size, opt_.reward_model, device_);
    guidance_ = std::make_unique<diffusion::RewardGuidance>(*reward_model_, opt_.guidance_scale, tok_->eos_id(),
                                                            opt_.guidance_read);
  }
  if (opt_.length >= max_positions_)  // before any allocation sized by it
    throw Error(fmt::format("--length {} leaves no room for a prompt within the model's {} positions "
                            "(max_position_embeddings of {})",
                            opt_.length, max_positions_, model_dir.string()));
}

diffusion::DiffusionLM load_sampling_lm(const fs::path& dir, c10::Device device) {
  auto lm = diffusion::load_diffusion_lm(dir);
  if (!lm->timestep_embed_loaded())
    throw Error(fmt::format("{} is an autoregressive model, not a diffusion model (no timestep_embed.weight; "
                            "config.json is_causal: {}): the diffusion sampler would run it with a random time "
                            "embedding; decode it with --ar, or adapt it first (tess train, run.stage: adaptation)",
                            dir.string(), lm->decoder->config().attention == model::Attention::Causal ? "true" : "false"));
  lm->to(device);
  lm->eval();
  return lm;
}

void check_tokenizer_fits(const data::Tokenizer& tok, const model::ModelConfig& config, const fs::path& dir) {
  if (tok.vocab_size() > config.vocab_size)
    throw Error(fmt::format("model/tokenizer mismatch in {}: the tokenizer has {} tokens but the model's vocabulary "
                            "is {} (was the model trained with another tokenizer?)",
                            dir.string(), tok.vocab_size(), config.vocab_size));
  if (tok.eos_id() < 0) throw Error(fmt::format("the tokenizer of {} has no EOS token", dir.string()));
}

model::RewardModel load_guidance_model(const data::Tokenizer& tok, const fs::path& model_dir, int64_t vocab,
                                       const fs::path& rm_dir, c10::Device device) {
  check_same_tokenizer(tok, model_dir, rm_dir);
  auto rm = model::load_reward_model(rm_dir, std::string("float32"));  // guidance runs in fp32
  rm->to(device);
  if (rm->config().vocab_size != vocab)
    throw Error(fmt::format("reward model {} has a vocabulary of {} but the model {} has {}", rm_dir.string(),
                            rm->config().vocab_size, model_dir.string(), vocab));
  return rm;
}

void check_same_tokenizer(const data::Tokenizer& tok, const fs::path& model_dir, const fs::path& rm_dir) {
  if (!fs::is_directory(rm_dir)) throw Error(fmt::format("reward model directory {} does not exist", rm_dir.string()));
  auto rm_tok = data::load_tokenizer(rm_dir);
  if (rm_tok->content_hash() != tok.content_hash())
    throw Error(fmt::format("the reward model {} uses a different tokenizer than the model {} ({} tokens, hash {}… vs "
                            "{} tokens, hash {}…): reward guidance and scoring need the same vocabulary",
                            rm_dir.string(), model_dir.string(), rm_tok->vocab_size(), rm_tok->content_hash().substr(0, 12),
                            tok.vocab_size(), tok.content_hash().substr(0, 12)));
}

Generator::~Generator() = default;

std::vector<int64_t> cut_at(const std::vector<int64_t>& ids, int64_t eos, int64_t pad) {
  std::vector<int64_t> out;
  for (auto id : ids) {
    if (id == eos || id == pad) break;
    out.push_back(id);
  }
  return out;
}

std::string decode_generated(const data::Tokenizer& tok, const std::vector<int64_t>& ids) {
  std::vector<int32_t> v;
  v.reserve(ids.size());
  for (auto id : ids)
    if (id >= 0 && id < tok.vocab_size()) v.push_back(static_cast<int32_t>(id));
  return tok.decode(v);
}

std::string Generator::decode(const std::vector<int64_t>& ids) const { return decode_generated(*tok_, ids); }

std::vector<Generation> Generator::generate(const std::vector<GenerationPrompt>& prompts, const StepObserver& on_step,
                                            const std::function<void(const std::vector<Generation>&)>& on_batch) {
  std::vector<Generation> out;
  out.reserve(prompts.size());
  size_t bs = static_cast<size_t>(opt_.batch_size);
  for (size_t start = 0; start < prompts.size(); start += bs) {
    std::vector<GenerationPrompt> chunk(prompts.begin() + static_cast<std::ptrdiff_t>(start),
                                        prompts.begin() + static_cast<std::ptrdiff_t>(std::min(prompts.size(), start + bs)));
    std::vector<Generation> results;
    if (opt_.ar) {
      results = ar_batch(chunk, on_step);
    } else {
      results = diffusion_batch(chunk, on_step);
    }
    if (on_batch) on_batch(results);
    for (auto& r : results) out.push_back(std::move(r));
  }
  return out;
}

std::vector<Generation> Generator::diffusion_batch(const std::vector<GenerationPrompt>& prompts,
                                                   const StepObserver& on_step) {
  double t0 = now_s();
  int64_t eos = tok_->eos_id();
  int64_t pad = tok_->pad_id() >= 0 ? tok_->pad_id() : eos;
  auto ids = encode(prompts);
  auto batch = diffusion::SampleBatch::from_prompts(ids, opt_.length, pad).to(device_);
  auto so = sampler_options();
  so.stop.end_id = eos;
  so.stop.pad_id = pad;
  diffusion::Sampler sampler(*lm_, so);
  auto guidance_for = [&](const diffusion::SampleBatch& rows) { return guidance_hook(rows); };
  diffusion::StepCallback cb;
  std::vector<std::string> texts(prompts.size());  // a row that stopped keeps its last text
  if (on_step) {
    cb = [&](const diffusion::StepInfo& s) {
      auto tokens = s.tokens.view({static_cast<int64_t>(s.rows.size()), opt_.length}).cpu().contiguous();
      for (size_t r = 0; r < s.rows.size(); ++r) {
        const int64_t* row = tokens[static_cast<int64_t>(r)].data_ptr<int64_t>();
        texts[static_cast<size_t>(s.rows[r])] = decode(cut_at({row, row + opt_.length}, eos, pad));
      }
      StepView v;
      v.step = s.step;
      v.steps = opt_.steps;
      v.t = s.t;
      v.texts = texts;
      on_step(v);
    };
  }
  auto first_prompt = prompts_answered_;
  prompts_answered_ += static_cast<int64_t>(prompts.size());
  if (!opt_.stop.enabled && !opt_.stop.freeze && !opt_.seed_per_prompt) {
    auto sampled = sampler.sample(batch, *rng_, cb, guidance_for(batch));
    passes_ += sampler.passes();
    return results(prompts, diffusion::Sampler::span_outputs(sampled, batch, eos, pad), now_s() - t0, opt_.steps);
  }
  std::vector<util::Rng> streams;
  for (size_t i = 0; i < prompts.size(); ++i)
    streams.push_back(prompt_stream(first_prompt + static_cast<int64_t>(i)));
  auto sampled = sampler.sample_rows(batch, streams, cb, guidance_for);
  passes_ += sampler.passes();
  auto out = results(prompts, diffusion::Sampler::span_outputs(sampled.ids, batch, eos, pad), now_s() - t0, opt_.steps);
  for (size_t i = 0; i < out.size(); ++i) out[i].steps = sampled.steps[i], out[i].frozen = sampled.frozen[i];
  return out;
}

util::Rng Generator::prompt_stream(int64_t n) const {
  return util::Rng(opt_.seed, opt_.seed_per_prompt ? std::string("generate") : fmt::format("generate.prompt.{}", n));
}

diffusion::SamplerOptions Generator::sampler_options() const {
  diffusion::SamplerOptions so;
  so.steps = opt_.steps;
  so.top_p = opt_.top_p;
  so.temperature = opt_.temperature;
  so.simplex_value = lm_->noise.simplex_value;  // the k and schedule the model was trained with
  so.schedule = diffusion::parse_schedule(lm_->noise.schedule);
  so.stop = opt_.stop;
  so.cache_refresh = opt_.cache_refresh;
  return so;
}

diffusion::GuidanceHook Generator::guidance_hook(const diffusion::SampleBatch& rows) const {
  int64_t tv = tok_->vocab_size(), mv = lm_->decoder->config().vocab_size;
  diffusion::GuidanceHook reward;
  if (guidance_) reward = guidance_->hook(rows);
  if (tv >= mv && !reward) return {};
  return [tv, mv, reward](int64_t t, const torch::Tensor& logits, const diffusion::SpanIndex& span) {
    auto l = reward ? reward(t, logits, span) : logits.clone();
    if (tv < mv) l.narrow(1, tv, mv - tv).fill_(-std::numeric_limits<float>::infinity());
    return l;
  };
}

namespace {

// "a <span:3> b" -> pieces of text and span lengths, in order.
struct InfillPiece {
  std::string text;
  int64_t span = 0;  // > 0: a span of that many tokens
};

std::vector<InfillPiece> parse_infill(const std::string& text) {
  std::vector<InfillPiece> out;
  size_t at = 0;
  while (true) {
    auto open = text.find("<span:", at);
    if (open == std::string::npos) break;
    auto close = text.find('>', open);
    if (close == std::string::npos) throw Error(fmt::format("--infill: '<span:' at character {} has no '>'", open));
    auto number = text.substr(open + 6, close - open - 6);
    int64_t n = 0;
    try {
      size_t used = 0;
      n = std::stoll(number, &used);
      if (used != number.size()) n = 0;
    } catch (const std::exception&) {
      n = 0;
    }
    if (n < 1)
      throw Error(fmt::format("--infill: <span:{}> at character {}: expected a positive token count, e.g. <span:20>",
                              number, open));
    if (open > at) out.push_back({text.substr(at, open - at), 0});
    out.push_back({"", n});
    at = close + 1;
  }
  if (at < text.size()) out.push_back({text.substr(at), 0});
  if (std::none_of(out.begin(), out.end(), [](const InfillPiece& p) { return p.span > 0; }))
    throw Error("--infill: the text has no <span:N> to fill (e.g. \"The capital of France is <span:4>.\")");
  return out;
}

}  // namespace

Generation Generator::infill(const std::string& text, const StepObserver& on_step) {
  if (opt_.ar) throw Error("--infill fills spans inside a text with the diffusion sampler; it does not apply to --ar");
  double t0 = now_s();
  std::vector<int64_t> ids;
  std::vector<uint8_t> span;  // 1 = a position to fill
  if (tok_->bos_id() >= 0) ids.push_back(tok_->bos_id()), span.push_back(0);
  for (const auto& piece : parse_infill(text)) {
    if (piece.span > 0) {
      ids.insert(ids.end(), static_cast<size_t>(piece.span), tok_->eos_id());  // placeholders, never read
      span.insert(span.end(), static_cast<size_t>(piece.span), uint8_t{1});
    } else {
      for (auto id : tok_->encode(piece.text)) ids.push_back(id), span.push_back(0);
    }
  }
  auto l = static_cast<int64_t>(ids.size());
  if (l > max_positions_)
    throw Error(fmt::format("--infill: the text and its spans are {} tokens, more than the model's {} positions", l,
                            max_positions_));
  diffusion::SampleBatch batch;
  batch.ids = torch::tensor(ids, torch::kInt64).view({1, l});
  batch.span_mask = torch::tensor(span, torch::kUInt8).to(torch::kBool).view({1, l});
  batch = batch.to(device_);
  auto so = sampler_options();  // no end token: every span is filled whole
  diffusion::Sampler sampler(*lm_, so);
  auto whole = [&](const torch::Tensor& row_ids) {
    auto host = row_ids.cpu().contiguous();
    const int64_t* p = host.data_ptr<int64_t>();
    std::vector<int64_t> body(p + (tok_->bos_id() >= 0 ? 1 : 0), p + l);
    return decode(body);
  };
  diffusion::StepCallback cb;
  if (on_step) {
    cb = [&](const diffusion::StepInfo& s) {
      auto now = batch.ids.clone();
      now.view(-1).index_copy_(0, s.span.flat, s.tokens);
      on_step(StepView{s.step, opt_.steps, s.t, {whole(now[0])}});
    };
  }
  std::vector<util::Rng> streams;
  streams.push_back(prompt_stream(prompts_answered_++));
  auto sampled = sampler.sample_rows(batch, streams, cb, [&](const diffusion::SampleBatch& rows) { return guidance_hook(rows); });
  passes_ += sampler.passes();
  Generation g;
  g.prompt = text;
  g.output = whole(sampled.ids[0]);
  auto filled = sampled.ids.masked_select(batch.span_mask).cpu();
  g.tokens.assign(filled.data_ptr<int64_t>(), filled.data_ptr<int64_t>() + filled.numel());
  g.steps = sampled.steps[0];
  g.seconds = now_s() - t0;
  return g;
}

std::vector<Generation> Generator::ar_batch(const std::vector<GenerationPrompt>& prompts, const StepObserver& on_step) {
  double t0 = now_s();
  auto ids = encode(prompts);
  // Ids beyond the tokenizer (an untrained tail of a padded vocabulary) are
  // dropped at decode time.
  std::function<void(const std::vector<std::vector<int64_t>>&)> tick;
  if (on_step) {
    tick = [&](const std::vector<std::vector<int64_t>>& so_far) {
      StepView v;
      for (const auto& row : so_far) v.t = std::max<int64_t>(v.t, static_cast<int64_t>(row.size()));
      v.step = v.t - 1;
      v.steps = opt_.length;
      for (const auto& row : so_far) v.texts.push_back(decode(row));
      on_step(v);
    };
  }
  auto spans = ar_generate_batch(*decoder_, ids, opt_.length, tok_->eos_id(), opt_.top_p, opt_.temperature, *rng_, tick);
  for (auto& s : spans) s = cut_at(s, tok_->eos_id(), tok_->pad_id());
  return results(prompts, spans, now_s() - t0, /*steps=*/-1);
}

std::vector<std::vector<int64_t>> Generator::encode(const std::vector<GenerationPrompt>& prompts) const {
  std::vector<std::vector<int64_t>> ids;
  for (const auto& p : prompts) {
    if (p.prompt.user.empty()) throw Error("empty prompt");
    std::vector<int32_t> e;
    if (opt_.raw) {
      if (tok_->bos_id() >= 0) e.push_back(tok_->bos_id());
      auto text = tok_->encode(p.prompt.user);
      e.insert(e.end(), text.begin(), text.end());
    } else {
      e = data::encode_prompt(*tok_, p.prompt);
    }
    if (static_cast<int64_t>(e.size()) + opt_.length > max_positions_)
      throw Error(fmt::format("the prompt{} has {} tokens: with --length {} that is {} positions, more than the "
                              "model's {} (max_position_embeddings)",
                              p.line > 0 ? fmt::format(" of line {}", p.line) : "", e.size(), opt_.length,
                              static_cast<int64_t>(e.size()) + opt_.length, max_positions_));
    ids.emplace_back(e.begin(), e.end());
  }
  return ids;
}

std::vector<Generation> Generator::results(const std::vector<GenerationPrompt>& prompts,
                                           const std::vector<std::vector<int64_t>>& spans, double seconds,
                                           int64_t steps) const {
  std::vector<Generation> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    Generation g;
    g.prompt = prompts[i].prompt.user;
    g.tokens = spans[i];
    g.output = decode(spans[i]);
    g.steps = steps >= 0 ? steps : static_cast<int64_t>(spans[i].size());
    g.seconds = seconds;
    g.task = prompts[i].task;
    g.answer = prompts[i].answer;
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace tess::eval
