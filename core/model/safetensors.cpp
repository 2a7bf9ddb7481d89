#include "core/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/util/error.h"

// Tensor bytes are copied verbatim between memory and file; the format is
// little-endian, so a big-endian host would need byte swapping we do not do.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tess's safetensors code assumes a little-endian host"
#endif

namespace tess::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kSupported = "F32, BF16, F16";
// Same bound as the reference implementation: a bigger header means a
// corrupted length, and we would not want to parse it anyway.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DType {
  const char* name;
  c10::ScalarType type;
  uint64_t size;
};
constexpr DType kDTypes[] = {
    {"F32", c10::ScalarType::Float, 4},
    {"BF16", c10::ScalarType::BFloat16, 2},
    {"F16", c10::ScalarType::Half, 2},
};

const DType* dtype_by_name(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DType* dtype_by_type(c10::ScalarType type) {
  for (const auto& d : kDTypes)
    if (type == d.type) return &d;
  return nullptr;
}

std::string errno_text() { return std::strerror(errno); }

// The whole header, validated against the file size before anything else
// touches the data. `bytes` is the full mapping of `size` bytes.
void parse_header(const fs::path& path, const uint8_t* bytes, uint64_t size,
                  std::vector<SafetensorsEntry>& entries, std::map<std::string, std::string>& metadata,
                  uint64_t& data_start) {
  auto fail = [&](const std::string& what) { return Error(fmt::format("{}: {}", path.string(), what)); };
  if (size < 8)
    throw fail(fmt::format("not a safetensors file: {} bytes, too short for the 8-byte header length", size));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > size - 8)
    throw fail(fmt::format("header size {} is larger than the rest of the file ({} bytes after the 8-byte length)",
                           n, size - 8));
  if (n > kMaxHeaderBytes) throw fail(fmt::format("header size {} exceeds the limit of {} bytes", n, kMaxHeaderBytes));
  data_start = 8 + n;

  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + n);
  } catch (const json::exception& e) {
    throw fail(fmt::format("invalid JSON header: {}", e.what()));
  }
  if (!header.is_object()) throw fail(fmt::format("the JSON header is a {}, expected an object", header.type_name()));

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw fail("\"__metadata__\" must be an object of strings");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) throw fail(fmt::format("\"__metadata__\" value of \"{}\" must be a string, got {}", k, v.dump()));
        metadata[k] = v.get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { return fail(fmt::format("tensor '{}': {}", name, what)); };
    if (!value.is_object()) throw bad("expected an object with dtype, shape and data_offsets");
    auto dtype_it = value.find("dtype");
    auto shape_it = value.find("shape");
    auto offsets_it = value.find("data_offsets");
    if (dtype_it == value.end() || !dtype_it->is_string()) throw bad("missing or non-string \"dtype\"");
    if (shape_it == value.end() || !shape_it->is_array()) throw bad("missing or non-list \"shape\"");
    if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
      throw bad("\"data_offsets\" must be two non-negative integers [begin, end]");

    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype_it->get<std::string>();
    const DType* dt = dtype_by_name(e.dtype);
    if (!dt) throw bad(fmt::format("dtype {} is not supported (supported: {})", e.dtype, kSupported));
    for (const auto& d : *shape_it) {
      // Non-negative integers parse as unsigned; anything else is malformed.
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        throw bad(fmt::format("shape {} must be a list of non-negative integers", shape_it->dump()));
      e.shape.push_back(d.get<int64_t>());
    }
    e.begin = (*offsets_it)[0].get<uint64_t>();
    e.end = (*offsets_it)[1].get<uint64_t>();
    if (e.begin > e.end) throw bad(fmt::format("data_offsets [{}, {}] end before they begin", e.begin, e.end));

    // numel * dtype size, refusing shapes whose byte count overflows.
    uint64_t count = dt->size;
    if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) {
      count = 0;
    } else {
      for (int64_t d : e.shape) {
        if (count > std::numeric_limits<uint64_t>::max() / uint64_t(d))
          throw bad(fmt::format("shape {} is too large", shape_it->dump()));
        count *= uint64_t(d);
      }
    }
    if (count != e.end - e.begin)
      throw bad(fmt::format("{} with shape {} needs {} bytes, but data_offsets [{}, {}] span {}", e.dtype,
                            shape_it->dump(), count, e.begin, e.end, e.end - e.begin));
    entries.push_back(std::move(e));
  }

  // The spec requires the tensors to tile the data section exactly, in
  // offset order: no overlap (aliasing), no gap (hidden bytes).
  std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t expected = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : entries) {
    if (e.begin < expected)
      throw fail(fmt::format("tensor '{}': data_offsets [{}, {}] overlap tensor '{}' which ends at {}", e.name, e.begin,
                             e.end, prev->name, expected));
    if (e.begin > expected)
      throw fail(fmt::format("tensor '{}': data_offsets [{}, {}] leave a gap, expected it to begin at {}", e.name,
                             e.begin, e.end, expected));
    expected = e.end;
    prev = &e;
  }
  const uint64_t have = size - data_start;
  if (expected > have) throw fail(fmt::format("truncated: expected {} bytes of data, file has {}", expected, have));
  if (expected < have)
    throw fail(fmt::format("{} unexpected bytes after the data section (tensors cover {} of {} bytes)", have - expected,
                           expected, have));
}

