#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>

#include "core/util/error.h"
#include "core/util/tensorboard.h"
#include "tests/support/test_support.h"

using namespace tess::util;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("crc32c matches the Castagnoli test vectors", "[unit][util]") {
  CHECK(crc32c("") == 0x00000000u);
  CHECK(crc32c("a") == 0xC1D04330u);
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);  // RFC 3720 B.4
  CHECK(crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  CHECK(crc32c(ascending) == 0x46DD794Eu);
  // Incremental use continues the running CRC.
  CHECK(crc32c("6789", 4, crc32c("12345")) == 0xE3069283u);
  CHECK(mask_crc32c(0) == 0xa282ead8u);
  CHECK(mask_crc32c(0xE3069283u) == ((((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u)));
}

TEST_CASE("a TFRecord frame has the length, the data and their masked CRCs", "[unit][util]") {
  std::string data = "hello";
  std::string rec = tfrecord_frame(data);
  REQUIRE(rec.size() == 8 + 4 + data.size() + 4);
  CHECK(rec.substr(0, 8) == std::string("\x05\0\0\0\0\0\0\0", 8));
  auto u32 = [&](size_t off) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(rec[off + i])) << (8 * i);
    return v;
  };
  CHECK(u32(8) == mask_crc32c(crc32c(rec.substr(0, 8))));
  CHECK(rec.substr(12, 5) == data);
  CHECK(u32(17) == mask_crc32c(crc32c(data)));
}

TEST_CASE("TensorBoard reads the scalars the writer wrote", "[unit][util]") {
  tess::test::TempDir dir;
  auto logdir = dir / "runs" / "tb";  // created by the writer
  std::string event_file;
  {
    TensorBoardWriter w(logdir);
    event_file = w.path().filename().string();
    for (int step = 0; step < 5; ++step) {
      w.add_scalar("train/loss", 2.5 - 0.25 * step, step * 10);
      w.add_scalar("train/lr", 1e-4 * (step + 1), step * 10);
    }
    w.add_scalar("eval/exact_match", 0.123456789, 1234567890123LL);
    w.flush();
  }
  CHECK_THAT(event_file, StartsWith("events.out.tfevents."));
  CHECK_THAT(event_file, Contains(".tess"));

  auto script = dir.write("read.py", R"PY(
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
for tag in sorted(ea.Tags()["scalars"]):
    for e in ea.Scalars(tag):
        print(tag, e.step, repr(e.value))
)PY");
  auto r = tess::test::run_command(std::string(TESS_PYTHON) + " " + script.string() + " " + logdir.string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  std::istringstream lines(r.out);
  std::string tag;
  int64_t step;
  double value;
  int loss = 0, lr = 0, eval = 0;
  while (lines >> tag >> step >> value) {
    INFO(tag << " " << step << " " << value);
    if (tag == "train/loss") {
      CHECK(step == loss * 10);
      CHECK(value == Approx(2.5 - 0.25 * loss).epsilon(1e-6));
      ++loss;
    } else if (tag == "train/lr") {
      CHECK(step == lr * 10);
      CHECK(static_cast<float>(value) == static_cast<float>(1e-4 * (lr + 1)));
      ++lr;
    } else if (tag == "eval/exact_match") {
      CHECK(step == 1234567890123LL);
      CHECK(static_cast<float>(value) == static_cast<float>(0.123456789));
      ++eval;
    } else {
      FAIL("unexpected tag " << tag);
    }
  }
  CHECK(loss == 5);
  CHECK(lr == 5);
  CHECK(eval == 1);
}

TEST_CASE("TensorBoard writer errors name the path", "[unit][util]") {
  tess::test::TempDir dir;
  auto file = dir.write("not_a_dir", "x");
  CHECK_THROWS_AS(TensorBoardWriter(file / "tb"), tess::Error);
  CHECK_THROWS_WITH(TensorBoardWriter(file / "tb"), Contains((file / "tb").string()));

  // A full disk: the event file names of the next seconds point at /dev/full.
  if (std::filesystem::exists("/dev/full")) {
    auto logdir = dir / "full";
    std::filesystem::create_directories(logdir);
    char host[256] = {};
    REQUIRE(gethostname(host, sizeof host - 1) == 0);
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    for (auto t = now - 1; t <= now + 30; ++t)
      std::filesystem::create_symlink(
          "/dev/full", logdir / ("events.out.tfevents." + std::to_string(t) + "." + host + ".tess"));
    CHECK_THROWS_WITH(TensorBoardWriter(logdir), Contains(logdir.string()) && Contains("No space left"));
  }
}
