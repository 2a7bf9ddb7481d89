#include "core/util/log.h"

#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/util/error.h"

namespace tess::util {
namespace {
int g_rank = 0;
std::mutex g_error_mutex;
std::string g_write_error;  // the first failure, when it stops the run
bool g_write_failed = false;
}  // namespace

void setup_logging(const LogSetup& setup) {
  g_rank = setup.rank;
  std::string rank_tag = setup.world_size > 1 ? fmt::format("[rank {}] ", setup.rank) : "";
  std::vector<spdlog::sink_ptr> sinks;
  if (setup.rank == 0 || setup.console_all_ranks) {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_pattern("[%H:%M:%S] " + rank_tag + "%^%l%$ %v");
    sinks.push_back(console);
  }
  if (!setup.file.empty()) {
    std::error_code ec;
    if (setup.file.has_parent_path()) std::filesystem::create_directories(setup.file.parent_path(), ec);
    try {
      auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(setup.file.string());
      file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] " + rank_tag + "%l %v");
      sinks.push_back(file);
    } catch (const spdlog::spdlog_ex& e) {
      throw Error(fmt::format("cannot open log file '{}': {}", setup.file.string(), e.what()));
    }
  }
  auto logger = std::make_shared<spdlog::logger>("tess", sinks.begin(), sinks.end());
  {
    std::lock_guard<std::mutex> lock(g_error_mutex);
    g_write_error.clear();
    g_write_failed = false;
  }
  logger->set_error_handler([file = setup.file.string(), stop = setup.stop_on_write_error](const std::string& why) {
    std::lock_guard<std::mutex> lock(g_error_mutex);
    if (g_write_failed) return;
    g_write_failed = true;
    auto message = fmt::format("cannot write the log file '{}': {}", file, why);
    if (stop) g_write_error = message;
    std::fprintf(stderr, "tess: %s%s\n", message.c_str(),
                 stop ? "" : " (log.on_write_error: warn; training goes on, the log file is incomplete)");
  });
  auto level = spdlog::level::from_str(setup.level);
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  if (auto old = spdlog::default_logger()) old->flush();
  spdlog::set_default_logger(logger);
}

int log_rank() { return g_rank; }

std::string log_write_error() {
  std::lock_guard<std::mutex> lock(g_error_mutex);
  return g_write_error;
}

}  // namespace tess::util
