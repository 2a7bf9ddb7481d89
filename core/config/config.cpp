#include "core/config/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/sha256.h"

namespace tess::config {
namespace fs = std::filesystem;
namespace {

std::string at(const std::string& name, const YAML::Mark& mark) {
  if (mark.is_null()) return name;
  return fmt::format("{}:{}:{}", name, mark.line + 1, mark.column + 1);
}

std::string describe(const YAML::Node& node) {
  if (node.IsMap()) return "a mapping";
  if (node.IsSequence()) return "a list";
  if (node.IsNull()) return "nothing";
  return "'" + node.Scalar() + "'";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::optional<bool> parse_bool(const std::string& s) {
  auto l = lower(s);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return std::nullopt;
}

std::optional<int64_t> parse_int(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());  // 200_000
  if (!s.empty() && s[0] == '+') s.erase(0, 1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_float(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  auto l = lower(s);
  if (l == ".inf" || l == "+.inf") return HUGE_VAL;
  if (l == "-.inf") return -HUGE_VAL;
  if (s.empty() || l.find("nan") != std::string::npos || l.find("inf") != std::string::npos)
    return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return v;
}

// Converts one YAML node to a value of `spec`'s type; throws with `where`.
Value convert(const KeySpec& spec, const YAML::Node& node, const std::string& where) {
  auto fail = [&](const std::string& got) -> Error {
    return Error(fmt::format("{}: key '{}' expects {}, got {}", where, spec.key,
                             type_name(spec.type), got));
  };
  auto scalar = [&](Type t, const YAML::Node& n) -> Value {
    if (!n.IsScalar()) throw fail(describe(n));
    const std::string& s = n.Scalar();
    switch (t) {
      case Type::Bool:
        if (auto b = parse_bool(s)) return *b;
        break;
      case Type::Int:
        if (auto i = parse_int(s)) return *i;
        break;
      case Type::Float:
        if (auto d = parse_float(s)) return *d;
        break;
      default:
        return s;
    }
    throw fail("'" + s + "'");
  };
  if (!node.IsDefined() || node.IsNull()) throw fail("nothing (the value is missing)");
  auto element_list = [&](Type elem) {
    if (!node.IsSequence()) throw fail(describe(node) + " (write a list as [a, b])");
    std::vector<Value> items;
    for (const auto& n : node) items.push_back(scalar(elem, n));
    return items;
  };
  switch (spec.type) {
    case Type::IntList: {
      std::vector<int64_t> out;
      for (auto& v : element_list(Type::Int)) out.push_back(std::get<int64_t>(v));
      return out;
    }
    case Type::FloatList: {
      std::vector<double> out;
      for (auto& v : element_list(Type::Float)) out.push_back(std::get<double>(v));
      return out;
    }
    case Type::StringList: {
      std::vector<std::string> out;
      for (auto& v : element_list(Type::String)) out.push_back(std::get<std::string>(v));
      return out;
    }
    default:
      return scalar(spec.type, node);
  }
}

std::string unknown_key_message(const Schema& schema, const std::string& key) {
  auto near = schema.suggest(key);
  if (near.empty()) {
    std::string sections;
    for (const auto& s : schema.sections()) sections += (sections.empty() ? "" : ", ") + s.name;
    return fmt::format("unknown key '{}' (sections are: {})", key, sections);
  }
  std::string list;
  for (size_t i = 0; i < near.size(); ++i) list += (i ? "' or '" : "") + near[i];
  return fmt::format("unknown key '{}' (did you mean '{}'?)", key, list);
}


}  // namespace

Config::Config(const Schema& schema) : schema_(&schema) {
  for (const auto& k : schema.keys())
    if (k.default_value) values_[k.key] = Entry{*k.default_value, Origin{}};
}

Config Config::load(const fs::path& yaml_path, const std::vector<std::string>& overrides,
                    const Schema& schema) {
  Config cfg(schema);
  if (!yaml_path.empty()) cfg.merge_file(yaml_path);
  for (const auto& o : overrides) cfg.apply_override(o);
  cfg.require_complete();
  return cfg;
}

Config Config::load_string(const std::string& yaml, const std::string& name,
                           const std::vector<std::string>& overrides, const fs::path& base_dir,
                           const Schema& schema) {
  Config cfg(schema);
  cfg.merge_string(yaml, name, base_dir);
  for (const auto& o : overrides) cfg.apply_override(o);
  cfg.require_complete();
  return cfg;
}

void Config::merge_file(const fs::path& path) {
  std::vector<fs::path> stack;
  merge_path(path, "", stack);
}

void Config::merge_string(const std::string& yaml, const std::string& name,
                          const fs::path& base_dir) {
  std::vector<fs::path> stack;
  merge_document(yaml, name, base_dir, stack);
}

void Config::merge_path(const fs::path& path, const std::string& included_from,
                        std::vector<fs::path>& stack) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    if (fs::is_directory(path, ec))
      throw Error(fmt::format("{}{} '{}' is a directory, not a YAML file", included_from.empty() ? "" : included_from + ": ",
                              included_from.empty() ? "config file" : "base file", path.string()));
    if (included_from.empty())
      throw Error(fmt::format("config file '{}' not found", path.string()));
    throw Error(fmt::format("{}: base file '{}' not found", included_from, path.string()));
  }
  fs::path canonical = fs::weakly_canonical(fs::absolute(path));
  if (std::find(stack.begin(), stack.end(), canonical) != stack.end()) {
    std::string chain;
    for (const auto& p : stack) chain += p.filename().string() + " -> ";
    throw Error(fmt::format("{}: cyclic base: {}{}", included_from, chain,
                            canonical.filename().string()));
  }
  stack.push_back(canonical);
  merge_document(util::read_file(path, "config file"), path.lexically_normal().string(), path.parent_path(), stack);
  stack.pop_back();
}

void Config::merge_document(const std::string& text, const std::string& name,
                            const fs::path& base_dir, std::vector<fs::path>& stack) {
  YAML::Node root;
  try {
    // One document per file: a second one (after `---`) would be ignored silently.
    auto documents = YAML::LoadAll(text);
    if (documents.size() > 1)
      throw Error(fmt::format("{}: a second YAML document (after '---'); a config file holds one mapping",
                              at(name, documents[1].Mark())));
    if (!documents.empty()) root = documents.front();
  } catch (const YAML::ParserException& e) {
    throw Error(fmt::format("{}: YAML syntax error: {}", at(name, e.mark), e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) return;  // an empty file sets nothing
  if (!root.IsMap())
    throw Error(fmt::format("{}: expected a mapping of sections (run:, model:, ...), got {}",
                            at(name, root.Mark()), describe(root)));

  // `base:` first, so that this file's own values override what it inherits.
  for (const auto& kv : root) {
    if (kv.first.Scalar() != "base") continue;
    const YAML::Node& b = kv.second;
    std::vector<YAML::Node> items;
    if (b.IsScalar()) {
      items.push_back(b);
    } else if (b.IsSequence()) {
      for (const auto& n : b) items.push_back(n);
    } else {
      throw Error(fmt::format("{}: 'base' expects a file path or a list of paths, got {}",
                              at(name, b.Mark()), describe(b)));
    }
    for (const auto& item : items) {
      if (!item.IsScalar())
        throw Error(fmt::format("{}: 'base' entries must be file paths", at(name, item.Mark())));
      fs::path p = item.Scalar();
      if (p.is_relative()) p = base_dir / p;
      merge_path(p, at(name, item.Mark()), stack);
    }
  }

  std::map<std::string, std::string> seen;  // key -> where, to catch duplicates
  std::function<void(const YAML::Node&, const std::string&)> walk =
      [&](const YAML::Node& map, const std::string& prefix) {
        for (const auto& kv : map) {
          const YAML::Node& knode = kv.first;
          std::string where = at(name, knode.Mark());
          if (!knode.IsScalar())
            throw Error(fmt::format("{}: keys must be plain names", where));
          std::string full = prefix.empty() ? knode.Scalar() : prefix + "." + knode.Scalar();
          if (full == "base") continue;
          if (auto [it, fresh] = seen.emplace(full, where); !fresh)
            throw Error(fmt::format("{}: duplicate key '{}' (first set at {})", where, full,
                                    it->second));
          if (const KeySpec* spec = schema_->find(full)) {
            std::string vwhere = at(name, kv.second.Mark().is_null() ? knode.Mark() : kv.second.Mark());
            set(full, convert(*spec, kv.second, vwhere), Origin{vwhere});
          } else if (schema_->is_group(full)) {
            if (kv.second.IsMap()) {
              walk(kv.second, full);
            } else if (!kv.second.IsNull()) {
              throw Error(fmt::format("{}: '{}' is a section; expected a mapping of its keys, got {}",
                                      where, full, describe(kv.second)));
            }
          } else {
            throw Error(where + ": " + unknown_key_message(*schema_, full));
          }
        }
      };
  walk(root, "");
}

void Config::apply_override(const std::string& assignment, const std::string& origin) {
  std::string where = origin.empty() ? "--set " + assignment : origin;
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(fmt::format("{}: expected key=value (e.g. --set train.lr=3e-5)", where));
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  const KeySpec* spec = schema_->find(key);
  if (!spec) {
    if (schema_->is_group(key))
      throw Error(fmt::format("{}: '{}' is a section; set one of its keys, e.g. {}.<key>=...",
                              where, key, key));
    throw Error(where + ": " + unknown_key_message(*schema_, key));
  }
  // A string as typed (`--set 'run.dir=/tmp/a #b'` keeps its '#', which YAML
  // would read as a comment); quote it to use YAML's escapes.
  if (spec->type == Type::String && (text.empty() || (text.front() != '"' && text.front() != '\''))) {
    set(key, text, Origin{where});
    return;
  }
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw Error(fmt::format("{}: cannot parse value '{}': {}", where, text, e.msg));
  }
  set(key, convert(*spec, node, where), Origin{where});
}

void Config::set(std::string_view key, Value value, Origin origin) {
  const KeySpec* spec = schema_->find(key);
  if (!spec) throw Error(origin.where + ": " + unknown_key_message(*schema_, std::string(key)));
  if (type_of(value) != spec->type)
    throw Error(fmt::format("{}: key '{}' expects {}, got {}", origin.where, key,
                            type_name(spec->type), type_name(type_of(value))));
  if (auto problem = spec->check(value); !problem.empty())
    throw Error(fmt::format("{}: key '{}' = {} is out of range: expected {}", origin.where, key,
                            format_value(value), problem));
  values_[std::string(key)] = Entry{std::move(value), std::move(origin)};
}

void Config::require_complete() const {
  std::vector<std::string> missing;
  for (const auto& k : schema_->keys())
    if (!values_.count(k.key)) missing.push_back(k.key);
  if (missing.empty()) return;
  std::string msg = "missing required key";
  msg += missing.size() > 1 ? "s: " : ": ";
  for (size_t i = 0; i < missing.size(); ++i) {
    const KeySpec* spec = schema_->find(missing[i]);
    msg += fmt::format("{}'{}' ({}{}{})", i ? ", " : "", missing[i], type_name(spec->type),
                       spec->choices.empty() ? "" : ", " + spec->allowed_text(),
                       spec->doc.empty() ? "" : ": " + spec->doc);
  }
  msg += "; set it in the YAML file or with --set KEY=VALUE";
  throw Error(msg);
}

bool Config::has(std::string_view key) const { return values_.find(key) != values_.end(); }

const Config::Entry& Config::entry(std::string_view key, Type expected) const {
  const KeySpec* spec = schema_->find(key);
  if (!spec) throw std::logic_error("config key not in the schema: " + std::string(key));
  if (spec->type != expected)
    throw std::logic_error(fmt::format("config key '{}' is {}, read as {}", key,
                                       type_name(spec->type), type_name(expected)));
  auto it = values_.find(key);
  if (it == values_.end()) throw Error(fmt::format("config key '{}' is not set", key));
  read_.insert(it->first);
  return it->second;
}

std::vector<std::string> Config::unused_user_keys() const {
  std::vector<std::string> out;
  for (const auto& [key, e] : values_)
    if (e.origin.where != "default" && !read_.count(key)) out.push_back(key);
  return out;
}

const Value& Config::value(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw Error(fmt::format("config key '{}' is not set", key));
  read_.insert(it->first);
  return it->second.value;
}

const Origin& Config::origin(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw Error(fmt::format("config key '{}' is not set", key));
  return it->second.origin;
}

bool Config::get_bool(std::string_view k) const { return std::get<bool>(entry(k, Type::Bool).value); }
int64_t Config::get_int(std::string_view k) const { return std::get<int64_t>(entry(k, Type::Int).value); }
double Config::get_float(std::string_view k) const { return std::get<double>(entry(k, Type::Float).value); }
const std::string& Config::get_string(std::string_view k) const {
  return std::get<std::string>(entry(k, Type::String).value);
}
const std::vector<int64_t>& Config::get_int_list(std::string_view k) const {
  return std::get<std::vector<int64_t>>(entry(k, Type::IntList).value);
}
const std::vector<double>& Config::get_float_list(std::string_view k) const {
  return std::get<std::vector<double>>(entry(k, Type::FloatList).value);
}
const std::vector<std::string>& Config::get_string_list(std::string_view k) const {
  return std::get<std::vector<std::string>>(entry(k, Type::StringList).value);
}

std::string Config::to_yaml(bool with_origins) const {
  std::string out;
  std::vector<std::string> open;  // path components of the mapping we are in
  for (const auto& k : schema_->keys()) {
    std::vector<std::string> parts;
    for (size_t start = 0;;) {
      auto dot = k.key.find('.', start);
      parts.push_back(k.key.substr(start, dot - start));
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common])
      ++common;
    open.resize(common);
    for (size_t d = common; d + 1 < parts.size(); ++d) {
      if (d == 0 && !out.empty()) out += "\n";
      out += std::string(2 * d, ' ') + parts[d] + ":\n";
      open.push_back(parts[d]);
    }
    std::string indent(2 * (parts.size() - 1), ' ');
    auto it = values_.find(k.key);
    if (it == values_.end()) {
      out += indent + "# " + parts.back() + ": (required, not set)\n";
      continue;
    }
    out += indent + parts.back() + ": " + format_value(it->second.value);
    if (with_origins && it->second.origin.where != "default")
      out += "  # " + it->second.origin.where;
    out += "\n";
  }
  return out;
}

std::map<std::string, std::string> Config::canonical_values() const {
  std::map<std::string, std::string> out;
  for (const auto& k : schema_->keys()) {
    auto it = values_.find(k.key);
    out[k.key] = it == values_.end() ? "<unset>" : format_value(it->second.value);
  }
  return out;
}

std::string Config::hash() const {
  std::string canonical;
  auto values = canonical_values();
  for (const auto& k : schema_->keys()) canonical += k.key + "=" + values.at(k.key) + "\n";
  return util::sha256_hex(canonical).substr(0, 16);
}

}  // namespace tess::config
