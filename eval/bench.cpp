#include "eval/bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <thread>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/deferred_copy.h"
#include "core/config/choices.h"
#include "core/config/config.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/sampler.h"
#include "core/dist/dist.h"
#include "core/model/decoder.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/lm_head_loss.h"
#include "core/model/safetensors.h"
#include "core/util/cpu.h"
#include "core/util/cpu_allocator.h"
#include "core/util/autocast.h"
#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/log.h"
#include "core/util/rng.h"
#include "core/util/tensor_memory.h"
#include "data/loader.h"
#include "data/masking.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"
#include "eval/generate.h"
#include "train/adamw.h"
#include "train/checkpoint_saver.h"
#include "train/gradient_reducer.h"
#include "train/plan.h"
#include "train/trainer.h"

#ifndef TESS_BENCH_EAGER_SCRIPT
#define TESS_BENCH_EAGER_SCRIPT "eval/bench_eager.py"
#endif

namespace tess::eval::bench {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void apply_threads(const BenchOptions& opt) {
  if (opt.threads > 0) torch::set_num_threads(opt.threads);
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

fs::path exe_of(const BenchOptions& opt) { return opt.exe.empty() ? fs::read_symlink("/proc/self/exe") : opt.exe; }

// Runs a command line; returns its stdout (stderr passes through) or throws
// naming the command and its exit status.
std::string run_child(const std::string& cmd, const std::string& what) {
  std::fflush(stdout);
  std::fflush(stderr);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw Error(fmt::format("{}: cannot start `{}`", what, cmd));
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (status != 0)
    throw Error(fmt::format("{}: `{}` failed (status {}){}", what, cmd, WIFEXITED(status) ? WEXITSTATUS(status) : status,
                            out.empty() ? "" : ": " + out.substr(0, 500)));
  return out;
}

json parse_child_json(const std::string& out, const std::string& what) {
  // The JSON object is the last thing the child prints.
  auto start = out.find('{');
  if (start == std::string::npos) throw Error(fmt::format("{}: printed no JSON: {}", what, out.substr(0, 300)));
  try {
    return json::parse(out.substr(start));
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: printed invalid JSON ({}): {}", what, e.what(), out.substr(0, 300)));
  }
}

std::string common_flags(const BenchOptions& opt) {
  std::string s;
  if (opt.smoke) s += " --smoke";
  if (opt.threads > 0) s += fmt::format(" --threads {}", opt.threads);
  if (opt.cpu_allocator != "caching") s += fmt::format(" --cpu-allocator {}", opt.cpu_allocator);
  return s;
}

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    std::string tmpl = (fs::temp_directory_path() / ("tess-bench-" + tag + "-XXXXXX")).string();
    if (!mkdtemp(tmpl.data())) throw Error(fmt::format("cannot create a temporary directory {}", tmpl));
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

model::ModelConfig shape(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv,
                         int64_t max_pos) {
  model::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv;
  c.max_position_embeddings = max_pos;
  c.validate("bench preset");
  return c;
}

std::vector<train::NamedParameter> named(torch::nn::Module& m) {
  std::vector<train::NamedParameter> out;
  for (auto& p : m.named_parameters()) out.push_back({p.key(), p.value(), train::AdamW::default_decay(p.key(), false)});
  return out;
}

// A token dataset of random documents written as `tess tokenize corpus` would.
void write_token_dataset(const fs::path& dir, int64_t tokens, int32_t vocab, const std::string& tokenizer_hash,
                         uint64_t seed) {
  fs::create_directories(dir / "train");
  fs::create_directories(dir / "validation");
  util::Rng rng(seed, "bench.dataset");
  std::vector<uint16_t> data(static_cast<size_t>(tokens));
  for (auto& t : data) t = static_cast<uint16_t>(3 + rng.uniform_int(0, vocab - 4));
  std::vector<int64_t> offsets{0};
  while (offsets.back() < tokens) offsets.push_back(std::min(tokens, offsets.back() + rng.uniform_int(64, 2048)));
  auto write = [&](const std::string& rel, const void* p, size_t bytes) {
    std::ofstream f(dir / rel, std::ios::binary);
    f.write(static_cast<const char*>(p), static_cast<std::streamsize>(bytes));
    if (!f) throw Error(fmt::format("cannot write {}", (dir / rel).string()));
    return static_cast<int64_t>(bytes);
  };
  data::DatasetMeta m;
  m.tokenizer_kind = "sentencepiece";
  m.tokenizer_hash = tokenizer_hash;
  m.vocab_size = vocab;
  m.bos_id = 1;
  m.eos_id = 2;
  m.dtype = "uint16";
  m.shard_tokens = tokens;
  m.doc_split = "blank-line";
  m.train.documents = static_cast<int64_t>(offsets.size()) - 1;
  m.train.tokens = tokens;
  m.train.index = {"train/docs.bin", 0, write("train/docs.bin", offsets.data(), offsets.size() * 8), ""};
  m.train.shards.push_back({"train/shard-00000.bin", tokens, write("train/shard-00000.bin", data.data(), data.size() * 2), ""});
  int64_t zero = 0;
  m.validation.index = {"validation/docs.bin", 0, write("validation/docs.bin", &zero, 8), ""};
  std::ofstream(dir / data::kTokenDatasetMetaFile) << m.to_json();
}

double best_gflops(const torch::Tensor& a, const torch::Tensor& b, int warmup, int reps) {
  auto out = torch::empty({a.size(0), b.size(1)}, a.options());
  for (int i = 0; i < warmup; ++i) torch::mm_out(out, a, b);
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    torch::mm_out(out, a, b);
    best = std::min(best, since(t0));
  }
  return 2.0 * static_cast<double>(a.size(0)) * a.size(1) * b.size(1) / best / 1e9;
}

}  // namespace

// ---- FLOPs ---------------------------------------------------------------------------

TrainStage parse_train_stage(const std::string& name) {
  if (name == "ar") return TrainStage::Ar;
  if (name == "adaptation") return TrainStage::Adaptation;
  if (name == "instruction") return TrainStage::Instruction;
  throw Error(fmt::format("unknown training stage '{}' (ar, adaptation, instruction)", name));
}

const char* train_stage_name(TrainStage s) {
  switch (s) {
    case TrainStage::Ar: return "ar";
    case TrainStage::Adaptation: return "adaptation";
    case TrainStage::Instruction: return "instruction";
  }
  return "?";
}

int64_t layer_matmul_parameters(const model::ModelConfig& c) {
  int64_t h = c.hidden_size, hd = c.resolved_head_dim();
  int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  int64_t attn = h * q + 2 * h * kv + q * h;
  int64_t mlp = 3 * h * c.intermediate_size;
  return c.num_hidden_layers * (attn + mlp);
}

StepFlops train_step_flops(const model::ModelConfig& c, TrainStage stage, int64_t batch, int64_t seq_len,
                           int64_t span_tokens, double self_condition_rate) {
  const double n_layers = static_cast<double>(layer_matmul_parameters(c));
  const double vh = static_cast<double>(c.vocab_size) * c.hidden_size;
  const double att_width = static_cast<double>(c.num_attention_heads) * c.resolved_head_dim();
  StepFlops f;
  if (stage == TrainStage::Ar) {
    // The model reads L - 1 tokens per row and predicts each next one.
    double tokens = static_cast<double>(batch) * (seq_len - 1);
    f.body = 6 * n_layers * tokens;
    f.attention = 12.0 * c.num_hidden_layers * att_width * (seq_len - 1) * tokens;
    f.lm_head = 6 * vh * tokens;
    return f;
  }
  double tokens = static_cast<double>(batch) * seq_len;
  double span = static_cast<double>(span_tokens);
  f.body = 6 * n_layers * tokens;
  f.attention = 12.0 * c.num_hidden_layers * att_width * seq_len * tokens;
  f.lm_head = 6 * vh * span;
  f.input_projection = 2 * vh * span;
  double forward = 2 * n_layers * tokens + 4.0 * c.num_hidden_layers * att_width * seq_len * tokens + 2 * vh * span +
                   2 * vh * span;
  f.self_condition = self_condition_rate * forward;
  return f;
}

