#pragma once
// Our own reader and writer of the safetensors format (HF's weight files):
// an 8-byte little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets} (plus optional "__metadata__" strings), then
// the raw little-endian data. Reading memory-maps the file and validates the
// whole header (offsets inside the file, contiguous and non-overlapping,
// byte counts matching dtype x shape) before any tensor is touched, so a
// truncated or corrupted file is an error naming the file and the tensor and
// is never read past. Supported dtypes: F32, BF16, F16.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/util/mapped_file.h"

namespace at {
class Tensor;
}

namespace tess::model {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32" | "BF16" | "F16"
  std::vector<int64_t> shape;
  uint64_t begin = 0;          // byte offsets into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws tess::Error naming the file (and the
  // tensor, where one is at fault) on any inconsistency.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // in file order
  const SafetensorsEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A CPU tensor owning a copy of the stored data, in the stored dtype.
  // Throws tess::Error naming the file when `name` is absent.
  at::Tensor load(const std::string& name) const;

 private:
  std::filesystem::path path_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
  const uint8_t* data_ = nullptr;  // start of the data section inside the mapping
  util::MappedFile file_;
};

// Writes `tensors` (any device; stored as contiguous CPU data in their dtype,
// which must be float32, bfloat16 or float16) in name order, with `metadata`
// (HF writes {"format": "pt"}). Written to `path`.tmp, flushed, then renamed,
// so a failed write (e.g. a full disk) never leaves a half file under `path`;
// the error names the file.
void write_safetensors(const std::filesystem::path& path,
                       const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// A model's weights spread over one file or several shards with an HF index
// (`model.safetensors.index.json`: {"metadata": {"total_size": N},
// "weight_map": {name: file}}).
class SafetensorsCheckpoint {
 public:
  // `dir` holds model.safetensors or model.safetensors.index.json (+ shards).
  explicit SafetensorsCheckpoint(const std::filesystem::path& dir);
  ~SafetensorsCheckpoint();

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming dir + tensor
  at::Tensor load(const std::string& name) const;
  const std::filesystem::path& file_of(const std::string& name) const;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// Writes `tensors` into `dir` as model.safetensors, or, when their total size
// exceeds `max_shard_bytes` (> 0), as model-00001-of-0000N.safetensors shards
// plus model.safetensors.index.json, exactly as HF's save_pretrained names them.
// Creates `dir`; afterwards removes weight files of the other layout left by an
// earlier save (a stale index would otherwise shadow a new model.safetensors).
void write_safetensors_checkpoint(const std::filesystem::path& dir,
                                  const std::map<std::string, at::Tensor>& tensors,
                                  uint64_t max_shard_bytes = 0);

}  // namespace tess::model
