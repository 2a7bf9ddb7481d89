// The launchers the docs promise (docs/reproduce.md, "Launching"), run on CPU
// with Gloo: torchrun on one node and as two agents on loopback, the SLURM
// recipe's environment, and a rank killed under torchrun. Each must train
// the same steps as `tess launch`, bit for bit.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using namespace tess::test;

namespace {

// torchrun as the PyTorch wheel ships it (`torchrun` is this module's script).
std::string torchrun(const std::string& args) {
  return std::string("'") + TESS_PYTHON + "' -m torch.distributed.run --no-python " + args + " '" + TESS_BINARY + "'";
}

struct Run {
  fs::path cfg;
  std::string sets;
  std::string train(const fs::path& run) const {
    return " train " + cfg.string() + " --set run.dir=" + run.string() + sets;
  }
};

Run small_run(const std::string& name, int max_steps, int batch) {
  auto& w = workspace();
  return {w.config(name, "run:\n  stage: adaptation\ndiffusion:\n  timesteps: 100\n"),
          " --set data.tokenizer=" + w.tokenizer.string() + " --set data.train=[" + w.corpus.string() +
              "] --set train.max_steps=" + std::to_string(max_steps) + " --set train.batch_size=" +
              std::to_string(batch) + " --set checkpoint.every=0 --set dist.timeout_s=20" +
              // torchrun sets OMP_NUM_THREADS=1, tess launch divides the cores: the same
              // thread count makes the same reduction order.
              " --set run.threads=1"};
}

void require_ok(const CommandResult& r) {
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

void check_same_steps(const fs::path& a, const fs::path& b, size_t steps) {
  REQUIRE(metrics(a).size() == steps);
  auto differ = differing_steps(a, b, 0);
  INFO(joined(differ));
  CHECK(differ.empty());
}

}  // namespace

TEST_CASE("torchrun --nproc-per-node 2 trains the steps of tess launch --nproc 2, bit for bit", "[dist][train]") {
  auto& w = workspace();
  auto run = small_run("torchrun_one", 4, 2);
  auto launched = w.dir / "runs/torchrun_launch", agent = w.dir / "runs/torchrun_agent";
  require_ok(run_command(tess_cmd("launch --nproc 2 --grace-seconds 5 --" + run.train(launched))));
  require_ok(run_command(
      torchrun("--nnodes 1 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port " + std::to_string(free_port())) +
      run.train(agent)));
  check_same_steps(launched, agent, 4);
}

TEST_CASE("two torchrun agents (--nnodes 2, loopback) train the steps of one 4-process run", "[dist][train]") {
  auto& w = workspace();
  auto run = small_run("torchrun_nodes", 3, 1);
  auto four = w.dir / "runs/torchrun_four", nodes = w.dir / "runs/torchrun_nodes";
  require_ok(run_command(tess_cmd("launch --nproc 4 --grace-seconds 5 --" + run.train(four))));
  auto agent = [&](int node_rank, int port) {
    return torchrun("--nnodes 2 --nproc-per-node 2 --node-rank " + std::to_string(node_rank) +
                    " --master-addr 127.0.0.1 --master-port " + std::to_string(port)) +
           run.train(nodes);
  };
  int port = free_port();
  auto r = run_command(agent(1, port) + " > /dev/null 2>&1 & " + agent(0, port) + "; rc=$?; wait $! || rc=1; exit $rc");
  require_ok(r);
  check_same_steps(four, nodes, 3);
}

TEST_CASE("the SLURM recipe's environment (RANK, WORLD_SIZE, LOCAL_RANK from SLURM_*) trains like tess launch",
          "[dist][train]") {
  auto& w = workspace();
  auto run = small_run("slurm", 3, 2);
  auto launched = w.dir / "runs/slurm_launch", slurm = w.dir / "runs/slurm";
  require_ok(run_command(tess_cmd("launch --nproc 2 --grace-seconds 5 --" + run.train(launched))));
  // docs/reproduce.md's srun line, each task simulated by the variables srun
  // sets (MASTER_ADDR: loopback instead of `scontrol show hostnames`).
  int port = free_port();
  auto task = [&](int id) {
    return "SLURM_PROCID=" + std::to_string(id) + " SLURM_NTASKS=2 SLURM_LOCALID=" + std::to_string(id) +
           " bash -c 'RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID MASTER_ADDR=127.0.0.1 "
           "MASTER_PORT=" + std::to_string(port) + " " + tess_cmd(run.train(slurm)) + "'";
  };
  require_ok(run_command(task(1) + " > /dev/null 2>&1 & " + task(0) + "; rc=$?; wait $! || rc=1; exit $rc"));
  check_same_steps(launched, slurm, 3);
}

TEST_CASE("a rank SIGKILLed under torchrun ends the run with an error naming it, within the timeout",
          "[dist][train]") {
  auto& w = workspace();
  auto run = small_run("torchrun_kill", 100000, 2);
  auto dir = w.dir / "runs/torchrun_kill";
  auto script = w.dir / "torchrun_kill.sh";
  std::ofstream(script)
      << torchrun("--nnodes 1 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port " +
                  std::to_string(free_port()))
      << run.train(dir) << " > " << (w.dir / "torchrun_kill.out").string() << " 2>&1 &\n"
      << "agent=$!\n"
      << "for i in $(seq 1 2400); do grep -q '\"step\":2,' '" << (dir / "metrics.jsonl").string()
      << "' 2>/dev/null && break; sleep 0.05; done\n"
      << "for p in $(pgrep -f -- '" << dir.string() << "'); do tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | "
      << "grep -qx RANK=1 && kill -KILL $p; done\n"
      << "SECONDS=0\nwait $agent\nrc=$?\necho \"rc=$rc seconds=$SECONDS\"\n";
  auto r = run_command("bash " + script.string());
  auto out = read_file(w.dir / "torchrun_kill.out");
  INFO(r.out << out);
  REQUIRE_THAT(r.out, Catch::Contains("rc="));
  CHECK_THAT(r.out, !Catch::Contains("rc=0 "));
  CHECK(std::stoi(r.out.substr(r.out.find("seconds=") + 8)) < 60);  // dist.timeout_s 20 + slack; a hang never ends
  // torchrun's summary names the killed rank and its signal.
  CHECK_THAT(out, Catch::Contains("rank") && Catch::Contains("SIGKILL"));
}
