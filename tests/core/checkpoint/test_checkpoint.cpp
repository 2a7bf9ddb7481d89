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
  auto repaired = recover_checkpoints(run.path());
  REQUIRE(repaired.size() == 1);
  CHECK_THAT(repaired[0], Contains("removed step_00000050.staging, a save interrupted before its manifest"));
  CHECK_FALSE(fs::exists(crashed.staging_dir()));
}

// A fresh run into an old directory, or a run resumed from an older
// checkpoint, saves steps below the newest on disk: retention goes by commit
// order, so the new saves stay and `latest` never names a deleted one.
TEST_CASE("retention keeps the newest commits, not the highest steps, and never what latest names",
          "[unit][checkpoint]") {
  tess::test::TempDir run;
  for (int64_t s : {10, 20}) save(run.path(), s, 1, 2);
  save(run.path(), 4, 1, 2);
  auto dir = save(run.path(), 5, 1, 2);
  CHECK(latest_checkpoint(run.path()) == dir);
  auto kept = committed_checkpoints(run.path());
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].dir.filename() == "step_00000004");
  CHECK(kept[1].dir.filename() == "step_00000005");
  CHECK(kept[0].manifest.commit == 3);
  CHECK(kept[1].manifest.commit == 4);
  CHECK_NOTHROW(verify_checkpoint(*latest_checkpoint(run.path())));
}

TEST_CASE("recovery finishes a commit interrupted after its manifest and repairs a missing or dangling latest",
          "[unit][checkpoint]") {
  tess::test::TempDir run;
  auto root = checkpoints_root(run.path());
  save(run.path(), 10, 1);
  auto second = save(run.path(), 20, 1);
  SECTION("a staging directory with its manifest is renamed into place, replacing an earlier save of its step") {
    fs::rename(second, root / "step_00000020.staging");  // as if killed between the manifest and the rename
    fs::create_directories(second);  // ... of a re-save: the old step_20 is still there
    auto done = recover_checkpoints(run.path());
    REQUIRE(done.size() == 1);
    CHECK_THAT(done[0], Contains("finished the commit of step_00000020"));
    CHECK(verify_checkpoint(second).step == 20);
    CHECK(latest_checkpoint(run.path()) == second);
  }
  SECTION("latest naming a directory that is gone points at the newest complete checkpoint again") {
    std::ofstream(root / "latest") << "step_00000030\n";
    auto done = recover_checkpoints(run.path());
    REQUIRE(done.size() == 1);
    CHECK_THAT(done[0], Contains("'latest' named step_00000030, which does not exist: it now names step_00000020"));
    CHECK(latest_checkpoint(run.path()) == second);
  }
  SECTION("no latest at all") {
    fs::remove(root / "latest");
    auto done = recover_checkpoints(run.path());
    REQUIRE(done.size() == 1);
    CHECK_THAT(done[0], Contains("no 'latest' pointer: it now names step_00000020"));
    CHECK(latest_checkpoint(run.path()) == second);
  }
  SECTION("nothing to repair") { CHECK(recover_checkpoints(run.path()).empty()); }
}

TEST_CASE("every manifest field is validated where manifests are read", "[unit][checkpoint]") {
  tess::test::TempDir run;
  auto dir = save(run.path(), 7, 2);
  auto text = tess::test::read_file(dir / "manifest.json");
  auto with = [&](const std::string& from, const std::string& to) {
    auto t = text;
    auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    return t.replace(at, from.size(), to);
  };
  auto error = [&](const std::string& manifest) {
    std::ofstream(dir / "manifest.json", std::ios::trunc) << manifest;
    return tess::test::error_of([&] { verify_checkpoint(dir); });
  };
  CHECK_THAT(error(with("\"world_size\": 2", "\"world_size\": 0")),
             Contains("manifest.json: world_size 0 is not a number of processes"));
  CHECK_THAT(error(with("\"step\": 7", "\"step\": -7")), Contains("step -7 is negative"));
  CHECK_THAT(error(with("\"world_size\": 2", "\"world_size\": 3")),
             Contains("lists no rank_00002.safetensors although world_size is 3"));
  CHECK_THAT(error(with("\"path\": \"rank_00000.safetensors\"", "\"path\": \"../../etc/passwd\"")),
             Contains("file path '../../etc/passwd' is not inside the checkpoint"));
  CHECK_THAT(error(with("\"stage\": \"adaptation\"", "\"stage\": 3")), Contains("not a valid checkpoint manifest"));
  std::ofstream(dir / "manifest.json", std::ios::trunc) << text;
  CHECK(verify_checkpoint(dir).step == 7);
}

TEST_CASE("random-stream states survive the hex encoding", "[unit][checkpoint]") {
  std::vector<uint8_t> bytes{0, 1, 127, 128, 255};
  CHECK(hex_encode(bytes) == "00017f80ff");
  CHECK(hex_decode("00017f80ff", "x") == bytes);
  CHECK_THROWS_AS(hex_decode("0g", "x"), tess::Error);
}