// ---- presets --------------------------------------------------------------------------

const std::vector<std::string>& train_preset_names() {
  static const std::vector<std::string> names{"tiny", "small", "medium"};
  return names;
}

TrainPreset train_preset(const std::string& name, bool smoke) {
  TrainPreset p;
  p.name = name;
  if (name == "tiny") {
    p.model = model::ModelConfig::preset("tiny");
    p.batch = 8;
    p.seq_len = 128;
  } else if (name == "small") {
    p.model = shape(8192, 256, 688, 4, 4, 4, 2048);
    p.batch = 8;
    p.seq_len = 256;
  } else if (name == "medium") {
    p.model = shape(32000, 512, 1376, 8, 8, 8, 2048);
    p.batch = 4;
    p.seq_len = 512;
  } else {
    throw Error(fmt::format("unknown bench preset '{}' (tiny, small, medium)", name));
  }
  if (smoke) {
    p.batch = 2;
    p.seq_len = std::min<int64_t>(p.seq_len, 32);
  }
  return p;
}

std::string TrainCase::id() const { return fmt::format("{}/{}/{}", preset, train_stage_name(stage), precision); }

TrainCase TrainCase::parse(const std::string& id) {
  auto a = id.find('/'), b = id.rfind('/');
  if (a == std::string::npos || a == b)
    throw Error(fmt::format("--case '{}': expected PRESET/STAGE/PRECISION, e.g. small/adaptation/fp32", id));
  TrainCase c;
  c.preset = id.substr(0, a);
  train_preset(c.preset, true);  // validates the name
  c.stage = parse_train_stage(id.substr(a + 1, b - a - 1));
  c.precision = id.substr(b + 1);
  if (c.precision != "fp32" && c.precision != "bf16")
    throw Error(fmt::format("--case '{}': precision must be fp32 or bf16", id));
  return c;
}

// ---- machine --------------------------------------------------------------------------

// Resident memory now (VmRSS): the process before the case allocates its model.
int64_t resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

int64_t peak_resident_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmHWM:  1234 kB"
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

json machine_json(const BenchOptions& opt) {
  apply_threads(opt);
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::string cpu;
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  return {{"cpu", cpu},
          {"cores", std::thread::hardware_concurrency()},
          {"torch_threads", torch::get_num_threads()},
          {"load_average", {load[0], load[1], load[2]}},
          {"smoke", opt.smoke}};
}

// ---- peak -----------------------------------------------------------------------------

namespace {

// Square mm of each size, best of `reps` after `warmup`: {"gflops": best, "by_size": [...]}.
json matmul_peak(torch::ScalarType dtype, bool smoke) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> sizes = smoke ? std::vector<int64_t>{64, 128} : std::vector<int64_t>{256, 512, 1024, 2048};
  int warmup = smoke ? 1 : 2, reps = smoke ? 2 : 5;
  json by_size = json::array();
  double best = 0;
  for (int64_t n : sizes) {
    auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
    double g = best_gflops(a, b, warmup, reps);
    by_size.push_back({{"n", n}, {"gflops", g}});
    best = std::max(best, g);
  }
  return {{"gflops", best}, {"by_size", by_size}};
}

}  // namespace

json bench_peak(const BenchOptions& opt) {
  apply_threads(opt);
  int warmup = opt.smoke ? 1 : 2, reps = opt.smoke ? 2 : 5;
  return {{"threads", torch::get_num_threads()},
          {"method", fmt::format("square mm, best of {} after {} warm-up", reps, warmup)},
          {"fp32", matmul_peak(torch::kFloat32, opt.smoke)},
          {"bf16", matmul_peak(torch::kBFloat16, opt.smoke)}};
}

// ---- train ----------------------------------------------------------------------------

