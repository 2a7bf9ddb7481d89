#include "train/checkpoint_saver.h"

#include <chrono>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/dist/dist.h"
#include "core/model/safetensors.h"
#include "core/util/cpu.h"
#include "core/util/error.h"

namespace tess::train {
namespace fs = std::filesystem;

namespace {

std::string report_key(int64_t serial, int rank) { return fmt::format("checkpoint/{}/rank{}", serial, rank); }

}  // namespace

CheckpointSaver::CheckpointSaver(fs::path run_dir, dist::Dist& dist, int keep_last, bool asynchronous,
                                 double timeout_s)
    : run_dir_(std::move(run_dir)), dist_(dist), keep_last_(keep_last), asynchronous_(asynchronous),
      timeout_s_(timeout_s) {}

CheckpointSaver::~CheckpointSaver() {
  join();
  if (error_) {
    try {
      std::rethrow_exception(error_);
    } catch (const std::exception& e) {
      spdlog::error("the last checkpoint save failed: {}", e.what());
    }
  }
}

void CheckpointSaver::join() {
  if (writer_.joinable()) writer_.join();
}

void CheckpointSaver::check() {
  if (!finished_.load()) return;
  join();
  std::lock_guard<std::mutex> lock(error_mutex_);
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void CheckpointSaver::wait() {
  join();
  check();
}

void CheckpointSaver::wait_copied() {
  std::unique_lock<std::mutex> lock(copy_mutex_);
  copy_done_.wait(lock, [this] { return copied_; });
}

void CheckpointSaver::mark_copied() {
  {
    std::lock_guard<std::mutex> lock(copy_mutex_);
    copied_ = true;
  }
  copy_done_.notify_all();
}

void CheckpointSaver::save(CheckpointSnapshot snapshot) {
  wait();
  int64_t serial = ++serial_;
  // Rank 0 (re)creates the staging directory before anyone writes into it.
  { checkpoint::CheckpointWriter prepare(run_dir_, snapshot.step, /*prepare=*/dist_.is_main()); }
  dist_.barrier("checkpoint directory ready");
  if (!asynchronous_) {
    write(std::move(snapshot), serial);
    check();
    return;
  }
  finished_.store(false);
  {
    std::lock_guard<std::mutex> lock(copy_mutex_);
    copied_ = false;
  }
  writer_ = std::thread([this, s = std::move(snapshot), serial]() mutable {
    if (!util::run_this_thread_when_idle()) spdlog::debug("checkpoint writer: SCHED_IDLE refused, normal priority");
    write(std::move(s), serial);
  });
}

void CheckpointSaver::write(CheckpointSnapshot s, int64_t serial) {
  const int rank = dist_.rank();
  std::string status = "written";
  try {
    if (s.copies) s.copies->run();
    mark_copied();
    checkpoint::CheckpointWriter writer(run_dir_, s.step, /*prepare=*/false);
    model::write_safetensors(writer.staging_dir() / checkpoint::rank_file_name(rank), s.rank_tensors,
                             s.rank_metadata);
    if (dist_.is_main()) s.write_model(writer.staging_dir() / "model");
    dist_.publish(report_key(serial, rank), status);
    if (dist_.is_main()) {
      // Every rank's files must be there before the manifest is written.
      auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
      for (int r = 1; r < dist_.world_size(); ++r) {
        std::optional<std::string> report;
        while (!(report = dist_.lookup(report_key(serial, r)))) {
          if (std::chrono::steady_clock::now() > deadline)
            throw Error(fmt::format("checkpoint step {}: rank {} did not report its files within {} s", s.step, r,
                                    timeout_s_));
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        if (*report != "written")
          throw Error(fmt::format("checkpoint step {}: rank {} failed to write its files: {}", s.step, r, *report));
      }
      auto dir = writer.commit(s.manifest, keep_last_);
      spdlog::info("saved checkpoint {}", dir.string());
    }
  } catch (const std::exception& e) {
    status = e.what();
    if (status == "written") status = "failed";
    if (rank != 0) dist_.publish(report_key(serial, rank), status);  // rank 0 waits for this report
    std::lock_guard<std::mutex> lock(error_mutex_);
    error_ = std::make_exception_ptr(
        Error(fmt::format("checkpoint at step {} (rank {}): {}", s.step, rank, e.what())));
  }
  mark_copied();  // also when the copy itself failed: nothing reads the trainer's tensors any more
  finished_.store(true);
}

}  // namespace tess::train
