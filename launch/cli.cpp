#include "launch/cli.h"

#include <algorithm>

#include <cstdio>
#include <iostream>
#include <sstream>

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
  add_serve_command(app, action);

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
    fmt::print(stderr, "internal error: {}\n", without_backtrace(e.what()));
    return 2;
  }
}

std::vector<int64_t> parse_int_list(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  std::string spaced = text;
  std::replace(spaced.begin(), spaced.end(), ',', ' ');  // "1 2 3" and "1,2,3" alike
  std::istringstream in(spaced);
  for (std::string tok; in >> tok;) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(tok, &used));
      if (used != tok.size()) throw std::invalid_argument(tok);
    } catch (const std::exception&) {
      throw Error(fmt::format("{}: '{}' is not an integer", flag, tok));
    }
  }
  return out;
}

std::vector<int64_t> parse_token_ids(const std::string& text, const char* flag, int64_t vocab) {
  auto ids = parse_int_list(text, flag);
  if (ids.empty()) throw Error(fmt::format("{}: give at least one token id, e.g. {} \"1 5 9\"", flag, flag));
  for (auto id : ids)
    if (id < 0 || id >= vocab)
      throw Error(fmt::format("{}: token id {} is outside the vocabulary [0, {})", flag, id, vocab));
  return ids;
}

}  // namespace tess::cli
