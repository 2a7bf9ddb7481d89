#pragma once
// The one registry of configuration keys. Every key a run can read is declared
// here with its type, default, allowed values and a one-line doc; the loader
// rejects anything else, and docs/configs.md is generated from it. Later
// features add keys (in keys.cpp), never a second mechanism.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tess::config {

enum class Type { Bool, Int, Float, String, IntList, FloatList, StringList };

using Value = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                           std::vector<double>, std::vector<std::string>>;

std::string_view type_name(Type type);
Type type_of(const Value& value);

// Canonical text of a value: YAML that reads back to the same value. Floats use
// the shortest representation that round-trips, so hashes are stable.
std::string format_value(const Value& value);

struct KeySpec {
  std::string key;                     // dotted path, e.g. "train.lr"
  Type type = Type::String;
  std::optional<Value> default_value;  // absent: the key is required
  std::optional<double> min;           // numeric keys (and list elements)
  std::optional<double> max;
  bool min_exclusive = false;
  std::vector<std::string> choices;    // string keys (and list elements)
  std::string doc;

  bool required() const { return !default_value.has_value(); }
  std::string section() const { return key.substr(0, key.find('.')); }
  // Empty when `value` is allowed, else what was expected ("a value >= 0", ...).
  std::string check(const Value& value) const;
  std::string allowed_text() const;
};

struct SectionSpec {
  std::string name;
  std::string doc;
};

class Schema {
 public:
  // Builder returned by add(): `s.add("train.lr", 1e-5, "...").range(0, 1)`.
  class KeyBuilder {
   public:
    explicit KeyBuilder(KeySpec& spec) : spec_(spec) {}
    KeyBuilder& min(double v) { spec_.min = v; return *this; }
    KeyBuilder& above(double v) { spec_.min = v; spec_.min_exclusive = true; return *this; }
    KeyBuilder& max(double v) { spec_.max = v; return *this; }
    KeyBuilder& range(double lo, double hi) { spec_.min = lo; spec_.max = hi; return *this; }
    KeyBuilder& choices(std::vector<std::string> c) { spec_.choices = std::move(c); return *this; }
   private:
    KeySpec& spec_;
  };

  void section(std::string name, std::string doc);
  KeyBuilder add(std::string key, Value default_value, std::string doc);
  KeyBuilder add(std::string key, const char* default_value, std::string doc) {
    return add(std::move(key), Value(std::string(default_value)), std::move(doc));
  }
  // Exact overloads, so that literals never convert to the wrong type
  // (bool would promote to int, and 0.0 would convert to int, before Value).
  KeyBuilder add(std::string key, int default_value, std::string doc) {
    return add(std::move(key), Value(int64_t{default_value}), std::move(doc));
  }
  KeyBuilder add(std::string key, bool default_value, std::string doc) {
    return add(std::move(key), Value(default_value), std::move(doc));
  }
  KeyBuilder add(std::string key, double default_value, std::string doc) {
    return add(std::move(key), Value(default_value), std::move(doc));
  }
  KeyBuilder required(std::string key, Type type, std::string doc);

  const KeySpec* find(std::string_view key) const;
  // True when `prefix` names a section or an intermediate level ("data.ul2").
  bool is_group(std::string_view prefix) const;
  // The registered keys closest to `key` (edit distance; ties, at most three).
  std::vector<std::string> suggest(std::string_view key) const;

  const std::vector<KeySpec>& keys() const { return keys_; }
  const std::vector<SectionSpec>& sections() const { return sections_; }

 private:
  KeySpec& insert(KeySpec spec);
  std::vector<SectionSpec> sections_;
  std::vector<KeySpec> keys_;  // in declaration order, grouped by section
};

// The registry of tess itself (built once, from keys.cpp).
const Schema& schema();

// Markdown reference of every key (docs/configs.md).
std::string render_markdown(const Schema& schema);

}  // namespace tess::config