json bench_train_case(const TrainCase& c, const BenchOptions& opt, double peak_fp32, double peak_bf16) {
  apply_threads(opt);
  // A case run alone measures the peak of its own precision in full (the
  // other one only at smoke sizes: it is not its MFU's denominator, and
  // emulated bf16 at full sizes takes minutes).
  if (peak_fp32 <= 0) peak_fp32 = matmul_peak(torch::kFloat32, opt.smoke || c.precision != "fp32")["gflops"].get<double>();
  if (peak_bf16 <= 0) peak_bf16 = matmul_peak(torch::kBFloat16, opt.smoke || c.precision != "bf16")["gflops"].get<double>();
  auto preset = train_preset(c.preset, opt.smoke);
  const auto& mc = preset.model;
  const int64_t B = preset.batch, L = preset.seq_len, V = mc.vocab_size;
  const bool diffusion = c.stage != TrainStage::Ar;
  const bool bf16 = c.precision == "bf16";

  const int64_t baseline_rss = resident_bytes();  // LibTorch, thread pools, the peak probe
  // The trainer's CPU allocator (run.cpu_allocator), under the counting one.
  std::optional<util::CachingCpuAllocatorScope> cpu_cache;
  if (opt.cpu_allocator == "caching") cpu_cache.emplace();
  // Totals over the case, and over its timed steps (the steady state).
  const auto cache_start = util::CachingCpuAllocatorScope::stats();
  util::CpuCacheStats cache_timed_start, cache_timed_end;
  // Every tensor of the case from here on is counted: the peak of their bytes
  // against `tess plan` tells the plan's error from the allocator's slack.
  util::TensorMemoryScope tensor_memory;
  model::Decoder decoder(mc, 0);
  diffusion::DiffusionLM lm{nullptr};
  torch::nn::Module* module = decoder.get();
  if (diffusion) {
    lm = diffusion::DiffusionLM(decoder, diffusion::SelfCondition::LogitsMean, false, 0);
    lm->decoder->mutable_config().attention = model::Attention::Bidirectional;
    module = lm.get();
  }
  auto params = named(*module);
  train::AdamW adam(params, {0.9, 0.999, 1e-8, 0.0});
  int64_t n_params = 0;
  for (auto& p : params) n_params += p.tensor.numel();

  util::Rng data_rng(0, "bench.data"), noise_rng(0, "bench.noise");
  data::SpanMasker masker;
  diffusion::NoiseScheduler scheduler(diffusion::Schedule::CosineImproved, 5000);
  const int64_t T = scheduler.timesteps();
  const double k = 5.0;
  auto abar_table = torch::tensor(scheduler.abar(), torch::kFloat64);

  // Even: half the steps self-condition. 8 timed steps, as 4 pairs of one
  // step of each kind, so that the report can show how far the pairs spread
  // (this shared VM drifts 10-20% between minutes).
  const int warmup = opt.smoke ? 1 : 2, steps = opt.smoke ? 2 : 8;
  // Adaptation fp32 cases then run `compare_steps` more: pairs of a plain
  // step and a step with an asynchronous checkpoint (the trainer's
  // CheckpointSaver, deferred copies of weights and moments) started at its
  // beginning, each pair once with and once without self-conditioning. The
  // save's cost is the difference within the pairs: interleaving keeps this
  // VM's drift (10-20% between minutes) out of it.
  const int compare_steps = c.stage == TrainStage::Adaptation && !bf16 ? 4 * (opt.smoke ? 1 : 2) : 0;
  struct Phases {
    double data = 0, noise = 0, forward = 0, self_condition = 0, backward = 0, optimizer = 0;
  } ph;
  int64_t span_total = 0, sc_steps = 0;
  torch::Tensor last_ids, last_mask;
  std::vector<double> step_times;
  std::optional<ScratchDir> save_dir;
  dist::Dist single_process;
  std::unique_ptr<train::CheckpointSaver> saver;
  double save_step_total = 0, plain_step_total = 0, copy_wait = 0, writer_after = 0;
  int64_t snapshot_bytes = 0;
  int64_t training_peak_rss = 0, training_peak_tensors = 0;

  for (int i = 0; i < warmup + steps + compare_steps; ++i) {
    const int j = i - warmup - steps;  // index among the comparison steps
    const bool comparing = j >= 0, saving = comparing && j % 2 == 1;
    const bool self_condition = comparing ? (j / 2) % 2 == 0 : i % 2 == 0;
    bool measured = i >= warmup && !comparing;
    if (j == 0) {  // before the save buffers exist
      training_peak_rss = peak_resident_bytes();
      training_peak_tensors = tensor_memory.peak();
      cache_timed_end = util::CachingCpuAllocatorScope::stats();
    }
    if (i == warmup) cache_timed_start = util::CachingCpuAllocatorScope::stats();
    Phases s;
    auto step_start = Clock::now();
    if (saving) {
      if (!saver) {
        save_dir.emplace("save");
        saver = std::make_unique<train::CheckpointSaver>(save_dir->path(), single_process, 1, /*asynchronous=*/true,
                                                         600.0);
      }
      train::CheckpointSnapshot snap;
      snap.step = i;
      snap.copies = std::make_shared<checkpoint::DeferredCopies>();
      snap.rank_tensors = adam.state();
      snap.copies->take_all(snap.rank_tensors);
      auto image = diffusion ? diffusion::diffusion_lm_image(*lm) : model::hf_model_image(*decoder);
      snap.copies->take_all(image.tensors);
      snap.write_model = [image = std::move(image)](const fs::path& dir) { image.write(dir); };
      snap.manifest.step = i;
      snap.manifest.stage = train_stage_name(c.stage);
      snapshot_bytes = snap.copies->bytes();
      saver->save(std::move(snap));
    }
    auto t0 = Clock::now();
    auto ids = torch::randint(3, V, {B, L}, data_rng.generator(), torch::kInt64);
    torch::Tensor mask;
    if (c.stage == TrainStage::Ar) mask = torch::ones({B, L}, torch::kBool);
    else if (c.stage == TrainStage::Adaptation) mask = data::to_tensor(masker.train_batch(B, L, data_rng));
    else mask = data::to_tensor(data::SpanMasker::eval_batch(B, L));
    s.data = since(t0);
    last_ids = ids;
    last_mask = mask;

    torch::Tensor loss;
    if (!diffusion) {
      t0 = Clock::now();
      util::AutocastScope autocast(bf16, at::kCPU);
      model::ForwardOptions fo;
      fo.attention = model::Attention::Causal;
      // ArStage::loss
      auto hidden = decoder->hidden_states(decoder->embed(ids.narrow(1, 0, L - 1)), fo);
      auto targets = ids.narrow(1, 1, L - 1).reshape(-1);
      loss = model::lm_head_cross_entropy(hidden.reshape({-1, hidden.size(2)}), decoder->lm_head_weight(), targets,
                                          torch::ones({targets.size(0)})) /
             static_cast<double>(targets.size(0));
      s.forward = since(t0);
    } else {
      // DiffusionLoss::operator() step by step, with the noise of each chunk timed.
      auto span = diffusion::SpanIndex::from_mask(mask);
      auto labels = ids.reshape(-1).index_select(0, span.flat);
      auto t = scheduler.sample_timesteps(B, noise_rng);
      auto noise_state = noise_rng.state();
      double noise_s = 0;
      auto rows_at = [&](const torch::Tensor& tt) -> diffusion::RowSource {
        auto abar = abar_table.index_select(0, tt.index_select(0, span.batch)).to(torch::kFloat32);
        return [&, abar](int64_t start, int64_t count) {
          auto n0 = Clock::now();
          auto z = diffusion::gaussian_rows(noise_rng, count, V);
          auto x = diffusion::noisy_simplex_rows(labels.narrow(0, start, count), abar.narrow(0, start, count), z, k);
          noise_s += since(n0);
          return x;
        };
      };
      util::AutocastScope autocast(bf16, at::kCPU);
      torch::Tensor prev;
      if (self_condition) {
        t0 = Clock::now();
        torch::NoGradGuard no_grad;
        auto t_prev = (t + 1).clamp_max(T - 1);
        diffusion::DiffusionInputs first{ids, mask, t_prev.to(torch::kFloat32) / static_cast<float>(T), {}};
        prev = lm->predictor_states(first, span, rows_at(t_prev)).detach();
        noise_rng.set_state(noise_state);
        s.self_condition = since(t0) - noise_s;
        s.noise += noise_s;
        noise_s = 0;
        if (measured) ++sc_steps;
      }
      t0 = Clock::now();
      diffusion::DiffusionInputs in{ids, mask, t.to(torch::kFloat32) / static_cast<float>(T), {}};
      auto sum = lm->span_loss(in, span, rows_at(t), labels, prev);
      auto count = (span.pos > 0).sum().item<int64_t>();
      loss = sum / static_cast<double>(std::max<int64_t>(count, 1));
      s.forward = since(t0) - noise_s;
      s.noise += noise_s;
      if (measured) span_total += span.rows;
    }
    t0 = Clock::now();
    loss.backward();
    s.backward = since(t0);
    if (saving) {
      t0 = Clock::now();
      saver->wait_copied();  // as the trainer does before its optimizer step
      copy_wait += since(t0);
    }
    t0 = Clock::now();
    adam.step(1e-5);
    adam.zero_grad();
    s.optimizer = since(t0);
    if (!std::isfinite(loss.item<double>())) throw Error(fmt::format("bench case {}: the loss is not finite", c.id()));
    if (comparing && !saving) plain_step_total += since(step_start);
    if (saving) {
      save_step_total += since(step_start);
      t0 = Clock::now();
      saver->wait();  // the writer's remaining work: not on the training path (saves are hundreds of steps apart)
      writer_after += since(t0);
    }
    if (measured) {
      step_times.push_back(since(step_start));
      ph.data += s.data, ph.noise += s.noise, ph.forward += s.forward, ph.self_condition += s.self_condition;
      ph.backward += s.backward, ph.optimizer += s.optimizer;
    }
  }

  // The vocabulary-space input path alone (noise, softmax, self-conditioning
  // mix, projection through E) on the last batch's span rows, no autograd.
  double input_path = 0;
  if (diffusion) {
    torch::NoGradGuard no_grad;
    auto span = diffusion::SpanIndex::from_mask(last_mask);
    auto labels = last_ids.reshape(-1).index_select(0, span.flat);
    auto e = lm->decoder->embedding_weight().detach();
    auto abar = torch::full({span.rows}, 0.5f);
    auto t0 = Clock::now();
    for (int64_t start = 0; start < span.rows; start += diffusion::DiffusionLMImpl::kRowChunk) {
      int64_t count = std::min(diffusion::DiffusionLMImpl::kRowChunk, span.rows - start);
      auto z = diffusion::gaussian_rows(noise_rng, count, V);
      auto x = diffusion::noisy_simplex_rows(labels.narrow(0, start, count), abar.narrow(0, start, count), z, k);
      auto p = (torch::softmax(x, -1) + 1.0 / static_cast<double>(V)) * 0.5;
      auto y = torch::matmul(bf16 ? p.to(torch::kBFloat16) : p, bf16 ? e.to(torch::kBFloat16) : e);
    }
    input_path = since(t0);
  }

  double step_s = std::accumulate(step_times.begin(), step_times.end(), 0.0) / steps;
  std::vector<double> pairs;  // consecutive steps: one with, one without self-conditioning
  for (size_t p = 0; p + 1 < step_times.size(); p += 2) pairs.push_back((step_times[p] + step_times[p + 1]) / 2);
  auto [pair_min, pair_max] = std::minmax_element(pairs.begin(), pairs.end());
  double rate = diffusion ? static_cast<double>(sc_steps) / steps : 0.0;
  int64_t span_avg = diffusion ? span_total / steps : 0;
  auto flops = train_step_flops(mc, c.stage, B, L, span_avg, rate);
  double peak = bf16 ? peak_bf16 : peak_fp32;
  double achieved = flops.total() / step_s / 1e9;
  auto per = [&](double v) { return v / steps; };
  json j = {
      {"case", c.id()},
      {"preset", c.preset},
      {"stage", train_stage_name(c.stage)},
      {"precision", c.precision},
      {"model", {{"hidden", mc.hidden_size}, {"layers", mc.num_hidden_layers}, {"heads", mc.num_attention_heads},
                 {"kv_heads", mc.num_key_value_heads}, {"intermediate", mc.intermediate_size}, {"vocab", V},
                 {"parameters", n_params}}},
      {"batch", B},
      {"seq_len", L},
      {"span_tokens", span_avg},
      {"self_condition_rate", rate},
      {"threads", torch::get_num_threads()},
      {"steps", steps},
      {"warmup", warmup},
      {"step_s", step_s},
      {"step_times_s", step_times},
      // (slowest pair - fastest pair) / mean: how much the machine moved during the case.
      {"pair_spread", (*pair_max - *pair_min) / step_s},
      {"tokens_per_s", static_cast<double>(B * L) / step_s},
      {"breakdown_s",
       {{"data", per(ph.data)}, {"noise", per(ph.noise)}, {"forward", per(ph.forward)},
        {"self_condition", per(ph.self_condition)}, {"backward", per(ph.backward)}, {"optimizer", per(ph.optimizer)}}},
      {"input_path_s", input_path},
      {"flops_per_step",
       {{"body", flops.body}, {"attention", flops.attention}, {"lm_head", flops.lm_head},
        {"input_projection", flops.input_projection}, {"self_condition", flops.self_condition}, {"total", flops.total()}}},
      {"achieved_gflops", achieved},
      {"peak_gflops", peak},
      {"peak_precision", bf16 ? "bf16" : "fp32"},
      {"mfu", achieved / peak},
      {"peak_rss_bytes", compare_steps > 0 ? training_peak_rss : peak_resident_bytes()},
      // fp32 weights, gradients and two AdamW moments: the floor of any estimate.
      {"state_bytes", 16 * n_params},
  };
  if (cpu_cache) {
    auto cs = util::CachingCpuAllocatorScope::stats();
    if (compare_steps == 0) cache_timed_end = cs;
    j["cpu_allocator"] = {{"kind", "caching"},
                          {"hits", cs.hits - cache_start.hits},
                          {"misses", cs.misses - cache_start.misses},
                          {"released", cs.released - cache_start.released},
                          {"timed_step_hits", static_cast<double>(cache_timed_end.hits - cache_timed_start.hits) / steps},
                          {"timed_step_misses",
                           static_cast<double>(cache_timed_end.misses - cache_timed_start.misses) / steps},
                          {"high_water_bytes", cs.high_water}};
  } else {
    j["cpu_allocator"] = {{"kind", "system"}};
  }
  if (compare_steps > 0) {
    const int n = compare_steps / 2;
    double with_save = save_step_total / n, without = plain_step_total / n;
    j["save_in_flight"] = {
        {"pairs", n},
        {"snapshot_bytes", snapshot_bytes},
        {"step_s", with_save},
        {"plain_step_s", without},
        {"stall_s", with_save - without},
        {"stall_in_steps", (with_save - without) / without},
        {"copy_wait_s", copy_wait / n},
        {"writer_after_step_s", writer_after / n},
        {"peak_rss_bytes", peak_resident_bytes()},  // with the snapshot's host buffers
    };
  }
  // `tess plan`'s estimate for this step (it counts tensors, so compare it with
  // the peak above the process's resident memory before the model existed).
  train::PlanInputs pi;
  pi.stage = config::run_stage_choices().parse(train_stage_name(c.stage));
  pi.model = mc;
  pi.precision = bf16 ? train::Precision::Bf16Autocast : train::Precision::Fp32;
  pi.batch_size = B;
  pi.seq_len = L;
  pi.self_condition = diffusion;
  pi.span_fraction = diffusion ? static_cast<double>(span_avg) / static_cast<double>(B * L) : 1.0;
  auto plan = train::estimate(pi);
  const int64_t rss_peak = j["peak_rss_bytes"].get<int64_t>() - baseline_rss;
  const int64_t tensor_peak = compare_steps > 0 ? training_peak_tensors : tensor_memory.peak();
  j["baseline_rss_bytes"] = baseline_rss;
  j["plan_bytes"] = plan.total;
  j["rss_over_plan"] = static_cast<double>(rss_peak) / plan.total;
  // The highest sum of live tensor bytes: what the plan estimates. The rest of
  // the RSS peak is the allocator's (glibc keeping freed blocks, fragmentation)
  // and the libraries' own buffers (BLAS packing, OpenMP).
  j["peak_tensor_bytes"] = tensor_peak;
  j["tensors_over_plan"] = static_cast<double>(tensor_peak) / plan.total;
  j["rss_outside_tensors_bytes"] = rss_peak - tensor_peak;
  return j;
}

