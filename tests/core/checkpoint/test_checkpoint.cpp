#include <catch2/catch.hpp>

#include <fstream>

#include "core/checkpoint/checkpoint.h"
#include "core/util/error.h"
#include "tests/support/test_support.h"

using namespace tess::checkpoint;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {
fs::path save(const fs::path& run, int64_t step, int world, int keep = 3) {
  CheckpointWriter w(run, step);
  fs::create_directories(w.staging_dir() / "model");
  std::ofstream(w.staging_dir() / "model" / "config.json") << "{\"step\": " << step << "}";
  for (int r = 0; r < world; ++r) std::ofstream(w.staging_dir() / rank_file_name(r)) << "rank " << r << " step " << step;
  Manifest m;
  m.step = step;
  m.world_size = world;
  m.stage = "adaptation";
  m.config_hash = "c0ffee";
  m.tokenizer_hash = "beef";
  return w.commit(m, keep);
}
}  // namespace

TEST_CASE("a committed checkpoint verifies, and latest points at it", "[unit][checkpoint]") {
  tess::test::TempDir run;
  auto dir = save(run.path(), 12, 2);
  CHECK(dir.filename() == "step_00000012");
  CHECK(latest_checkpoint(run.path()) == dir);
  auto m = verify_checkpoint(dir);
  CHECK(m.step == 12);
  CHECK(m.world_size == 2);
  CHECK(m.files.size() == 3);
  CHECK_FALSE(fs::exists(dir.parent_path() / "step_00000012.staging"));
}

TEST_CASE("corruption, truncation and missing files are named", "[unit][checkpoint]") {
  tess::test::TempDir run;
  auto dir = save(run.path(), 5, 2);
  std::ofstream(dir / "rank_00001.safetensors", std::ios::trunc) << "rank 1 step X";  // same size, other bytes
  CHECK_THROWS_WITH(verify_checkpoint(dir), Contains("rank_00001.safetensors") && Contains("sha256"));
  CHECK_NOTHROW(verify_checkpoint(dir, /*hash=*/false));  // checkpoint.verify=false skips hashing
  std::ofstream(dir / "rank_00001.safetensors", std::ios::trunc) << "short";
  CHECK_THROWS_WITH(verify_checkpoint(dir, false), Contains("has 5 bytes, the manifest says"));
  fs::remove(dir / "rank_00000.safetensors");
  CHECK_THROWS_WITH(verify_checkpoint(dir, false), Contains("'rank_00000.safetensors' is missing"));
  fs::remove(dir / "manifest.json");
  CHECK_THROWS_WITH(verify_checkpoint(dir), Contains("no manifest.json"));
}

TEST_CASE("retention keeps the newest and an interrupted save leaves the previous one intact", "[unit][checkpoint]") {
  tess::test::TempDir run;
  for (int64_t s : {10, 20, 30, 40}) save(run.path(), s, 1, 2);
  CHECK_FALSE(fs::exists(checkpoints_root(run.path()) / "step_00000010"));
  CHECK_FALSE(fs::exists(checkpoints_root(run.path()) / "step_00000020"));
  CHECK(fs::exists(checkpoints_root(run.path()) / "step_00000030"));
  // A save that dies before commit: staging exists, latest unchanged.
  CheckpointWriter crashed(run.path(), 50);
  std::ofstream(crashed.staging_dir() / rank_file_name(0)) << "partial";
  CHECK(latest_checkpoint(run.path())->filename() == "step_00000040");
  CHECK_NOTHROW(verify_checkpoint(*latest_checkpoint(run.path())));
  remove_stale_staging(run.path());
  CHECK_FALSE(fs::exists(crashed.staging_dir()));
}

TEST_CASE("random-stream states survive the hex encoding", "[unit][checkpoint]") {
  std::vector<uint8_t> bytes{0, 1, 127, 128, 255};
  CHECK(hex_encode(bytes) == "00017f80ff");
  CHECK(hex_decode("00017f80ff", "x") == bytes);
  CHECK_THROWS_AS(hex_decode("0g", "x"), tess::Error);
}
