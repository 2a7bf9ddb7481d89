#pragma once
// Text generation from a model directory (`tess generate`): chat-templated
// prompts (data::encode_prompt), a span of `length` tokens filled by the
// diffusion sampler (diffusion::Sampler), or, with `ar`, a causal LM decoding
// one token at a time with a KV cache. Every draw comes from one
// util::Rng("generate", seed): the same seed gives the same text.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json_fwd.hpp>

#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/guidance.h"
#include "core/diffusion/sampler.h"
#include "core/model/reward_model.h"
#include "core/util/cpu_allocator.h"
#include "data/chat.h"

namespace tess::data {
class Tokenizer;
}
namespace tess::util {
class Rng;
}
namespace tess::diffusion {
class RewardGuidance;
}

namespace tess::eval {

struct GenerateOptions {
  int64_t steps = 100;       // diffusion denoising steps
  int64_t length = 256;      // span length (diffusion) / max new tokens (AR)
  double top_p = 0.99;       // 0 = argmax
  double temperature = 1.0;
  uint64_t seed = 0;         // seeds the "generate" stream
  int64_t batch_size = 1;    // prompts per sampler call (AR: per batched decode)
  bool ar = false;           // causal LM with KV cache instead of diffusion
  // Reward guidance (diffusion only): a reward-model directory with the same
  // tokenizer, and the ascent step size (0 = off).
  std::filesystem::path reward_model;
  double guidance_scale = 0;
  // Where the reward is read (eval.guidance_read): the reference's last
  // position, or the first predicted EOS.
  diffusion::RewardRead guidance_read = diffusion::RewardRead::Last;
  // Large CPU tensors from util::CachingCpuAllocatorScope (run.cpu_allocator):
  // every denoising step allocates the same [span, V] tensors, which malloc
  // would map and fault in afresh each time.
  bool cpu_cache = true;
  // Where the models run: auto (CUDA device 0 when LibTorch sees one), cpu,
  // cuda or cuda:N. Tokens are chosen on the host either way.
  std::string device = "auto";
  // Adaptive stopping and freezing (sample.*, diffusion only): each prompt then draws from
  // its own stream ("generate.prompt.<n>", n counting the prompts this
  // generator answered), so its answer does not depend on its batch.
  diffusion::StopRule stop;
  // The approximate prompt cache (sample.cache_refresh, diffusion only): a
  // full pass every `cache_refresh` steps, span-only passes between; 0 = off.
  int64_t cache_refresh = 0;
  // Every prompt draws from a fresh Rng(seed, "generate"), as if it were the
  // only one (sample.seed_per_prompt; `tess serve` answers a request with a
  // seed this way): its answer does not depend on its place or batch.
  bool seed_per_prompt = false;
  // Plain text continuation: the prompt is <s> + its text, without the chat
  // template (a base or stage-1 model continues text; paper Table 1 style).
  bool raw = false;
};

// One prompt to answer, with what is copied through to the JSONL output.
struct GenerationPrompt {
  data::ChatPrompt prompt;  // prompt.user is the text shown/written as "prompt"
  std::string task;         // copied through when not empty
  std::string answer;       // reference answer; copied through when not empty
  int64_t line = 0;         // line in the input file (0: from --prompt)
};

struct Generation {
  std::string prompt;
  std::string output;
  std::vector<int64_t> tokens;  // generated ids, cut before EOS/PAD
  int64_t steps = 0;            // denoising steps (diffusion) or decoded tokens (AR)
  int64_t frozen = 0;           // span positions frozen (sample.freeze)
  double seconds = 0;           // wall time of its batch, shared by the batch's prompts
  std::string task, answer;
};

// {"prompt", "output", "steps", "seconds"} (+ "task", "answer" when set).
nlohmann::json generation_json(const Generation& g);

// Reads `{"prompt": ...}` lines or chat `messages` records (data::read_eval_records).
// A missing or empty file and a bad line (file:line) are tess::Error.
std::vector<GenerationPrompt> read_prompts(const std::filesystem::path& file);

// What a step observer sees: the decoded span of every row of the batch at
// one denoising step (AR: after each new token).
struct StepView {
  int64_t step = 0;   // 0-based
  int64_t steps = 0;  // total
  int64_t t = 0;      // diffusion time index (N-1 .. 0); AR: tokens so far
  std::vector<std::string> texts;
};
using StepObserver = std::function<void(const StepView&)>;

// Draws StepViews: ANSI redraw in place on a terminal (one line per row,
// cursor up to redraw), plain "step 3/8 t=5: text" lines otherwise.
class StepPrinter {
 public:
  StepPrinter(std::FILE* out, bool tty, int64_t max_width = 0);  // 0: terminal width or 100
  void operator()(const StepView& view);
  void end_batch();  // leaves the last redraw on screen