std::string trainer_precision_error(const std::string& precision) {
  ScratchDir dir("precision");
  // A tokenizer and a corpus small enough for one step.
  auto text = dir.path() / "text.txt";
  {
    std::ofstream f(text);
    util::Rng rng(0, "bench.text");
    const char* words[] = {"the", "model", "noise", "simplex", "token", "step", "train", "bench", "loss", "span"};
    for (int line = 0; line < 400; ++line) {
      for (int w = 0; w < 12; ++w) f << words[rng.uniform_int(0, 9)] << (w == 11 ? "\n" : " ");
    }
  }
  data::SentencePieceTrainOptions so;
  so.inputs = {text};
  so.model_prefix = dir.path() / "spm";
  so.vocab_size = 300;
  so.threads = 1;
  train_sentencepiece(so);
  auto tok = data::load_tokenizer(dir.path() / "spm.model");
  write_token_dataset(dir.path() / "ds", 8192, tok->vocab_size(), tok->base_hash(), 0);
  std::string yaml = fmt::format(
      "run: {{stage: ar, dir: {}, name: probe}}\n"
      "model: {{hidden_size: 32, intermediate_size: 64, num_layers: 1, num_heads: 2, "
      "num_kv_heads: 2, max_position_embeddings: 64}}\n"
      "data: {{train: [{}], tokenizer: {}, seq_len: 16}}\n"
      "train: {{batch_size: 2, max_steps: 1, precision: {}}}\n"
      "log: {{tensorboard: false}}\n",
      (dir.path() / "run").string(), (dir.path() / "ds").string(), (dir.path() / "spm.model").string(), precision);
  try {
    auto cfg = config::Config::load_string(yaml, "bench precision probe");
    train::Trainer trainer(cfg, std::make_shared<dist::Dist>());
    int rc = trainer.run();
    util::setup_logging({});
    return rc == 0 ? "" : fmt::format("the one-step probe run exited {}", rc);
  } catch (const std::exception& e) {
    util::setup_logging({});
    return e.what();
  }
}

