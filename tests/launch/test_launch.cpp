#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

using tess::test::run_tess;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("launch runs tess once per rank and prefixes every line", "[unit][launch]") {
  auto single = run_tess("--version");
  REQUIRE(single.exit_code == 0);
  auto r = run_tess("launch --nproc 2 -- --version");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> per_rank;
  for (const auto& line : lines_of(r.out)) {
    REQUIRE((line.rfind("[rank 0] ", 0) == 0 || line.rfind("[rank 1] ", 0) == 0));
    per_rank[line.substr(0, 9)] += line.substr(9) + "\n";
  }
  CHECK(per_rank["[rank 0] "] == single.out);
  CHECK(per_rank["[rank 1] "] == single.out);
  CHECK_THAT(r.out, Contains("[rank 0] tess 0.1.0 (git ") && Contains("[rank 1] tess 0.1.0 (git "));
}

TEST_CASE("launch gives every rank the torchrun environment", "[unit][launch]") {
  const std::string echo =
      "-- -c 'echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR $MASTER_PORT'";
  SECTION("one node: a free port on 127.0.0.1") {
    auto r = run_tess("launch --nproc 2 --program /bin/sh " + echo);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 2);
    std::map<int, std::vector<std::string>> fields;
    for (const auto& line : lines) {
      std::istringstream in(line);
      std::string rank_word, rank_num;
      in >> rank_word >> rank_num;  // "[rank" "r]"
      int rank = std::stoi(rank_num);
      for (std::string f; in >> f;) fields[rank].push_back(f);
    }
    REQUIRE(fields[0].size() == 7);
    REQUIRE(fields[1].size() == 7);
    CHECK(fields[0] == std::vector<std::string>{"0", "2", "0", "2", "0", "127.0.0.1", fields[0][6]});
    CHECK(fields[1] == std::vector<std::string>{"1", "2", "1", "2", "0", "127.0.0.1", fields[0][6]});
    int port = std::stoi(fields[0][6]);
    CHECK(port > 0);
    CHECK(port < 65536);
  }
  SECTION("second of two nodes") {
    auto r = run_tess("launch --nproc 2 --nnodes 2 --node-rank 1 --master-addr 10.1.2.3 --master-port 29511 "
                      "--program sh " + echo);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out, Contains("[rank 2] 2 4 0 2 1 10.1.2.3 29511\n"));
    CHECK_THAT(r.out, Contains("[rank 3] 3 4 1 2 1 10.1.2.3 29511\n"));
  }
  SECTION("several nodes need an explicit master port") {
    auto r = run_tess("launch --nproc 2 --nnodes 2 --program /bin/sh " + echo);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Contains("--master-port"));
  }
  SECTION("a program that does not exist is an error before anything starts") {
    auto r = run_tess("launch --nproc 2 --program /nonexistent/prog -- x");
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Contains("/nonexistent/prog"));
  }
}

TEST_CASE("a failing rank stops the others and sets the exit code", "[unit][launch]") {
  tess::test::TempDir dir;
  auto t0 = std::chrono::steady_clock::now();
  // Rank 1 fails only once rank 0 has written its pid (under load rank 0
  // could otherwise be stopped before it gets that far).
  auto r = run_tess("launch --nproc 2 --program /bin/sh -- -c "
                    "'echo $$ > " + dir.path().string() + "/pid.$RANK; "
                    "if [ $RANK = 1 ]; then while [ ! -s " + dir.path().string() + "/pid.0 ]; do sleep 0.05; done; "
                    "exit 7; fi; sleep 60'");
  double elapsed = seconds_since(t0);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 7);
  CHECK(elapsed < 40);  // not a speed figure: the other rank would sleep 60 s
  CHECK_THAT(r.err, Contains("rank 1") && Contains("exited with code 7"));
  // Rank 0 (the shell and its sleep, one process group) is gone; the orphaned
  // sleep may take a moment to be reaped by init.
  int pid0 = std::stoi(tess::test::read_file(dir / "pid.0"));
  auto t1 = std::chrono::steady_clock::now();
  while (kill(-pid0, 0) == 0 && seconds_since(t1) < 5) usleep(20000);
  int rc = kill(-pid0, 0);
  int err = errno;
  CHECK(rc == -1);
  CHECK(err == ESRCH);
}