 private:
  std::FILE* out_;
  bool tty_;
  int64_t width_;
  int64_t drawn_lines_ = 0;
};

class Generator {
 public:
  // Loads the model (diffusion or, with options.ar, causal) and the tokenizer
  // of `model_dir`; checks that they belong together.
  Generator(const std::filesystem::path& model_dir, GenerateOptions options);
  ~Generator();

  // Answers `prompts` in batches of options.batch_size, drawing from the
  // generator's own "generate" stream (consecutive calls continue it).
  // `on_batch` is called after each batch with the new results.
  std::vector<Generation> generate(const std::vector<GenerationPrompt>& prompts, const StepObserver& on_step = {},
                                   const std::function<void(const std::vector<Generation>&)>& on_batch = {});

  const data::Tokenizer& tokenizer() const { return *tok_; }
  const GenerateOptions& options() const { return opt_; }

  // Fills the spans marked `<span:N>` (N tokens each) inside `text` (paper
  // Table 1 style): <s>, then the text's pieces encoded one by one around the
  // spans, every span denoised together (diffusion models only). The output
  // is the whole text with the spans filled; `tokens` are the spans' tokens.
  Generation infill(const std::string& text, const StepObserver& on_step = {});
  // Diffusion model passes run so far: full ones and span-only ones (prompt cache).
  const diffusion::PassCount& passes() const { return passes_; }

 private:
  std::vector<Generation> diffusion_batch(const std::vector<GenerationPrompt>& prompts, const StepObserver& on_step);
  std::vector<Generation> ar_batch(const std::vector<GenerationPrompt>& prompts, const StepObserver& on_step);
  diffusion::SamplerOptions sampler_options() const;  // GenerateOptions + the model's noise settings
  // The stream of the n-th prompt answered: "generate.prompt.<n>", or "generate" with seed_per_prompt.
  util::Rng prompt_stream(int64_t n) const;
  // Reward guidance (when loaded) and model vocabulary rows beyond the tokenizer's never chosen.
  diffusion::GuidanceHook guidance_hook(const diffusion::SampleBatch& rows) const;
  // The prompts' chat-templated ids (an empty prompt, or one that with the
  // span exceeds the model's positions, is an error).
  std::vector<std::vector<int64_t>> encode(const std::vector<GenerationPrompt>& prompts) const;
  // One Generation per prompt from its generated ids (already cut at EOS/PAD);
  // `steps` < 0: the number of generated tokens (AR).
  std::vector<Generation> results(const std::vector<GenerationPrompt>& prompts,
                                  const std::vector<std::vector<int64_t>>& spans, double seconds, int64_t steps) const;
  std::string decode(const std::vector<int64_t>& ids) const;