json bench_train(const BenchOptions& opt, const json& peak, const std::vector<std::string>& presets) {
  double p32 = peak["fp32"]["gflops"].get<double>(), pbf = peak["bf16"]["gflops"].get<double>();
  auto exe = exe_of(opt);
  std::string bf16_error = trainer_precision_error("bf16_autocast");
  // Without native bf16 matmuls bf16 is emulated at ~1% of the fp32 rate: a
  // medium case would take hours and say nothing about the code. Smoke runs
  // still go through the bf16 path.
  std::string bf16_slow;
  if (!opt.smoke && !util::cpu_has_native_bf16())
    bf16_slow = fmt::format("this CPU has no native bf16 matmul: measured bf16 peak {:.1f} GF/s against fp32 {:.1f} "
                            "GF/s (bf16 runs emulated; time it on a CPU with AVX512_BF16/AMX or a GPU)",
                            pbf, p32);
  json cases = json::array();
  for (const auto& preset : presets) {
    for (auto stage : {TrainStage::Ar, TrainStage::Adaptation, TrainStage::Instruction}) {
      for (const char* precision : {"fp32", "bf16"}) {
        TrainCase c{preset, stage, precision};
        if (std::string(precision) == "bf16" && !bf16_error.empty()) {
          cases.push_back({{"case", c.id()}, {"skipped", "not supported by the trainer: " + bf16_error}});
          continue;
        }
        if (std::string(precision) == "bf16" && !bf16_slow.empty()) {
          cases.push_back({{"case", c.id()}, {"skipped", bf16_slow}});
          continue;
        }
        std::fprintf(stderr, "bench train %s ...\n", c.id().c_str());
        auto cmd = fmt::format("{} bench train --case {} --json --peak-fp32 {} --peak-bf16 {}{}", quote(exe.string()),
                               c.id(), p32, pbf, common_flags(opt));
        auto r = parse_child_json(run_child(cmd, "bench case " + c.id()), "bench case " + c.id());
        json j = r["train"]["cases"][0];
        if (opt.eager) {
          auto pr = train_preset(preset, opt.smoke);
          json shape = {{"hidden", pr.model.hidden_size}, {"layers", pr.model.num_hidden_layers},
                        {"heads", pr.model.num_attention_heads}, {"kv_heads", pr.model.num_key_value_heads},
                        {"intermediate", pr.model.intermediate_size}, {"vocab", pr.model.vocab_size},
                        {"batch", pr.batch}, {"seq_len", pr.seq_len}};
          auto py = fmt::format("{} {} --shape {} --stage {} --precision {} --span-tokens {} --threads {} --warmup {} "
                                "--steps {}",
                                quote(opt.python.empty() ? "python3" : opt.python.string()),
                                quote(opt.eager_script.empty() ? std::string(TESS_BENCH_EAGER_SCRIPT) : opt.eager_script.string()), quote(shape.dump()), train_stage_name(stage), precision,
                                j["span_tokens"].get<int64_t>(), j["threads"].get<int>(), j["warmup"].get<int>(),
                                j["steps"].get<int>());
          try {
            auto e = parse_child_json(run_child(py, "eager step"), "eager step");
            j["eager"] = e;
            j["eager_over_tess"] = e["step_s"].get<double>() / j["step_s"].get<double>();
          } catch (const Error& e) {
            j["eager"] = {{"error", e.what()}};
          }
        }
        cases.push_back(j);
      }
    }
  }
  std::string support = !bf16_error.empty() ? "not supported by the trainer: " + bf16_error
                        : !bf16_slow.empty()  ? "supported by the trainer; not timed: " + bf16_slow
                                              : "supported";
  return {{"cases", cases}, {"bf16_support", support}};
}

// ---- sample ---------------------------------------------------------------------------

namespace {
// Where one denoising step's time goes: the model's forward (with a
// self-conditioning input), the token choice (top-p 0.99) and the re-noising
// of the chosen simplex; each the best of `reps` runs.
json sample_step_breakdown(diffusion::DiffusionLMImpl& lm, const diffusion::SampleBatch& batch, util::Rng& rng,
                           int reps) {
  torch::NoGradGuard no_grad;
  auto span = diffusion::SpanIndex::from_mask(batch.span_mask);
  int64_t vocab = lm.decoder->config().vocab_size;
  auto x = diffusion::gaussian_rows(rng, span.rows, vocab) * 5.0;
  diffusion::RowSource rows = [&](int64_t start, int64_t count) { return x.narrow(0, start, count); };
  diffusion::DiffusionInputs in{batch.ids, batch.span_mask, torch::full({batch.ids.size(0)}, 0.5f), batch.key_mask};
  auto prev = lm.span_logits(in, span, rows, {});
  torch::Tensor logits, tokens;
  auto best = [&](const std::function<void()>& f) {
    double b = 1e30;
    for (int i = 0; i < reps; ++i) {
      auto t0 = Clock::now();
      f();
      b = std::min(b, since(t0));
    }
    return b;
  };
  double forward = best([&] { logits = lm.span_logits(in, span, rows, prev).to(torch::kFloat32); });
  double choose = best([&] { tokens = diffusion::choose_tokens(logits, 0.99, 1.0, rng); });
  double argmax = best([&] { tokens = diffusion::choose_tokens(logits, 0, 1.0, rng); });
  double renoise = best([&] {
    auto a = torch::full({span.rows}, 0.5f);
    x = diffusion::noisy_simplex_rows(tokens, a, diffusion::gaussian_rows(rng, span.rows, vocab), 5.0);
  });
  return {{"forward_s", forward}, {"choose_top_p_s", choose}, {"choose_argmax_s", argmax}, {"renoise_s", renoise}};
}
}  // namespace

