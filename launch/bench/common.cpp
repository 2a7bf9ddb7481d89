#include "launch/bench/common.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/peak.h"

namespace tess::bench {
namespace fs = std::filesystem;
using json = nlohmann::json;

void apply_threads(const BenchOptions& opt) {
  if (opt.threads > 0) torch::set_num_threads(opt.threads);
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

fs::path exe_of(const BenchOptions& opt) { return opt.exe.empty() ? fs::read_symlink("/proc/self/exe") : opt.exe; }

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

json matmul_peak(c10::ScalarType dtype, bool smoke, c10::Device device) {
  std::vector<int64_t> sizes = smoke ? std::vector<int64_t>{64, 128}
                               : device.is_cpu() ? std::vector<int64_t>{256, 512, 1024, 2048}
                                                 : std::vector<int64_t>{2048, 4096, 8192};
  int warmup = smoke ? 1 : 2, reps = smoke ? 2 : 5;
  json by_size = json::array();
  double best = 0;
  for (int64_t n : sizes) {
    double g = util::matmul_gflops(device, dtype, n, warmup, reps);
    by_size.push_back({{"n", n}, {"gflops", g}});
    best = std::max(best, g);
  }
  return {{"gflops", best}, {"by_size", by_size}};
}

double consumption_of(const json& train, const std::string& id, const char* field) {
  if (train.is_object() && train.contains("cases"))
    for (const auto& c : train["cases"])
      if (c.value("case", "") == id && c.contains(field)) return c[field].get<double>();
  return 0;
}

ScratchDir::ScratchDir(const std::string& tag) {
  std::string tmpl = (fs::temp_directory_path() / ("tess-bench-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw Error(fmt::format("cannot create a temporary directory {}", tmpl));
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
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

json bench_peak(const BenchOptions& opt) {
  apply_threads(opt);
  int warmup = opt.smoke ? 1 : 2, reps = opt.smoke ? 2 : 5;
  const c10::Device device(opt.device);
  return {{"threads", torch::get_num_threads()},
          {"device", opt.device},
          {"method", fmt::format("square mm, best of {} after {} warm-up", reps, warmup)},
          {"fp32", matmul_peak(torch::kFloat32, opt.smoke, device)},
          {"bf16", matmul_peak(torch::kBFloat16, opt.smoke, device)}};
}

// ---- presets --------------------------------------------------------------------------

namespace {

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

}  // namespace

const std::vector<std::string>& train_preset_names() {
  static const std::vector<std::string> names{"tiny", "small", "medium", "1b"};
  return names;
}

TrainPreset train_preset(const std::string& name, bool smoke) {
  TrainPreset p;
  p.name = name;
  if (name == "tiny") {
    p.model = model::ModelConfig::preset("tiny");
    // The trainer's tokenizers fall back to bytes: 256 byte pieces plus
    // specials do not fit the tiny preset's 256.
    p.model.vocab_size = 512;
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
  } else if (name == "1b") {  // TinyLlama-1.1B's shape (with full attention heads): for GPUs
    p.model = shape(32000, 2048, 5632, 22, 32, 4, 2048);
    p.batch = 8;
    p.seq_len = 1024;
  } else {
    throw Error(fmt::format("unknown bench preset '{}' (tiny, small, medium, 1b)", name));
  }
  if (smoke) {
    p.batch = 2;
    p.seq_len = std::min<int64_t>(p.seq_len, 32);
  }
  return p;
}

const util::Choices<config::RunStage>& bench_stage_choices() {
  static const util::Choices<config::RunStage> c("training stage", {{config::RunStage::Ar, "ar"},
                                                                    {config::RunStage::Adaptation, "adaptation"},
                                                                    {config::RunStage::Instruction, "instruction"}});
  return c;
}

std::string TrainCase::id() const {
  return fmt::format("{}/{}/{}", preset, bench_stage_choices().name(stage), precision);
}

TrainCase TrainCase::parse(const std::string& id) {
  auto a = id.find('/'), b = id.rfind('/');
  if (a == std::string::npos || a == b)
    throw Error(fmt::format("--case '{}': expected PRESET/STAGE/PRECISION, e.g. small/adaptation/fp32", id));
  TrainCase c;
  c.preset = id.substr(0, a);
  train_preset(c.preset, true);  // validates the name
  c.stage = bench_stage_choices().parse(id.substr(a + 1, b - a - 1));
  c.precision = id.substr(b + 1);
  if (c.precision != "fp32" && c.precision != "bf16")
    throw Error(fmt::format("--case '{}': precision must be fp32 or bf16", id));
  return c;
}

}  // namespace tess::bench
