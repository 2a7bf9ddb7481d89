// The quickstart's four stages (configs/quickstart/*.yaml on the quickstart's
// own data at --tiny sizes), 30 steps each, on 1 process and on 2 Gloo
// processes, give the per-step losses recorded in
// tests/data/golden/quickstart_losses.json: a refactoring must change no bit
// of training. A change that alters the numerics on purpose regenerates the
// file in a commit of its own that says why:
//   TESS_GOLDEN_WRITE=1 build/tests/test_train '[golden]'
// Bits are compared on a machine of the recording's kind (ATen's CPU
// capability and the CPU model); elsewhere BLAS kernels round differently,
// and the losses must agree to 1e-3 relative (the test says which it did).
#include <catch2/catch.hpp>

#include <ATen/Version.h>

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using nlohmann::json;
using tess::test::run_command;
using tess::test::shell_quote;

namespace {

const fs::path kGolden = fs::path(TESS_SOURCE_DIR) / "tests/data/golden/quickstart_losses.json";
constexpr int kSteps = 30;

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string machine_kind() { return at::get_cpu_capability() + " / " + cpu_model(); }

std::string tess(const std::string& args) { return shell_quote(TESS_BINARY) + " " + args; }

// The quickstart's data at its --tiny sizes, made once per test process in a
// scratch directory that plays the repository root (the configs' paths are
// relative: runs/quickstart/...).
struct QuickstartData {
  tess::test::TempDir root;
  QuickstartData() {
    std::string data = "runs/quickstart/data";
    auto r = run_command(fmt::format(
        "cd {} && {} && {} && {} && {}", shell_quote(root.path().string()),
        tess("tokenize english-corpus --output " + data + "/corpus.txt --max-documents 2000"),
        tess("tokenize synthetic --output " + data + " --seed 1234 --train 600 --test 12 --preferences 100"),
        tess("tokenize train-spm --input " + data + "/corpus.txt --output " + data +
             "/tokenizer --vocab-size 1000 --threads 1"),
        tess("tokenize corpus --tokenizer " + data + "/tokenizer --input " + data + "/corpus.txt --output " + data +
             "/corpus --validation-fraction 0.02")));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
};

QuickstartData& quickstart_data() {
  static QuickstartData d;
  return d;
}

// Trains `stage` (configs/quickstart/<stage>.yaml) for 30 steps into
// runs/<name>, starting from runs/<from>/final where the recipe chains
// models, and returns its per-step loss texts.
std::vector<std::string> train(const std::string& stage, const std::string& name, const std::string& from,
                               int nproc) {
  auto& d = quickstart_data();
  std::string sets = fmt::format(" --set run.dir=runs/{} --set train.max_steps={} --set log.every=1", name, kSteps) +
                     " --set checkpoint.every=0 --set checkpoint.resume=none";
  if (!from.empty()) sets += fmt::format(" --set model.path=runs/{}/final", from);
  if (nproc > 1) sets += " --set train.batch_size=8";  // the same global batch of 16
  std::string config = std::string(TESS_SOURCE_DIR) + "/configs/quickstart/" + stage + ".yaml";
  std::string command = nproc == 1 ? tess("train " + config + sets)
                                   : tess(fmt::format("launch --nproc {} --grace-seconds 5 -- train ", nproc) + config + sets);
  auto r = run_command("cd " + shell_quote(d.root.path().string()) + " && " + command);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> losses;
  std::ifstream in(d.root / "runs" / name / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    if (j.contains("loss")) losses.push_back(j.at("loss").dump());
  }
  REQUIRE(losses.size() == static_cast<size_t>(kSteps));
  return losses;
}

// The recipe's chain: ar -> adaptation -> instruction, ar -> reward.
std::map<std::string, std::vector<std::string>> train_chain(int nproc) {
  auto tag = [&](const char* stage) { return fmt::format("{}_{}proc", stage, nproc); };
  std::map<std::string, std::vector<std::string>> out;
  out[tag("ar")] = train("ar", tag("ar"), "", nproc);
  out[tag("adaptation")] = train("adaptation", tag("adaptation"), tag("ar"), nproc);
  out[tag("instruction")] = train("instruction", tag("instruction"), tag("adaptation"), nproc);
  out[tag("reward")] = train("reward", tag("reward"), tag("ar"), nproc);
  return out;
}

void check_or_record(const std::map<std::string, std::vector<std::string>>& runs) {
  json golden = fs::exists(kGolden) ? json::parse(tess::test::read_file(kGolden)) : json::object();
  if (std::getenv("TESS_GOLDEN_WRITE")) {
    golden["machine"] = machine_kind();
    for (const auto& [name, losses] : runs) golden["runs"][name] = losses;
    fs::create_directories(kGolden.parent_path());
    std::ofstream(kGolden) << golden.dump(1) << "\n";
    WARN("recorded " << runs.size() << " run(s) into " << kGolden.string());
    SUCCEED();
    return;
  }
  REQUIRE(golden.contains("runs"));
  bool same_machine = golden.at("machine") == machine_kind();
  if (!same_machine)
    WARN("recorded on '" << golden.at("machine").get<std::string>() << "', this is '" << machine_kind()
                         << "': comparing to 1e-3 relative instead of bit for bit");
  for (const auto& [name, losses] : runs) {
    INFO(name);
    REQUIRE(golden["runs"].contains(name));
    auto want = golden["runs"][name].get<std::vector<std::string>>();
    REQUIRE(want.size() == losses.size());
    for (size_t i = 0; i < want.size(); ++i) {
      INFO("step " << i + 1);
      if (same_machine)
        CHECK(losses[i] == want[i]);
      else
        CHECK(std::stod(losses[i]) == Approx(std::stod(want[i])).epsilon(1e-3));
    }
  }
}

}  // namespace

TEST_CASE("golden losses: the quickstart's four stages on 1 process give the recorded losses, step for step",
          "[integration][train][golden]") {
  check_or_record(train_chain(1));
}

TEST_CASE("golden losses: the quickstart's four stages on 2 Gloo processes give the recorded losses, step for step",
          "[dist][train][golden]") {
  check_or_record(train_chain(2));
}
