#include "core/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/util/error.h"
#include "core/util/file.h"
#include "core/util/sha256.h"
#include "core/util/test_hooks.h"

namespace tess::checkpoint {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The manifest of `dir` when it parses and validates (a committed
// checkpoint, or a staging directory past its commit point); else nothing.
std::optional<Manifest> read_manifest(const fs::path& dir) {
  auto file = dir / "manifest.json";
  if (!fs::exists(file)) return std::nullopt;
  try {
    return Manifest::from_json(util::read_file(file), file.string());
  } catch (const Error&) {
    return std::nullopt;  // `tess checkpoint verify` names what is wrong with it
  }
}

// The checkpoint name `latest` holds, or "" without one.
std::string read_latest(const fs::path& pointer) {
  if (!fs::exists(pointer)) return "";
  auto name = util::read_file(pointer);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  return name;
}

}  // namespace

std::string step_name(int64_t step) { return fmt::format("step_{:08d}", step); }
std::string rank_file_name(int rank) { return fmt::format("rank_{:05d}.safetensors", rank); }
fs::path checkpoints_root(const fs::path& run_dir) { return run_dir / "checkpoints"; }

std::string Manifest::to_json() const {
  json j;
  j["format_version"] = format_version;
  j["commit"] = commit;
  j["step"] = step;
  j["tokens_seen"] = tokens_seen;
  j["world_size"] = world_size;
  j["stage"] = stage;
  j["config_hash"] = config_hash;
  j["tokenizer_hash"] = tokenizer_hash;
  if (!config.empty()) j["config"] = config;
  j["files"] = json::array();
  for (const auto& f : files) j["files"].push_back({{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}});
  return j.dump(2) + "\n";
}

Manifest Manifest::from_json(const std::string& text, const std::string& source) {
  Manifest m;
  try {
    auto j = json::parse(text);
    m.format_version = j.at("format_version").get<int>();
    m.commit = j.value("commit", int64_t{0});
    m.step = j.at("step").get<int64_t>();
    m.tokens_seen = j.at("tokens_seen").get<int64_t>();
    m.world_size = j.at("world_size").get<int>();
    m.stage = j.at("stage").get<std::string>();
    m.config_hash = j.at("config_hash").get<std::string>();
    m.tokenizer_hash = j.at("tokenizer_hash").get<std::string>();
    if (j.contains("config")) m.config = j.at("config").get<std::map<std::string, std::string>>();
    for (const auto& f : j.at("files"))
      m.files.push_back({f.at("path").get<std::string>(), f.at("size").get<uint64_t>(), f.at("sha256").get<std::string>()});
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not a valid checkpoint manifest ({})", source, e.what()));
  }
  auto bad = [&](const std::string& what) { return Error(fmt::format("{}: {}", source, what)); };
  if (m.format_version != 1)
    throw bad(fmt::format("checkpoint format version {} is not supported (expected 1)", m.format_version));
  if (m.world_size < 1 || m.world_size > (1 << 20))
    throw bad(fmt::format("world_size {} is not a number of processes (1 to 1,048,576)", m.world_size));
  if (m.step < 0) throw bad(fmt::format("step {} is negative", m.step));
  if (m.tokens_seen < 0) throw bad(fmt::format("tokens_seen {} is negative", m.tokens_seen));
  if (m.commit < 0) throw bad(fmt::format("commit {} is negative", m.commit));
  if (m.stage.empty()) throw bad("stage is empty");
  for (const auto& f : m.files) {
    fs::path p(f.path);
    if (f.path.empty() || p.is_absolute() ||
        std::any_of(p.begin(), p.end(), [](const fs::path& c) { return c == ".."; }))
      throw bad(fmt::format("file path '{}' is not inside the checkpoint", f.path));
    if (f.sha256.size() != 64 || f.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw bad(fmt::format("file '{}' has no sha256 (64 hex digits)", f.path));
  }
  for (int r = 0; r < m.world_size; ++r) {
    auto name = rank_file_name(r);
    if (std::none_of(m.files.begin(), m.files.end(), [&](const FileEntry& f) { return f.path == name; }))
      throw bad(fmt::format("lists no {} although world_size is {}", name, m.world_size));
  }
  return m;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  auto pointer = checkpoints_root(run_dir) / "latest";
  if (!fs::exists(pointer)) return std::nullopt;
  auto name = read_latest(pointer);
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
  auto committed = committed_checkpoints(run_dir_);
  manifest.commit = committed.empty() ? 1 : committed.back().manifest.commit + 1;
  manifest.files.clear();
  for (const auto& e : fs::recursive_directory_iterator(staging_)) {
    if (!e.is_regular_file()) continue;
    auto rel = fs::relative(e.path(), staging_).generic_string();
    manifest.files.push_back({rel, fs::file_size(e.path()), util::sha256_file_hex(e.path())});
  }
  std::sort(manifest.files.begin(), manifest.files.end(), [](auto& a, auto& b) { return a.path < b.path; });
  // The commit point: from here on recover_checkpoints() completes this save.
  util::write_file_atomic(staging_ / "manifest.json", manifest.to_json());
  util::fault_point("checkpoint_commit", 1);
  std::error_code ec;
  if (fs::exists(final_)) {  // a re-save of the same step (a rollback, or resuming a finished run)
    fs::remove_all(final_, ec);
    if (ec) throw Error(fmt::format("cannot replace the checkpoint '{}': {}", final_.string(), ec.message()));
  }
  util::fault_point("checkpoint_commit", 2);
  fs::rename(staging_, final_, ec);
  if (ec) throw Error(fmt::format("cannot move checkpoint into place at '{}': {}", final_.string(), ec.message()));
  util::fault_point("checkpoint_commit", 3);
  util::write_file_atomic(checkpoints_root(run_dir_) / "latest", final_.filename().string() + "\n");
  util::fault_point("checkpoint_commit", 4);
  // Retention: the newest keep_last commits stay, this one always.
  committed = committed_checkpoints(run_dir_);
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < committed.size(); ++i)
    if (committed[i].dir != final_) fs::remove_all(committed[i].dir, ec);
  return final_;
}

std::vector<CommittedCheckpoint> committed_checkpoints(const fs::path& run_dir) {
  std::vector<CommittedCheckpoint> out;
  auto root = checkpoints_root(run_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    auto n = e.path().filename().string();
    if (!e.is_directory() || n.rfind("step_", 0) != 0 || n.find('.') != std::string::npos) continue;
    if (auto manifest = read_manifest(e.path())) out.push_back({e.path(), std::move(*manifest)});
  }
  std::sort(out.begin(), out.end(), [](const CommittedCheckpoint& a, const CommittedCheckpoint& b) {
    return std::tie(a.manifest.commit, a.manifest.step) < std::tie(b.manifest.commit, b.manifest.step);
  });
  return out;
}

std::vector<std::string> recover_checkpoints(const fs::path& run_dir) {
  std::vector<std::string> done;
  auto root = checkpoints_root(run_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return done;
  std::vector<fs::path> staging;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    auto n = e.path().filename().string();
    if (e.is_directory() && n.size() > 8 && n.compare(n.size() - 8, 8, ".staging") == 0) staging.push_back(e.path());
  }
  for (const auto& dir : staging) {
    if (!read_manifest(dir)) {
      fs::remove_all(dir, ec);
      done.push_back(fmt::format("removed {}, a save interrupted before its manifest", dir.filename().string()));
      continue;
    }
    auto final_dir = dir.parent_path() / dir.stem();
    fs::remove_all(final_dir, ec);  // the earlier save of the same step it replaces
    fs::rename(dir, final_dir, ec);
    if (ec) throw Error(fmt::format("cannot finish the interrupted commit of '{}': {}", final_dir.string(), ec.message()));
    done.push_back(fmt::format("finished the commit of {}, interrupted after its manifest", final_dir.filename().string()));
  }
  // `latest` names the newest commit once a save is finished; a missing or
  // dangling pointer, or one an interrupted commit did not move, is repaired.
  auto committed = committed_checkpoints(run_dir);
  if (committed.empty()) return done;
  auto pointer = root / "latest";
  auto named = read_latest(pointer);
  auto newest = committed.back().dir.filename().string();
  if (named == newest) return done;
  util::write_file_atomic(pointer, newest + "\n");
  if (named.empty())
    done.push_back(fmt::format("no 'latest' pointer: it now names {}, the newest complete checkpoint", newest));
  else if (!fs::is_directory(root / named))
    done.push_back(fmt::format("'latest' named {}, which does not exist: it now names {}, the newest complete "
                               "checkpoint",
                               named, newest));
  else
    done.push_back(fmt::format("'latest' named {}: it now names {}, the newest commit", named, newest));
  return done;
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