json bench_sample(const BenchOptions& opt, const std::string& preset_name) {
  apply_threads(opt);
  // As `tess generate` and `tess eval` do (eval::GenerateOptions::cpu_cache), for both decoders.
  std::optional<util::CachingCpuAllocatorScope> cpu_cache;
  if (opt.cpu_allocator == "caching") cpu_cache.emplace();
  auto preset = train_preset(preset_name, false);
  model::Decoder decoder(preset.model, 0);
  diffusion::DiffusionLM lm(decoder, diffusion::SelfCondition::LogitsMean, false, 0);
  const int64_t span = opt.smoke ? 16 : 256, prompt_len = opt.smoke ? 8 : 32;
  std::vector<int64_t> steps = opt.smoke ? std::vector<int64_t>{2, 4} : std::vector<int64_t>{8, 16, 32, 64, 100};
  util::Rng rng(0, "bench.sample");
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < prompt_len; ++i) prompt.push_back(rng.uniform_int(3, preset.model.vocab_size - 1));

  // AR with KV cache, the same decoder weights: one warm-up run, then the best
  // of three (a 1-second run varies by tens of percent between repetitions).
  eval::ar_generate(*decoder, prompt, std::min<int64_t>(span, 16), -1, 0.99, 1.0, rng);
  std::vector<int64_t> ar;
  double ar_s = 1e30;
  for (int rep = 0; rep < (opt.smoke ? 1 : 3); ++rep) {
    auto t0 = Clock::now();
    ar = eval::ar_generate(*decoder, prompt, span, -1, 0.99, 1.0, rng);
    ar_s = std::min(ar_s, since(t0));
  }
  double ar_tps = static_cast<double>(ar.size()) / ar_s;

  json curve = json::array();
  auto batch = diffusion::SampleBatch::from_prompts({prompt}, span, 0);
  for (int64_t n : steps) {
    diffusion::SamplerOptions so;
    so.steps = n;
    diffusion::Sampler sampler(*lm, so);
    if (n == steps.front()) sampler.sample(batch, rng);  // warm-up
    auto t0 = Clock::now();
    sampler.sample(batch, rng);
    double s = since(t0);
    double tps = static_cast<double>(span) / s;
    curve.push_back({{"steps", n}, {"seconds", s}, {"tokens_per_s", tps}, {"speedup_vs_ar", tps / ar_tps}});
  }
  json step = sample_step_breakdown(*lm, batch, rng, opt.smoke ? 2 : 5);
  auto fwd = train_step_flops(preset.model, TrainStage::Adaptation, 1, batch.ids.size(1), span, 1.0).self_condition;
  step["forward_gflops"] = fwd / 1e9;
  step["forward_achieved_gflops"] = fwd / step["forward_s"].get<double>() / 1e9;
  return {{"preset", preset_name},
          {"hidden", preset.model.hidden_size},
          {"layers", preset.model.num_hidden_layers},
          {"vocab", preset.model.vocab_size},
          {"prompt_tokens", prompt_len},
          {"span", span},
          {"batch", 1},
          {"threads", torch::get_num_threads()},
          {"ar", {{"seconds", ar_s}, {"tokens", static_cast<int64_t>(ar.size())}, {"tokens_per_s", ar_tps}}},
          {"diffusion", curve},
          {"step", step}};
}

// ---- data -----------------------------------------------------------------------------

namespace {
double consumption_of(const json& train, const std::string& id, const char* field) {
  if (train.is_object() && train.contains("cases"))
    for (const auto& c : train["cases"])
      if (c.value("case", "") == id && c.contains(field)) return c[field].get<double>();
  return 0;
}
}  // namespace

