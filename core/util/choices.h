#pragma once
// An enum and the one table of its names. Parsing, naming and listing the
// allowed values all read the table, so each name is written once: the
// schema's allowed values (core/config/keys.cpp) come from the same table
// the code parses with.
#include <string>
#include <utility>
#include <vector>

#include "core/util/error.h"

namespace tess::util {

template <class E>
class Choices {
 public:
  // `what` names the choice in errors ("noise schedule").
  Choices(const char* what, std::vector<std::pair<E, const char*>> table) : what_(what), table_(std::move(table)) {}

  // Throws tess::Error: "unknown noise schedule 'x' (expected a, b or c)".
  E parse(const std::string& name) const {
    for (const auto& [value, n] : table_)
      if (name == n) return value;
    throw Error("unknown " + std::string(what_) + " '" + name + "' (expected " + listed() + ")");
  }
  const char* name(E value) const {
    for (const auto& [v, n] : table_)
      if (v == value) return n;
    return "?";
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : table_) out.emplace_back(entry.second);
    return out;
  }

 private:
  std::string listed() const {
    std::string out;
    for (size_t i = 0; i < table_.size(); ++i)
      out += (i == 0 ? "" : i + 1 == table_.size() ? " or " : ", ") + std::string(table_[i].second);
    return out;
  }
  const char* what_;
  std::vector<std::pair<E, const char*>> table_;
};

}  // namespace tess::util
