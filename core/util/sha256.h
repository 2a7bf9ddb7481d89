#pragma once
// SHA-256 for content hashes (config hash, tokenizer hash, checkpoint
// manifests), through OpenSSL's libcrypto (which uses the CPU's SHA
// extensions where they exist: a checkpoint's manifest hashes every byte it
// writes, on a writer thread that shares the cores with training).
// Streaming, so multi-GB shards hash in bounded memory.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace tess::util {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalises; the object is spent after
  std::string hex_digest();

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
};

std::string sha256_hex(std::string_view data);
// Hash of a whole file, read in chunks; throws tess::Error naming the file.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace tess::util