// Writes `path` through `path`.tmp: every write, fsync and close is checked,
// and unless commit() succeeds the temporary is removed, so a failure (a full
// disk, a missing directory) never leaves a half file under either name.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path path) : path_(std::move(path)), tmp_(path_.string() + ".tmp") {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      std::string why = errno_text();
      throw Error(fmt::format("{}: cannot create {}: {}", path_.string(), tmp_.string(), why));
    }
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n) {
    auto p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        if (w == 0) errno = ENOSPC;
        fail("write");
      }
      p += w;
      n -= size_t(w);
    }
  }
  void write(const std::string& s) { write(s.data(), s.size()); }

  void commit() {
    if (::fsync(fd_) != 0) fail("fsync");
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close");  // NFS and friends report write errors only here
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename");
    committed_ = true;
  }

 private:
  [[noreturn]] void fail(const char* op) {
    std::string why = errno_text();
    throw Error(fmt::format("{}: cannot write the file ({} of {} failed): {}", path_.string(), op, tmp_.string(), why));
  }
  fs::path path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

uint64_t tensor_bytes(const at::Tensor& t) { return uint64_t(t.numel()) * t.element_size(); }

std::string shard_name(size_t i, size_t n) { return fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n); }

const char* kSingleName = "model.safetensors";
const char* kIndexName = "model.safetensors.index.json";

}  // namespace

// ---- reading -----------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path), file_(path) {
  uint64_t data_start = 0;
  parse_header(path_, file_.data(), file_.size(), entries_, metadata_, data_start);
  data_ = file_.data() + data_start;
}

SafetensorsFile::~SafetensorsFile() = default;

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

at::Tensor SafetensorsFile::load(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e)
    throw Error(fmt::format("{}: no tensor named '{}' (the file holds {} tensors)", path_.string(), name,
                            entries_.size()));
  // A copy, so the tensor outlives this file and its mapping.
  auto t = torch::empty(e->shape, torch::TensorOptions().dtype(dtype_by_name(e->dtype)->type));
  if (e->end > e->begin) std::memcpy(t.data_ptr(), data_ + e->begin, e->end - e->begin);
  return t;
}

// ---- writing -----------------------------------------------------------------

void write_safetensors(const fs::path& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;  // ordered: "__metadata__" first, then tensors by name
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw Error(fmt::format("{}: a tensor cannot be named \"__metadata__\"", path.string()));
    if (!t.defined()) throw Error(fmt::format("{}: tensor '{}' is undefined", path.string(), name));
    const DType* dt = dtype_by_type(t.scalar_type());
    if (!dt)
      throw Error(fmt::format("{}: tensor '{}' has dtype {}; only float32, bfloat16 and float16 can be written",
                              path.string(), name, c10::toString(t.scalar_type())));
    uint64_t n = tensor_bytes(t);
    header[name] = {{"dtype", dt->name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", nlohmann::ordered_json::array({offset, offset + n})}};
    offset += n;
  }
  std::string text = header.dump();
  // Spaces up to a multiple of 8 so the data (after the 8-byte length)
  // starts aligned, as HF's writer does; JSON ignores trailing whitespace.
  text.append((8 - text.size() % 8) % 8, ' ');

  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  AtomicFile out(path);
  out.write(len, 8);
  out.write(text);
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().to(torch::kCPU).contiguous();  // one tensor at a time: no full host copy of a GPU model
    out.write(c.data_ptr(), tensor_bytes(c));
  }
  out.commit();
}

