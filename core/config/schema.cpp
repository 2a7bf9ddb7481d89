#include "core/config/schema.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace tess::config {
namespace {

std::string format_double(double v) {
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  if (std::isnan(v)) return ".nan";
  std::string s = fmt::format("{}", v);  // shortest round-trip representation
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

template <typename T, typename F>
std::string format_list(const std::vector<T>& items, F&& one) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += one(items[i]);
  }
  return out + "]";
}

std::string format_bound(double v) {
  if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string_view last_component(std::string_view key) {
  auto dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::string_view type_name(Type type) {
  switch (type) {
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "string";
    case Type::IntList: return "list of int";
    case Type::FloatList: return "list of float";
    case Type::StringList: return "list of string";
  }
  return "?";
}

Type type_of(const Value& value) { return static_cast<Type>(value.index()); }

std::string format_value(const Value& value) {
  struct Visitor {
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return format_double(v); }
    std::string operator()(const std::string& v) const { return quote(v); }
    std::string operator()(const std::vector<int64_t>& v) const {
      return format_list(v, [](int64_t x) { return std::to_string(x); });
    }
    std::string operator()(const std::vector<double>& v) const { return format_list(v, format_double); }
    std::string operator()(const std::vector<std::string>& v) const { return format_list(v, quote); }
  };
  return std::visit(Visitor{}, value);
}

std::string KeySpec::check(const Value& value) const {
  auto check_number = [&](double v) -> std::string {
    // inf and nan (YAML's .inf/.nan, or 1e309) are never a setting: a finite
    // value is expected whatever the range.
    if (!std::isfinite(v)) {
      auto text = allowed_text();
      if (text == "any value") return "a finite number";
      if (text.rfind("a value ", 0) == 0) return "a finite value " + text.substr(8);
      return text;
    }
    bool low = min && (min_exclusive ? !(v > *min) : !(v >= *min));
    bool high = max && !(v <= *max);
    if (std::isnan(v) || low || high) return allowed_text();
    return {};
  };
  auto check_choice = [&](const std::string& v) -> std::string {
    if (choices.empty() || std::find(choices.begin(), choices.end(), v) != choices.end()) return {};
    return allowed_text();
  };
  if (auto* i = std::get_if<int64_t>(&value)) return check_number(static_cast<double>(*i));
  if (auto* d = std::get_if<double>(&value)) return check_number(*d);
  if (auto* s = std::get_if<std::string>(&value)) return check_choice(*s);
  if (auto* il = std::get_if<std::vector<int64_t>>(&value)) {
    for (auto v : *il)
      if (auto e = check_number(static_cast<double>(v)); !e.empty()) return "every element " + e;
  }
  if (auto* dl = std::get_if<std::vector<double>>(&value)) {
    for (auto v : *dl)
      if (auto e = check_number(v); !e.empty()) return "every element " + e;
  }
  if (auto* sl = std::get_if<std::vector<std::string>>(&value)) {
    for (const auto& v : *sl)
      if (auto e = check_choice(v); !e.empty()) return "every element " + e;
  }
  return {};
}

std::string KeySpec::allowed_text() const {
  if (!choices.empty()) {
    std::string out = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) out += (i ? ", " : "") + (choices[i].empty() ? "\"\"" : choices[i]);
    return out;
  }
  std::string lo = min ? fmt::format("{} {}", min_exclusive ? ">" : ">=", format_bound(*min)) : "";
  std::string hi = max ? fmt::format("<= {}", format_bound(*max)) : "";
  if (!lo.empty() && !hi.empty()) return fmt::format("a value {} and {}", lo, hi);
  if (!lo.empty()) return "a value " + lo;
  if (!hi.empty()) return "a value " + hi;
  return "any value";
}

void Schema::section(std::string name, std::string doc) {
  sections_.push_back({std::move(name), std::move(doc)});
}

