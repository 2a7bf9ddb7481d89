#include "launch/cli.h"

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/util/error.h"
#include "core/util/log.h"

namespace tess::cli {

int run(int argc, char** argv) {
  util::setup_logging({});
  CLI::App app{"tess: train, sample and evaluate TESS 2-style simplex diffusion language models"};
  app.require_subcommand(0, 1);  // none: show help (unknown options are reported first)
  app.failure_message(CLI::FailureMessage::help);  // a parse error shows the relevant help
  app.add_flag_callback(
      "--version",
      [] {
        std::cout << version_text();
        throw CLI::Success();
      },
      "Print version, git commit and the LibTorch/CUDA it runs on");

  Action action;
  add_config_command(app, action);
  add_model_command(app, action);
  add_debug_command(app, action);
  add_train_command(app, action);
  add_checkpoint_command(app, action);
  add_tokenize_command(app, action);
  add_launch_command(app, action);
  add_generate_command(app, action);
  add_eval_command(app, action);
  add_convert_command(app, action);
  add_bench_command(app, action);
  add_plan_command(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!action) {
    fmt::print(stderr, "{}\nerror: a subcommand is required\n", app.help());
    return 1;
  }
  try {
    return action();
  } catch (const Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "internal error: {}\n", e.what());
    return 2;
  }
}

}  // namespace tess::cli
