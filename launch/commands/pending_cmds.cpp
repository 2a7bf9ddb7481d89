// Subcommands that are part of the product's surface but whose implementation
// has not landed in this version. They show their purpose in --help and fail
// clearly instead of pretending to work.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "launch/cli.h"

namespace tess::cli {

void add_pending_commands(CLI::App& app, Action& action) {
  struct Pending {
    const char* name;
    const char* description;
  };
  static const Pending pending[] = {
      {"bench", "Measure peak, training, sampling, data and checkpoint throughput (JSON)"},
  };
  for (const auto& p : pending) {
    auto* cmd = app.add_subcommand(p.name, p.description);
    cmd->allow_extras();
    std::string name = p.name;
    cmd->callback([&action, name] {
      action = [name] {
        fmt::print(stderr, "error: `tess {}` is not implemented yet in this version of tess\n", name);
        return 3;
      };
    });
  }
}

}  // namespace tess::cli
