// CheckpointSaver: a background save commits the same checkpoint a
// synchronous one does, one save is in flight at a time, and a failed
// background write is reported at the next check() while the previous
// checkpoint stays the latest.
#include <catch2/catch.hpp>

#include <fstream>

#include <torch/torch.h>

#include "core/checkpoint/checkpoint.h"
#include "core/dist/dist.h"
#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "tests/support/test_support.h"
#include "train/checkpoint_saver.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using tess::checkpoint::latest_checkpoint;
using tess::checkpoint::verify_checkpoint;
using tess::train::CheckpointSaver;
using tess::train::CheckpointSnapshot;

namespace {

CheckpointSnapshot snapshot(int64_t step, const torch::Tensor& state, bool fail_model = false) {
  CheckpointSnapshot s;
  s.step = step;
  s.rank_tensors = {{"w.exp_avg", state}};
  s.rank_metadata = {{"step", std::to_string(step)}};
  s.write_model = [fail_model, step](const fs::path& dir) {
    if (fail_model) throw tess::Error(fmt::format("cannot write '{}': No space left on device", (dir / "x").string()));
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << "{\"step\": " << step << "}\n";
  };
  s.manifest.step = step;
  s.manifest.stage = "test";
  return s;
}

}  // namespace

TEST_CASE("a background checkpoint save commits what a synchronous one does", "[unit][train]") {
  tess::test::TempDir dir;
  tess::dist::Dist single;
  auto state = torch::arange(1000, torch::kFloat32);
  {
    CheckpointSaver sync(dir / "sync", single, 2, /*asynchronous=*/false, 10);
    sync.save(snapshot(5, state.clone()));
  }
  CheckpointSaver async(dir / "async", single, 2, /*asynchronous=*/true, 10);
  async.save(snapshot(5, state.clone()));
  async.wait();
  auto a = verify_checkpoint(*latest_checkpoint(dir / "sync"));
  auto b = verify_checkpoint(*latest_checkpoint(dir / "async"));
  REQUIRE(a.files.size() == b.files.size());
  for (size_t i = 0; i < a.files.size(); ++i) {
    CHECK(a.files[i].path == b.files[i].path);
    CHECK(a.files[i].sha256 == b.files[i].sha256);
  }
  // Retention and `latest` work the same from the writer thread.
  for (int64_t step : {10, 15, 20}) async.save(snapshot(step, state.clone()));
  async.wait();
  CHECK(latest_checkpoint(dir / "async")->filename() == "step_00000020");
  int complete = 0;
  for (const auto& e : fs::directory_iterator(dir / "async/checkpoints"))
    complete += e.is_directory() && e.path().filename().string().find('.') == std::string::npos;
  CHECK(complete == 2);
  tess::model::SafetensorsFile f(*latest_checkpoint(dir / "async") / tess::checkpoint::rank_file_name(0));
  CHECK(torch::equal(f.load("w.exp_avg"), state));
}

TEST_CASE("a failed background save is reported at the next check and keeps the previous checkpoint",
          "[unit][train]") {
  tess::test::TempDir dir;
  tess::dist::Dist single;
  CheckpointSaver saver(dir.path(), single, 3, /*asynchronous=*/true, 10);
  saver.save(snapshot(4, torch::ones({8})));
  saver.wait();
  saver.save(snapshot(8, torch::ones({8}), /*fail_model=*/true));
  std::string error;
  try {
    saver.wait();
  } catch (const tess::Error& e) {
    error = e.what();
  }
  CHECK_THAT(error, Contains("checkpoint at step 8 (rank 0)") && Contains("No space left on device"));
  CHECK(latest_checkpoint(dir.path())->filename() == "step_00000004");
  CHECK_NOTHROW(verify_checkpoint(*latest_checkpoint(dir.path())));
  saver.check();  // reported once
  saver.save(snapshot(12, torch::ones({8})));  // the next save works again
  saver.wait();
  CHECK(latest_checkpoint(dir.path())->filename() == "step_00000012");
}

TEST_CASE("an asynchronous save writes its deferred copies as of the save, whatever the trainer changes after "
          "wait_copied",
          "[unit][train]") {
  tess::test::TempDir dir;
  tess::dist::Dist single;
  CheckpointSaver saver(dir.path(), single, 2, /*asynchronous=*/true, 10);
  // Large enough (64 MB) that the writer is still copying when save() returns.
  auto moments = torch::arange(16 << 20, torch::kFloat32);
  auto expected = moments.clone();
  auto s = snapshot(3, moments);
  s.copies = std::make_shared<tess::checkpoint::DeferredCopies>();
  s.copies->take_all(s.rank_tensors);
  saver.save(std::move(s));
  saver.wait_copied();
  moments.fill_(-1);  // the optimizer step after the save
  saver.wait();
  tess::model::SafetensorsFile f(*latest_checkpoint(dir.path()) / tess::checkpoint::rank_file_name(0));
  CHECK(torch::equal(f.load("w.exp_avg"), expected));
  saver.wait_copied();  // nothing in flight: returns at once
}
