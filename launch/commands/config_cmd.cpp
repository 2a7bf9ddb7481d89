// `tess config dump|docs`: inspect the effective configuration and keep the
// generated reference in sync with the schema.
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/config/config.h"
#include "core/util/error.h"
#include "launch/cli.h"

namespace tess::cli {
namespace {

struct ConfigArgs {
  std::string file;
  std::vector<std::string> sets;
  bool origins = false;
  std::string docs_output = "docs/configs.md";
  bool check = false;
};

int dump(const ConfigArgs& a) {
  auto cfg = config::Config::load(a.file, a.sets);
  std::cout << fmt::format("# Effective tess configuration (hash {}) from {}\n", cfg.hash(), a.file)
            << cfg.to_yaml(a.origins);
  return 0;
}

int docs(const ConfigArgs& a) {
  std::string text = config::render_markdown(config::schema());
  if (a.check) {
    std::ifstream in(a.docs_output);
    std::stringstream current;
    current << in.rdbuf();
    if (!in || current.str() != text)
      throw Error(fmt::format("'{}' is stale: regenerate it with `tess config docs --output {}`",
                              a.docs_output, a.docs_output));
    std::cout << a.docs_output << " is up to date\n";
    return 0;
  }
  std::ofstream out(a.docs_output);
  if (!out) throw Error(fmt::format("cannot write '{}'", a.docs_output));
  out << text;
  out.close();
  if (!out) throw Error(fmt::format("failed writing '{}' (disk full?)", a.docs_output));
  std::cout << fmt::format("wrote {} ({} keys)\n", a.docs_output, config::schema().keys().size());
  return 0;
}

}  // namespace

void add_config_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ConfigArgs>();
  auto* cmd = app.add_subcommand("config", "Inspect configurations and the config reference");
  cmd->require_subcommand(1);

  auto* d = cmd->add_subcommand("dump", "Print the effective merged configuration as re-loadable YAML");
  d->add_option("CONFIG", args->file, "YAML config file")->required();
  d->add_option("--set", args->sets, "Override a key: --set train.lr=3e-5 (repeatable)")
      ->allow_extra_args(false);
  d->add_flag("--origins", args->origins, "Comment each non-default value with where it was set");
  d->callback([&action, args] { action = [args] { return dump(*args); }; });

  auto* g = cmd->add_subcommand("docs", "Write the config reference (docs/configs.md) from the schema");
  g->add_option("--output", args->docs_output, "Markdown file to write")->capture_default_str();
  g->add_flag("--check", args->check, "Fail if the file differs from the schema instead of writing it");
  g->callback([&action, args] { action = [args] { return docs(*args); }; });
}

}  // namespace tess::cli