void write_safetensors_checkpoint(const fs::path& dir, const std::map<std::string, at::Tensor>& tensors,
                                  uint64_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create the checkpoint directory: {}", dir.string(), ec.message()));

  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.defined() ? tensor_bytes(t) : 0;

  // Greedy in name order: a shard is closed when the next tensor would push
  // it past the limit; a tensor bigger than the limit gets a shard alone.
  std::vector<std::map<std::string, at::Tensor>> shards(1);
  if (max_shard_bytes > 0 && total > max_shard_bytes) {
    uint64_t used = 0;
    for (const auto& [name, t] : tensors) {
      uint64_t n = t.defined() ? tensor_bytes(t) : 0;
      if (!shards.back().empty() && used + n > max_shard_bytes) {
        shards.emplace_back();
        used = 0;
      }
      shards.back().emplace(name, t);
      used += n;
    }
  } else {
    shards.back() = tensors;
  }

  // The files of the other layout (or an older shard count) are removed
  // only after the new ones are in place; the reader prefers the index, so a
  // stale one would otherwise shadow a fresh model.safetensors.
  std::set<std::string> keep;
  if (shards.size() == 1) {
    write_safetensors(dir / kSingleName, tensors);
    keep.insert(kSingleName);
  } else {
    json weight_map = json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      std::string file = shard_name(i, shards.size());
      write_safetensors(dir / file, shards[i]);
      for (const auto& kv : shards[i]) weight_map[kv.first] = file;
      keep.insert(file);
    }
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    AtomicFile out(dir / kIndexName);
    out.write(index.dump(2) + "\n");
    out.commit();
    keep.insert(kIndexName);
  }
  static const std::regex ours(R"(model\.safetensors(\.index\.json)?|model-\d{5}-of-\d{5}\.safetensors)");
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    std::string name = f.path().filename().string();
    if (std::regex_match(name, ours) && !keep.count(name)) fs::remove(f.path(), ec);
  }
}

// ---- checkpoints -------------------------------------------------------------

SafetensorsCheckpoint::SafetensorsCheckpoint(const fs::path& dir) : dir_(dir) {
  const fs::path index_path = dir / kIndexName;
  const fs::path single_path = dir / kSingleName;
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    auto fail = [&](const std::string& what) { return Error(fmt::format("{}: {}", index_path.string(), what)); };
    std::ifstream in(index_path, std::ios::binary);
    if (!in) throw fail("cannot read the file");
    json index;
    try {
      index = json::parse(in);
    } catch (const json::exception& e) {
      throw fail(fmt::format("invalid JSON: {}", e.what()));
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw fail("expected an object with a \"weight_map\" object");

    std::map<std::string, size_t> shard_of_file;  // open each shard once
    for (const auto& [name, file_value] : index["weight_map"].items()) {
      if (!file_value.is_string()) throw fail(fmt::format("weight_map entry of '{}' is not a file name", name));
      std::string file = file_value.get<std::string>();
      auto [it, fresh] = shard_of_file.emplace(file, files_.size());
      if (fresh) files_.push_back(std::make_unique<SafetensorsFile>(dir / file));
      if (!files_[it->second]->find(name))
        throw fail(fmt::format("weight_map puts tensor '{}' in {}, but that shard has no such tensor", name,
                               files_[it->second]->path().string()));
      where_[name] = it->second;
    }
    // Every tensor a shard holds must be the one the index points to: a
    // tensor in two shards, or one the index forgot, means a mixed-up save.
    for (size_t i = 0; i < files_.size(); ++i) {
      for (const auto& e : files_[i]->entries()) {
        auto it = where_.find(e.name);
        if (it == where_.end())
          throw fail(fmt::format("shard {} holds tensor '{}', which the weight_map does not list",
                                 files_[i]->path().string(), e.name));
        if (it->second != i)
          throw fail(fmt::format("tensor '{}' appears in two shards: {} and {}", e.name,
                                 files_[it->second]->path().string(), files_[i]->path().string()));
      }
    }
  } else if (fs::exists(single_path, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    for (const auto& e : files_[0]->entries()) where_[e.name] = 0;
  } else {
    throw Error(fmt::format("{}: no checkpoint found: expected {} or {} in this directory", dir.string(), kSingleName,
                            kIndexName));
  }
}

SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

bool SafetensorsCheckpoint::contains(const std::string& name) const { return where_.count(name) > 0; }

const SafetensorsEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw Error(fmt::format("{}: the checkpoint has no tensor named '{}'", dir_.string(), name));
  return *files_[it->second]->find(name);
}

at::Tensor SafetensorsCheckpoint::load(const std::string& name) const {
  entry(name);  // the error names the directory, not just one shard
  return files_[where_.at(name)]->load(name);
}

const fs::path& SafetensorsCheckpoint::file_of(const std::string& name) const {
  entry(name);
  return files_[where_.at(name)]->path();
}

}  // namespace tess::model