json bench_data(const BenchOptions& opt, const json& train) {
  apply_threads(opt);
  ScratchDir dir("data");
  auto preset = train_preset("small", opt.smoke);
  const int64_t B = preset.batch, L = preset.seq_len;
  int64_t tokens = opt.smoke ? (1 << 16) : (1 << 24);
  write_token_dataset(dir.path() / "ds", tokens, static_cast<int32_t>(preset.model.vocab_size), "bench", 0);
  auto ds = std::make_shared<const data::TokenDataset>(dir.path() / "ds");
  data::PackingOptions po;
  po.seq_len = L;
  auto packed = std::make_shared<data::PackedSequences>(ds, po);
  data::DistributedSampler::Options so;
  so.num_samples = packed->size();
  so.per_rank_batch = B;
  data::DistributedSampler sampler(so);
  data::SpanMasker masker;
  util::Rng rng(0, "bench.mask");
  // What the trainer's background loader does per micro-batch (data/batches.cpp BatchLoader).
  auto produce = [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
    auto idx = sampler.next_batch();
    auto ids = torch::empty({B, L}, torch::kInt64);
    packed->gather(idx, ids.data_ptr<int64_t>());
    auto m = masker.train_batch(B, L, rng);
    auto mask = torch::from_blob(m.mask.data(), {B, L}, torch::kUInt8).to(torch::kBool);
    return std::make_pair(ids, mask);
  };
  int batches = opt.smoke ? 4 : 400;
  for (int i = 0; i < 4; ++i) produce();
  auto t0 = Clock::now();
  for (int i = 0; i < batches; ++i) produce();
  double per_batch = since(t0) / batches;
  double loader_tps = static_cast<double>(B * L) / per_batch;

  // Through the Prefetcher as the trainer uses it (depth 4): the wait per next().
  data::Prefetcher<std::pair<torch::Tensor, torch::Tensor>, int> pf(produce, [] { return 0; }, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  double wait = 0;
  for (int i = 0; i < batches; ++i) {
    auto w0 = Clock::now();
    pf.next();
    wait += since(w0);
  }
  json j = {{"preset", "small"}, {"batch", B}, {"seq_len", L}, {"dataset_tokens", tokens},
            {"threads", torch::get_num_threads()},
            {"loader_batch_s", per_batch}, {"loader_tokens_per_s", loader_tps},
            {"prefetch_wait_per_batch_s", wait / batches}};
  std::string id = fmt::format("small/adaptation/fp32");
  double consumption = consumption_of(train, id, "tokens_per_s");
  if (consumption > 0) {
    double step = consumption_of(train, id, "step_s");
    j["trainer_case"] = id;
    j["trainer_tokens_per_s"] = consumption;
    j["loader_over_trainer"] = loader_tps / consumption;
    j["stall_share_without_prefetch"] = per_batch / step;
  }
  return j;
}

// ---- checkpoint -----------------------------------------------------------------------

json bench_checkpoint(const BenchOptions& opt, const json& train) {
  apply_threads(opt);
  ScratchDir dir("ckpt");
  std::string preset_name = opt.smoke ? "tiny" : "medium";
  auto preset = train_preset(preset_name, opt.smoke);
  model::Decoder decoder(preset.model, 0);
  std::map<std::string, torch::Tensor> weights, moments;
  for (auto& p : decoder->named_parameters()) {
    weights[p.key()] = p.value().detach();
    moments[p.key() + ".exp_avg"] = torch::zeros_like(p.value()).normal_();
    moments[p.key() + ".exp_avg_sq"] = torch::zeros_like(p.value()).uniform_();
  }
  json out = {{"preset", preset_name}, {"threads", torch::get_num_threads()},
              {"note", "load reads right after the save, so from the page cache"}};
  for (auto& [name, tensors] : {std::pair<const char*, std::map<std::string, torch::Tensor>*>{"weights", &weights},
                                {"optimizer_state", &moments}}) {
    auto path = dir.path() / (std::string(name) + ".safetensors");
    auto t0 = Clock::now();
    model::write_safetensors(path, *tensors);
    double save = since(t0);
    double bytes = static_cast<double>(fs::file_size(path));
    t0 = Clock::now();
    {
      model::SafetensorsFile f(path);
      for (const auto& e : f.entries()) f.load(e.name);
    }
    double load = since(t0);
    out[name] = {{"bytes", bytes}, {"save_s", save}, {"load_s", load}, {"save_gb_per_s", bytes / save / 1e9},
                 {"load_gb_per_s", bytes / load / 1e9}};
  }
  std::string id = preset_name + "/adaptation/fp32";
  double step = consumption_of(train, id, "step_s");
  if (step > 0) {
    // A synchronous save of weights + optimizer state blocks training this long.
    double stall = out["weights"]["save_s"].get<double>() + out["optimizer_state"]["save_s"].get<double>();
    out["trainer_case"] = id;
    out["trainer_step_s"] = step;
    out["save_stall_in_steps"] = stall / step;
    // checkpoint.async: the case's steps with a save in flight against its plain steps.
    for (const auto& c : train["cases"])
      if (c.value("case", "") == id && c.contains("save_in_flight")) {
        out["async"] = c["save_in_flight"];
        out["async_stall_in_steps"] = c["save_in_flight"]["stall_in_steps"];
      }
  }
  return out;
}

// ---- dist -----------------------------------------------------------------------------

void bench_dist_worker(const BenchOptions& opt, int64_t global_batch, int64_t steps, bool overlap,
                       const fs::path& output) {
  apply_threads(opt);
  auto env = dist::DistEnv::from_environment();
  auto d = env.world_size > 1 ? dist::Dist::create(env, "gloo", std::chrono::milliseconds(600000))
                              : std::make_shared<dist::Dist>();
  if (global_batch % d->world_size() != 0)
    throw Error(fmt::format("--global-batch {} is not divisible by {} processes", global_batch, d->world_size()));
  auto preset = train_preset("small", opt.smoke);
  const int64_t B = global_batch / d->world_size(), L = preset.seq_len, V = preset.model.vocab_size;
  model::Decoder decoder(preset.model, 0);
  diffusion::DiffusionLM lm(decoder, diffusion::SelfCondition::LogitsMean, false, 0);
  auto params = named(*lm);
  train::AdamW adam(params, {0.9, 0.999, 1e-8, 0.0});
  util::Rng rng(static_cast<uint64_t>(d->rank()), "bench.dist");
  diffusion::DiffusionLoss loss_fn(diffusion::NoiseScheduler(diffusion::Schedule::CosineImproved, 5000), {});
  data::SpanMasker masker;
  std::vector<torch::Tensor> leaves;
  for (auto& p : params) leaves.push_back(p.tensor);
  train::GradientReducer reducer(leaves, 25 << 20, overlap, *d);
  int64_t grad_bytes = 0;
  for (auto& p : params) grad_bytes += static_cast<int64_t>(p.tensor.nbytes());
  double compute = 0, reduce = 0, optim = 0, total = 0;
  for (int64_t i = 0; i < steps + 1; ++i) {
    bool measured = i > 0;
    d->barrier("bench step");
    auto s0 = Clock::now();
    auto ids = torch::randint(3, V, {B, L}, rng.generator(), torch::kInt64);
    auto mask = data::to_tensor(masker.train_batch(B, L, rng));
    auto r = loss_fn(*lm, ids, mask, {rng, rng});
    reducer.arm();
    (r.loss_sum / static_cast<double>(std::max<int64_t>(r.tokens, 1))).backward();
    double c = since(s0);
    // The trainer's bucketed gradient all-reduce (dist.bucket_mb = 25); with
    // overlap most of it already ran during backward, the rest is waited here.
    auto r0 = Clock::now();
    std::vector<torch::Tensor> grads;
    for (auto& p : params) grads.push_back(p.tensor.grad());
    reducer.reduce(grads);
    double red = since(r0);
    auto o0 = Clock::now();
    adam.step(1e-5);
    adam.zero_grad();
    double o = since(o0);
    std::vector<torch::Tensor> slowest{torch::tensor({since(s0)}, torch::kFloat64)};
    d->all_reduce_max(slowest, "bench step time");
    if (measured) {
      compute += c, reduce += red, optim += o, total += slowest[0].item<double>();
    }
  }
  double n = static_cast<double>(steps);
  if (d->is_main()) {
    json j = {{"world_size", d->world_size()}, {"backend", d->backend_name()}, {"threads_per_process", torch::get_num_threads()},
              {"global_batch", global_batch}, {"per_rank_batch", B}, {"seq_len", L}, {"preset", "small"},
              {"stage", "adaptation"}, {"steps", steps}, {"step_s", total / n}, {"compute_s", compute / n},
              {"all_reduce_s", reduce / n}, {"overlap", reducer.overlapped()}, {"optimizer_s", optim / n}, {"gradient_bytes", grad_bytes},
              {"tokens_per_s", static_cast<double>(global_batch * L) / (total / n)}};
    std::ofstream f(output);
    f << j.dump(2) << "\n";
    if (!f) throw Error(fmt::format("cannot write {}", output.string()));
  }
}

json bench_dist(const BenchOptions& opt) {
  ScratchDir dir("dist");
  auto exe = quote(exe_of(opt).string());
  int64_t global_batch = opt.smoke ? 2 : 8, steps = opt.smoke ? 1 : 3;
  int cores = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::string smoke = opt.smoke ? " --smoke" : "";
  auto one = dir.path() / "one.json", two = dir.path() / "two.json", two_overlap = dir.path() / "two_overlap.json";
  run_child(fmt::format("env -u WORLD_SIZE -u RANK {} bench dist-worker --global-batch {} --steps {} --threads {} "
                        "--output {}{}",
                        exe, global_batch, steps, cores, quote(one.string()), smoke),
            "bench dist (1 process)");
  for (auto [out, flag] : {std::pair{two, ""}, {two_overlap, " --overlap"}})
    run_child(fmt::format("{} launch --nproc 2 -- bench dist-worker --global-batch {} --steps {} --threads {} "
                          "--output {}{}{} >&2",
                          exe, global_batch, steps, std::max(1, cores / 2), quote(out.string()), smoke, flag),
              "bench dist (2 processes)");
  auto read = [](const fs::path& f) { return json::parse(util::read_file(f, "bench dist result")); };
  auto j1 = read(one), j2 = read(two), j2o = read(two_overlap);
  double step1 = j1["step_s"].get<double>();
  return {{"one_process", j1}, {"two_processes", j2}, {"two_processes_overlapped", j2o},
          {"efficiency", step1 / j2["step_s"].get<double>()},
          {"efficiency_overlapped", step1 / j2o["step_s"].get<double>()},
          {"note", "same global batch and the same cores: 1 process x all threads vs 2 Gloo processes x half"}};
}

// ---- tables ---------------------------------------------------------------------------

namespace {
std::string gf(double v) { return fmt::format("{:.1f}", v); }
}  // namespace

std::string format_report(const json& r) {
  std::string s;
  if (r.contains("machine")) {
    const auto& m = r["machine"];
    s += fmt::format("machine: {} ({} cores), torch threads {}, load average {:.2f} {:.2f} {:.2f}{}\n",
                     m.value("cpu", "?"), m.value("cores", 0), m.value("torch_threads", 0),
                     m["load_average"][0].get<double>(), m["load_average"][1].get<double>(),
                     m["load_average"][2].get<double>(), m.value("smoke", false) ? "  [SMOKE: figures mean nothing]" : "");
  }
  if (r.contains("peak")) {
    const auto& p = r["peak"];
    s += fmt::format("\npeak matmul ({} threads, {})\n{:>6} {:>12} {:>12}\n", p["threads"].get<int>(),
                     p["method"].get<std::string>(), "n", "fp32 GF/s", "bf16 GF/s");
    for (size_t i = 0; i < p["fp32"]["by_size"].size(); ++i)
      s += fmt::format("{:>6} {:>12} {:>12}\n", p["fp32"]["by_size"][i]["n"].get<int64_t>(),
                       gf(p["fp32"]["by_size"][i]["gflops"].get<double>()), gf(p["bf16"]["by_size"][i]["gflops"].get<double>()));
    s += fmt::format("{:>6} {:>12} {:>12}\n", "best", gf(p["fp32"]["gflops"].get<double>()), gf(p["bf16"]["gflops"].get<double>()));
  }
  if (r.contains("train")) {
    s += fmt::format("\ntraining step (MFU against the measured peak of the case's precision)\n");
    s += fmt::format("{:<26} {:>4} {:>5} {:>4} {:>9} {:>8} {:>6} {:>7} {:>7} {:>6} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>8} {:>8} {:>8} {:>6}\n",
                     "case", "B", "L", "thr", "tok/s", "step s", "spread", "GF/s", "peak", "MFU", "data", "noise", "fwd", "sc",
                     "bwd", "opt", "RSS MB", "vs plan", "tensors", "eager");
    for (const auto& c : r["train"]["cases"]) {
      if (c.contains("skipped")) {
        s += fmt::format("{:<26} {}\n", c["case"].get<std::string>(), c["skipped"].get<std::string>());
        continue;
      }
      const auto& b = c["breakdown_s"];
      double st = c["step_s"].get<double>();
      auto pct = [&](const char* k) { return fmt::format("{:.0f}%", 100 * b[k].get<double>() / st); };
      std::string eager = c.contains("eager_over_tess") ? fmt::format("{:.2f}x", c["eager_over_tess"].get<double>()) : "-";
      s += fmt::format("{:<26} {:>4} {:>5} {:>4} {:>9.0f} {:>8.3f} {:>5.0f}% {:>7} {:>7} {:>5.1f}% | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>8.0f} {:>7.2f}x {:>7.2f}x {:>6}\n",
                       c["case"].get<std::string>(), c["batch"].get<int64_t>(), c["seq_len"].get<int64_t>(),
                       c["threads"].get<int>(), c["tokens_per_s"].get<double>(), st,
                       100 * c.value("pair_spread", 0.0), gf(c["achieved_gflops"].get<double>()),
                       gf(c["peak_gflops"].get<double>()), 100 * c["mfu"].get<double>(), pct("data"), pct("noise"),
                       pct("forward"), pct("self_condition"), pct("backward"), pct("optimizer"),
                       c["peak_rss_bytes"].get<double>() / 1e6, c["rss_over_plan"].get<double>(),
                       c.value("tensors_over_plan", 0.0), eager);
    }
    s += "(spread = slowest - fastest pair of timed steps over the mean; breakdown in % of step time; vs plan = peak RSS above the process before the model / tess plan's estimate;\n"
         " tensors = peak of live tensor bytes / tess plan's estimate, the rest of the RSS is the allocator's and the libraries' buffers;\n"
         " eager = plain eager PyTorch step time / tess step time, > 1: tess faster)\n";
    if (r["train"].contains("bf16_support")) s += fmt::format("bf16: {}\n", r["train"]["bf16_support"].get<std::string>());
  }
  if (r.contains("sample")) {
    const auto& p = r["sample"];
    s += fmt::format("\nsampling: preset {} (H {}, {} layers, V {}), prompt {} + span {}, batch 1, {} threads\n",
                     p["preset"].get<std::string>(), p["hidden"].get<int64_t>(), p["layers"].get<int64_t>(),
                     p["vocab"].get<int64_t>(), p["prompt_tokens"].get<int64_t>(), p["span"].get<int64_t>(),
                     p["threads"].get<int>());
    s += fmt::format("AR with KV cache: {:.1f} tokens/s ({:.2f} s)\n{:>6} {:>10} {:>10} {:>10}\n",
                     p["ar"]["tokens_per_s"].get<double>(), p["ar"]["seconds"].get<double>(), "steps", "seconds",
                     "tokens/s", "vs AR");
    for (const auto& c : p["diffusion"])
      s += fmt::format("{:>6} {:>10.3f} {:>10.1f} {:>9.2f}x\n", c["steps"].get<int64_t>(), c["seconds"].get<double>(),
                       c["tokens_per_s"].get<double>(), c["speedup_vs_ar"].get<double>());
    if (p.contains("step")) {
      const auto& st = p["step"];
      s += fmt::format("one step: forward {:.1f} ms ({:.2f} GFLOP, {:.1f} GF/s), top-p choice {:.1f} ms (argmax {:.1f}), "
                       "re-noising {:.1f} ms\n",
                       1e3 * st["forward_s"].get<double>(), st["forward_gflops"].get<double>(),
                       st["forward_achieved_gflops"].get<double>(), 1e3 * st["choose_top_p_s"].get<double>(),
                       1e3 * st["choose_argmax_s"].get<double>(), 1e3 * st["renoise_s"].get<double>());
    }
  }
  if (r.contains("data")) {
    const auto& d = r["data"];
    s += fmt::format("\ndata loader (B {}, L {}, packing + UL2 masks, {} threads): {:.0f} tokens/s, {:.3f} ms/batch, "
                     "prefetch wait {:.3f} ms/batch\n",
                     d["batch"].get<int64_t>(), d["seq_len"].get<int64_t>(), d["threads"].get<int>(),
                     d["loader_tokens_per_s"].get<double>(), 1e3 * d["loader_batch_s"].get<double>(),
                     1e3 * d["prefetch_wait_per_batch_s"].get<double>());
    if (d.contains("trainer_tokens_per_s"))
      s += fmt::format("trainer ({}) consumes {:.0f} tokens/s: loader is {:.0f}x faster; synchronous loading would be "
                       "{:.2f}% of step time\n",
                       d["trainer_case"].get<std::string>(), d["trainer_tokens_per_s"].get<double>(),
                       d["loader_over_trainer"].get<double>(), 100 * d["stall_share_without_prefetch"].get<double>());
  }
  if (r.contains("checkpoint")) {
    const auto& c = r["checkpoint"];
    s += fmt::format("\ncheckpoint ({} model, safetensors; {})\n{:<16} {:>10} {:>10} {:>10}\n",
                     c["preset"].get<std::string>(), c["note"].get<std::string>(), "", "MB", "save GB/s", "load GB/s");
    for (const char* k : {"weights", "optimizer_state"})
      s += fmt::format("{:<16} {:>10.1f} {:>10.2f} {:>10.2f}\n", k, c[k]["bytes"].get<double>() / 1e6,
                       c[k]["save_gb_per_s"].get<double>(), c[k]["load_gb_per_s"].get<double>());
    if (c.contains("save_stall_in_steps"))
      s += fmt::format("synchronous save: {:.2f} steps of {}\n", c["save_stall_in_steps"].get<double>(),
                       c["trainer_case"].get<std::string>());
    if (c.contains("async")) {
      const auto& a = c["async"];
      s += fmt::format("asynchronous save ({:.0f} MB snapshot, deferred copy): steps with it in flight {:.3f} s against "
                       "{:.3f} s interleaved without = {:+.1f}% ({:.3f} s waiting for the copy before the optimizer "
                       "step)\n",
                       a["snapshot_bytes"].get<double>() / 1e6, a["step_s"].get<double>(),
                       a["plain_step_s"].get<double>(), 100 * c["async_stall_in_steps"].get<double>(),
                       a["copy_wait_s"].get<double>());
    }
  }
  if (r.contains("dist")) {
    const auto& d = r["dist"];
    auto row = [&](const json& j) {
      return fmt::format("{:>3} proc x {} thr: {:.3f} s/step (compute {:.3f}, all-reduce wait {:.3f}, optimizer {:.3f}), "
                         "{:.0f} tokens/s\n",
                         j["world_size"].get<int>(), j["threads_per_process"].get<int>(), j["step_s"].get<double>(),
                         j["compute_s"].get<double>(), j["all_reduce_s"].get<double>(), j["optimizer_s"].get<double>(),
                         j["tokens_per_s"].get<double>());
    };
    s += fmt::format("\ndata parallel (small/adaptation, global batch {}, Gloo)\n", d["one_process"]["global_batch"].get<int64_t>());
    s += row(d["one_process"]) + row(d["two_processes"]);
    if (d.contains("two_processes_overlapped")) s += "overlapped:" + row(d["two_processes_overlapped"]);
    s += fmt::format("scaling efficiency {:.2f}, overlapped {:.2f} ({})\n", d["efficiency"].get<double>(),
                     d.value("efficiency_overlapped", 0.0), d["note"].get<std::string>());
  }
  return s;
}

}  // namespace tess::eval::bench
