#pragma once
// SHA-256 for content hashes (config hash, tokenizer hash, checkpoint
// manifests). Streaming, so multi-GB shards hash in bounded memory. Uses the
// x86 SHA extensions when the CPU has them (~1.5 GB/s against ~0.2 GB/s for
// the portable code): a checkpoint's manifest hashes every byte it writes,
// on the writer thread that shares the cores with training.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace tess::util {

class Sha256 {
 public:
  // `hardware` false: the portable code even where SHA extensions exist (tests).
  explicit Sha256(bool hardware = true);
  static bool hardware_available();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalises; the object is spent after
  std::string hex_digest();

 private:
  void blocks(const uint8_t* p, size_t count);
  bool hardware_;
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view data);
// Hash of a whole file, read in chunks; throws tess::Error naming the file.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace tess::util
