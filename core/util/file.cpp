#include "core/util/file.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/util/error.h"

namespace tess::util {

std::string read_file(const std::filesystem::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(what.empty() ? fmt::format("cannot read '{}'", path.string())
                                    : fmt::format("cannot read {} '{}'", what, path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace tess::util
