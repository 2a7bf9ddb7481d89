#pragma once
// Whole small files (configs, manifests, pointers) read into memory.
#include <filesystem>
#include <string>

namespace tess::util {

// The file's bytes; throws tess::Error "cannot read <what> '<path>'".
std::string read_file(const std::filesystem::path& path, const std::string& what = "");

}  // namespace tess::util
