#include "core/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/sha256.h"

namespace tess::checkpoint {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_file_atomically(const fs::path& path, const std::string& text) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error(fmt::format("cannot write '{}' (disk full or not writable?)", path.string()));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw Error(fmt::format("cannot rename '{}' into place: {}", path.string(), ec.message()));
}


}  // namespace

std::string step_name(int64_t step) { return fmt::format("step_{:08d}", step); }
std::string rank_file_name(int rank) { return fmt::format("rank_{:05d}.safetensors", rank); }
fs::path checkpoints_root(const fs::path& run_dir) { return run_dir / "checkpoints"; }

std::string Manifest::to_json() const {
  json j;
  j["format_version"] = format_version;
  j["step"] = step;
  j["tokens_seen"] = tokens_seen;
  j["world_size"] = world_size;
  j["stage"] = stage;
  j["config_hash"] = config_hash;
  j["tokenizer_hash"] = tokenizer_hash;
  j["files"] = json::array();
  for (const auto& f : files) j["files"].push_back({{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}});
  return j.dump(2) + "\n";
}

Manifest Manifest::from_json(const std::string& text, const std::string& source) {
  Manifest m;
  try {
    auto j = json::parse(text);
    m.format_version = j.at("format_version").get<int>();
    m.step = j.at("step").get<int64_t>();
    m.tokens_seen = j.at("tokens_seen").get<int64_t>();
    m.world_size = j.at("world_size").get<int>();
    m.stage = j.at("stage").get<std::string>();
    m.config_hash = j.at("config_hash").get<std::string>();
    m.tokenizer_hash = j.at("tokenizer_hash").get<std::string>();
    for (const auto& f : j.at("files"))
      m.files.push_back({f.at("path").get<std::string>(), f.at("size").get<uint64_t>(), f.at("sha256").get<std::string>()});
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not a valid checkpoint manifest ({})", source, e.what()));
  }
  if (m.format_version != 1)
    throw Error(fmt::format("{}: checkpoint format version {} is not supported (expected 1)", source, m.format_version));
  return m;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  auto pointer = checkpoints_root(run_dir) / "latest";
  if (!fs::exists(pointer)) return std::nullopt;
  auto name = util::read_file(pointer);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  auto dir = checkpoints_root(run_dir) / name;
  if (!fs::is_directory(dir))
    throw Error(fmt::format("{} names '{}', which does not exist", pointer.string(), name));
  return dir;
}

Manifest verify_checkpoint(const fs::path& dir, bool hash) {
  auto manifest_path = dir / "manifest.json";
  if (!fs::exists(manifest_path))
    throw Error(fmt::format("{}: no manifest.json (an incomplete or foreign checkpoint)", dir.string()));
  auto m = Manifest::from_json(util::read_file(manifest_path), manifest_path.string());
  for (int r = 0; r < m.world_size; ++r) {
    auto name = rank_file_name(r);
    if (std::none_of(m.files.begin(), m.files.end(), [&](const FileEntry& f) { return f.path == name; }))
      throw Error(fmt::format("{}: manifest lists no {} although world size is {}", dir.string(), name, m.world_size));
  }
  for (const auto& f : m.files) {
    auto p = dir / f.path;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) throw Error(fmt::format("{}: file '{}' is missing", dir.string(), f.path));
    auto size = fs::file_size(p, ec);
    if (size != f.size)
      throw Error(fmt::format("{}: file '{}' has {} bytes, the manifest says {}", dir.string(), f.path, size, f.size));
    if (hash && util::sha256_file_hex(p) != f.sha256)
      throw Error(fmt::format("{}: file '{}' does not match its sha256 in the manifest (corrupted)", dir.string(), f.path));
  }
  return m;
}

CheckpointWriter::CheckpointWriter(const fs::path& run_dir, int64_t step, bool prepare)
    : run_dir_(run_dir),
      staging_(checkpoints_root(run_dir) / (step_name(step) + ".staging")),
      final_(checkpoints_root(run_dir) / step_name(step)) {
  if (!prepare) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
  fs::create_directories(staging_, ec);
  if (ec) throw Error(fmt::format("cannot create checkpoint directory '{}': {}", staging_.string(), ec.message()));
}

fs::path CheckpointWriter::commit(Manifest manifest, int keep_last) {
  manifest.files.clear();
  for (const auto& e : fs::recursive_directory_iterator(staging_)) {
    if (!e.is_regular_file()) continue;
    auto rel = fs::relative(e.path(), staging_).generic_string();
    manifest.files.push_back({rel, fs::file_size(e.path()), util::sha256_file_hex(e.path())});
  }
  std::sort(manifest.files.begin(), manifest.files.end(), [](auto& a, auto& b) { return a.path < b.path; });
  write_file_atomically(staging_ / "manifest.json", manifest.to_json());
  std::error_code ec;
  if (fs::exists(final_)) fs::remove_all(final_, ec);  // a re-save of the same step (e.g. after rollback)
  fs::rename(staging_, final_, ec);
  if (ec) throw Error(fmt::format("cannot move checkpoint into place at '{}': {}", final_.string(), ec.message()));
  write_file_atomically(checkpoints_root(run_dir_) / "latest", final_.filename().string() + "\n");

  // Retention: the newest keep_last complete checkpoints stay.
  std::vector<fs::path> complete;
  for (const auto& e : fs::directory_iterator(checkpoints_root(run_dir_))) {
    auto n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step_", 0) == 0 && n.find('.') == std::string::npos) complete.push_back(e.path());
  }
  std::sort(complete.begin(), complete.end());
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < complete.size(); ++i) fs::remove_all(complete[i], ec);
  return final_;
}

void remove_stale_staging(const fs::path& run_dir) {
  auto root = checkpoints_root(run_dir);
  if (!fs::is_directory(root)) return;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root)) {
    auto n = e.path().filename().string();
    if (n.size() > 8 && n.compare(n.size() - 8, 8, ".staging") == 0) fs::remove_all(e.path(), ec);
  }
}

std::string hex_encode(const std::vector<uint8_t>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::vector<uint8_t> hex_decode(const std::string& text, const std::string& what) {
  auto nibble = [&](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    throw Error(fmt::format("{}: not a hex string", what));
  };
  if (text.size() % 2) throw Error(fmt::format("{}: odd-length hex string", what));
  std::vector<uint8_t> out(text.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]));
  return out;
}

}  // namespace tess::checkpoint