  std::optional<util::CachingCpuAllocatorScope> cpu_cache_;  // first: destroyed after the models
  GenerateOptions opt_;
  std::unique_ptr<data::Tokenizer> tok_;
  diffusion::DiffusionLM lm_{nullptr};
  model::Decoder decoder_{nullptr};  // AR
  std::unique_ptr<util::Rng> rng_;
  c10::Device device_{c10::kCPU};
  int64_t prompts_answered_ = 0;
  diffusion::PassCount passes_;
  int64_t max_positions_ = 0;  // the model's max_position_embeddings
  model::RewardModel reward_model_{nullptr};
  std::unique_ptr<diffusion::RewardGuidance> guidance_;
};

// Generated ids up to (not including) the first `eos` or `pad` (-1: none).
std::vector<int64_t> cut_at(const std::vector<int64_t>& ids, int64_t eos, int64_t pad);
// The text of generated ids; ids beyond the tokenizer (the untrained tail of
// a padded vocabulary, never chosen by the samplers) are dropped.
std::string decode_generated(const data::Tokenizer& tok, const std::vector<int64_t>& ids);

// A diffusion model directory loaded for sampling (on `device`, eval mode);
// an AR directory is a tess::Error saying why it would print garbage.
diffusion::DiffusionLM load_sampling_lm(const std::filesystem::path& dir, c10::Device device);
// The tokenizer of `dir` fits its model (no more tokens than vocabulary rows)
// and has an EOS token (answers end there); tess::Error otherwise.
void check_tokenizer_fits(const data::Tokenizer& tok, const model::ModelConfig& config,
                          const std::filesystem::path& dir);
// The reward model in `rm_dir` for guiding samples of `model_dir` (fp32, on
// `device`): the same tokenizer and vocabulary, else tess::Error.
model::RewardModel load_guidance_model(const data::Tokenizer& tok, const std::filesystem::path& model_dir,
                                       int64_t vocab, const std::filesystem::path& rm_dir, c10::Device device);

// The device of a --device setting: auto (CUDA device 0 when LibTorch sees
// one), cpu, cuda or cuda:N; an unknown or unavailable device is an error.
c10::Device generation_device(const std::string& setting);

// Checks that the reward model in `rm_dir` reads text with the same ids as
// `tok` (same tokenizer content hash); a tess::Error names both directories.
void check_same_tokenizer(const data::Tokenizer& tok, const std::filesystem::path& model_dir,
                          const std::filesystem::path& rm_dir);


// Autoregressive decoding of one prompt: prefill, then one token at a time
// with a KV cache; stops after EOS (not included) or `max_new` tokens.
// `on_token(n, ids)` sees the ids generated so far.
std::vector<int64_t> ar_generate(model::DecoderImpl& decoder, const std::vector<int64_t>& prompt, int64_t max_new,
                                 int64_t eos_id, double top_p, double temperature, util::Rng& rng,
                                 const std::function<void(const std::vector<int64_t>&)>& on_token = {});
// The same for several prompts at once: right-padded to the longest, pads
// masked out of attention, each row's positions its own; one batched forward
// per token until every row has met EOS or `max_new`. Row r's draws depend on
// the batch (one uniform per row per step), so the same seed gives the same
// text for the same batches. With a sliding window shorter than the longest
// prompt plus `max_new`, prompts of different lengths are decoded one at a
// time instead (the window counts columns, and padding would shift it).
// `on_tokens` sees every row's ids so far after each step.
std::vector<std::vector<int64_t>> ar_generate_batch(
    model::DecoderImpl& decoder, const std::vector<std::vector<int64_t>>& prompts, int64_t max_new, int64_t eos_id,
    double top_p, double temperature, util::Rng& rng,
    const std::function<void(const std::vector<std::vector<int64_t>>&)>& on_tokens = {});
// The same by a full forward over the whole sequence per token (no cache);
// the reference the cached version is tested against.
std::vector<int64_t> ar_generate_uncached(model::DecoderImpl& decoder, const std::vector<int64_t>& prompt,
                                          int64_t max_new, int64_t eos_id, double top_p, double temperature,
                                          util::Rng& rng);

}  // namespace tess::eval