TEST_CASE("ranks that ignore SIGTERM are killed after the grace period", "[unit][launch]") {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_tess("launch --nproc 2 --grace-seconds 1 --program /bin/sh -- -c "
                    "'trap \"\" TERM; if [ $RANK = 0 ]; then exit 3; fi; sleep 60'");
  double elapsed = seconds_since(t0);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 3);
  CHECK(elapsed < 40);  // not a speed figure: the rank ignoring SIGTERM would sleep 60 s
  CHECK_THAT(r.err, Contains("rank 0") && Contains("exited with code 3"));
  CHECK_THAT(r.err, Contains("SIGKILL"));
}

TEST_CASE("a rank killed by a signal is reported as 128+signal", "[unit][launch]") {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_tess("launch --nproc 2 --program /bin/sh -- -c "
                    "'if [ $RANK = 1 ]; then kill -9 $$; fi; sleep 60'");
  INFO(r.out << r.err);
  CHECK(r.exit_code == 128 + 9);
  CHECK(seconds_since(t0) < 20);
  CHECK_THAT(r.err, Contains("rank 1") && Contains("signal 9"));
}

TEST_CASE("many quick lines from several ranks arrive whole and in order", "[unit][launch]") {
  const int n = 3000;
  const std::string payload = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  auto r = run_tess("launch --nproc 3 --program /bin/sh -- -c "
                    "'i=0; while [ $i -lt " + std::to_string(n) + " ]; do "
                    "echo \"out $RANK $i " + payload + "\"; echo \"err $RANK $i\" >&2; i=$((i+1)); done; "
                    "head -c 200000 /dev/zero | tr \"\\0\" x; echo'");
  REQUIRE(r.exit_code == 0);
  std::map<int, int> next_out, next_err, long_lines;
  for (const auto& line : lines_of(r.out)) {
    REQUIRE_THAT(line, StartsWith("[rank "));
    int rank = line[6] - '0';
    std::string prefix = "[rank " + std::to_string(rank) + "] ";
    if (line == prefix + std::string(200000, 'x')) {
      ++long_lines[rank];
      continue;
    }
    int i = next_out[rank]++;
    REQUIRE(line == prefix + "out " + std::to_string(rank) + " " + std::to_string(i) + " " + payload);
  }
  for (const auto& line : lines_of(r.err)) {
    REQUIRE_THAT(line, StartsWith("[rank "));
    int rank = line[6] - '0';
    int i = next_err[rank]++;
    REQUIRE(line == "[rank " + std::to_string(rank) + "] err " + std::to_string(rank) + " " + std::to_string(i));
  }
  for (int rank = 0; rank < 3; ++rank) {
    CHECK(next_out[rank] == n);
    CHECK(next_err[rank] == n);
    CHECK(long_lines[rank] == 1);
  }
}

TEST_CASE("SIGTERM to the launcher is forwarded to every rank", "[unit][launch]") {
  tess::test::TempDir dir;
  const std::string d = dir.path().string();
  auto script = dir.write(
      "run.sh",
      "'" + std::string(TESS_BINARY) + "' launch --nproc 2 --program /bin/sh -- -c "
      "'trap \"echo stopping $RANK; exit 0\" TERM; touch " + d + "/ready.$RANK; while :; do sleep 0.1; done' &\n"
      "pid=$!\n"
      "while [ ! -e " + d + "/ready.0 ] || [ ! -e " + d + "/ready.1 ]; do sleep 0.05; done\n"
      "kill -TERM $pid\n"
      "wait $pid\n"
      "echo \"launch exit $?\"\n");
  auto t0 = std::chrono::steady_clock::now();
  auto r = tess::test::run_command("sh " + script.string());
  INFO(r.out << r.err);
  CHECK(seconds_since(t0) < 20);
  CHECK_THAT(r.out, Contains("[rank 0] stopping 0\n"));
  CHECK_THAT(r.out, Contains("[rank 1] stopping 1\n"));
  CHECK_THAT(r.out, Contains("launch exit 0\n"));
  CHECK_THAT(r.err, Contains("forwarded"));
}

TEST_CASE("launch without a command is an error", "[unit][launch]") {
  auto r = run_tess("launch --nproc 2");
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("nothing to launch"));
  auto bad = run_tess("launch --nproc 0 -- --version");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Contains("--nproc"));
}
