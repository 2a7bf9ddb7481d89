#pragma once
// The effective configuration of a run: schema defaults < YAML file (with
// `base:` inheritance) < `--set key=value` overrides. Every value remembers
// where it came from so that errors and `tess config dump` can say so.
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/schema.h"

namespace tess::config {

// Where a value was set: "default", "path/to.yaml:12:5" or "--set train.lr=1e-4".
struct Origin {
  std::string where = "default";
};

class Config {
 public:
  // Defaults of every key of `schema` (required keys stay unset).
  explicit Config(const Schema& schema = config::schema());

  // The usual entry point: defaults, then `yaml_path` (if not empty), then the
  // overrides in order; finally checks that required keys are set.
  static Config load(const std::filesystem::path& yaml_path,
                     const std::vector<std::string>& overrides = {},
                     const Schema& schema = config::schema());
  // Same, from YAML text (for tests and `--config -`); `name` is used in errors
  // and `base:` is resolved from `base_dir`.
  static Config load_string(const std::string& yaml, const std::string& name,
                            const std::vector<std::string>& overrides = {},
                            const std::filesystem::path& base_dir = ".",
                            const Schema& schema = config::schema());

  void merge_file(const std::filesystem::path& path);
  void merge_string(const std::string& yaml, const std::string& name,
                    const std::filesystem::path& base_dir);
  // "key=value" with value in YAML syntax ("3e-5", "true", "[a, b]"); the
  // origin is `where` (default "--set key=value"), e.g. the flag that set it.
  void apply_override(const std::string& assignment, const std::string& where = "");
  // Throws tess::Error naming each required key that is still unset.
  void require_complete() const;

  bool has(std::string_view key) const;
  const Value& value(std::string_view key) const;
  const Origin& origin(std::string_view key) const;

  bool get_bool(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<int64_t>& get_int_list(std::string_view key) const;
  const std::vector<double>& get_float_list(std::string_view key) const;
  const std::vector<std::string>& get_string_list(std::string_view key) const;

  // Keys set by the user (file or --set) that no component has read so far.
  // A run checks this after building its components, so that a key the chosen
  // stage does not use is an error rather than silently ignored.
  std::vector<std::string> unused_user_keys() const;

  // Programmatic assignment (validated like any other layer).
  void set(std::string_view key, Value value, Origin origin);

  // Effective configuration as YAML, grouped by section in schema order.
  // Loading it again gives the same hash. With `with_origins`, each value that
  // is not a default carries a comment saying where it was set.
  std::string to_yaml(bool with_origins = false) const;
  // Every schema key's value in canonical text (format_value; "<unset>" for
  // an unset required key): what hash() covers, and what a checkpoint keeps
  // so that a resume can name the keys that changed.
  std::map<std::string, std::string> canonical_values() const;
  // Stable content hash (16 hex digits of SHA-256 over the canonical values).
  std::string hash() const;

  const Schema& schema() const { return *schema_; }

 private:
  struct Entry {
    Value value;
    Origin origin;
  };
  const Entry& entry(std::string_view key, Type expected) const;
  void merge_document(const std::string& text, const std::string& name,
                      const std::filesystem::path& base_dir,
                      std::vector<std::filesystem::path>& stack);
  void merge_path(const std::filesystem::path& path, const std::string& included_from,
                  std::vector<std::filesystem::path>& stack);

  const Schema* schema_;
  std::map<std::string, Entry, std::less<>> values_;
  mutable std::set<std::string, std::less<>> read_;
};

}  // namespace tess::config