KeySpec& Schema::insert(KeySpec spec) {
  if (find(spec.key)) throw std::logic_error("config key registered twice: " + spec.key);
  auto sec = spec.section();
  auto it = std::find_if(sections_.begin(), sections_.end(), [&](auto& s) { return s.name == sec; });
  if (it == sections_.end() || spec.key.size() <= sec.size() + 1)
    throw std::logic_error("config key outside a declared section: " + spec.key);
  // Keep keys grouped by section in declaration order of the sections.
  auto pos = std::find_if(keys_.begin(), keys_.end(), [&](const KeySpec& k) {
    auto ks = std::find_if(sections_.begin(), sections_.end(),
                           [&](auto& s) { return s.name == k.section(); });
    return ks > it;
  });
  return *keys_.insert(pos, std::move(spec));
}

Schema::KeyBuilder Schema::add(std::string key, Value default_value, std::string doc) {
  KeySpec spec;
  spec.key = std::move(key);
  spec.type = type_of(default_value);
  spec.default_value = std::move(default_value);
  spec.doc = std::move(doc);
  return KeyBuilder(insert(std::move(spec)));
}

Schema::KeyBuilder Schema::required(std::string key, Type type, std::string doc) {
  KeySpec spec;
  spec.key = std::move(key);
  spec.type = type;
  spec.doc = std::move(doc);
  return KeyBuilder(insert(std::move(spec)));
}

const KeySpec* Schema::find(std::string_view key) const {
  for (const auto& k : keys_)
    if (k.key == key) return &k;
  return nullptr;
}

bool Schema::is_group(std::string_view prefix) const {
  for (const auto& k : keys_)
    if (k.key.size() > prefix.size() && k.key.compare(0, prefix.size(), prefix) == 0 &&
        k.key[prefix.size()] == '.')
      return true;
  return false;
}

std::vector<std::string> Schema::suggest(std::string_view key) const {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& k : keys_) {
    size_t full = edit_distance(key, k.key);
    // A right leaf in the wrong section ("lr" under data) is a near miss too.
    size_t leaf = edit_distance(last_component(key), last_component(k.key)) + 2;
    size_t d = std::min(full, leaf);
    size_t budget = std::max<size_t>(2, last_component(k.key).size() / 3);
    if (d <= budget + 2) scored.emplace_back(d, k.key);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<std::string> out;  // the best-scoring keys only (ties), at most three
  for (size_t i = 0; i < scored.size() && i < 3 && scored[i].first == scored[0].first; ++i)
    out.push_back(scored[i].second);
  return out;
}

std::string render_markdown(const Schema& schema) {
  std::string out =
      "# Configuration reference\n\n"
      "<!-- Generated by `tess config docs` from core/config/keys.cpp; do not edit by hand. -->\n\n"
      "Every key a tess run reads. Values are layered: these defaults, then the YAML\n"
      "file (and the files it names in `base:`), then `--set key=value` on the command\n"
      "line. An unknown key, a wrong type or a value outside its range is an error that\n"
      "names the file, line and column. `tess config dump CONFIG` prints the effective\n"
      "configuration.\n";
  for (const auto& sec : schema.sections()) {
    out += fmt::format("\n## `{}`\n\n{}\n\n", sec.name, sec.doc);
    out += "| key | type | default | allowed | description |\n";
    out += "|---|---|---|---|---|\n";
    for (const auto& k : schema.keys()) {
      if (k.section() != sec.name) continue;
      std::string def = k.required() ? std::string("*required*") : fmt::format("`{}`", format_value(*k.default_value));
      std::string allowed = k.allowed_text();
      if (allowed == "any value") allowed = "";
      std::string doc = k.doc;
      for (size_t p = 0; (p = doc.find('|', p)) != std::string::npos; p += 2) doc.replace(p, 1, "\\|");
      out += fmt::format("| `{}` | {} | {} | {} | {} |\n", k.key, type_name(k.type), def, allowed, doc);
    }
  }
  return out;
}

}  // namespace tess::config
