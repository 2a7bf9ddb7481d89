#pragma once
// A read-only memory map of a whole file: the zero-copy input of the
// safetensors and GGUF readers. Errors name the path (cannot open, not a
// regular file, cannot map). An empty file maps to data() == nullptr, size 0;
// the format readers then report it as too short.
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace tess::util {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return static_cast<const uint8_t*>(map_); }
  size_t size() const { return size_; }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tess::util
