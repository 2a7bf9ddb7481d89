#pragma once
// Our own reader of GGUF, llama.cpp's single-file model format: a header
// ("GGUF", version 2 or 3, tensor and key counts), typed key/value metadata
// (architecture, shape, tokenizer vocabulary and merges, ...), tensor infos
// (name, dims innermost-first, ggml type, offset), then the tensor data,
// aligned to `general.alignment` (default 32). The file is memory-mapped and
// the whole header is validated before any tensor is touched -- every string,
// array and tensor must lie inside the file, offsets aligned, byte counts
// matching the type's block layout -- so a truncated or corrupted file is an
// error naming the file (and the key or tensor at fault), never a read past
// the end. Tensors dequantise to fp32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1); any other ggml type is an error naming the tensor and type.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/util/mapped_file.h"

namespace at {
class Tensor;
}

namespace tess::model {

// ggml tensor types, with llama.cpp's numbering (ggml.h, enum ggml_type).
enum class GGMLType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
// "Q4_1", or "type 77" for a number ggml never used.
std::string ggml_type_name(uint32_t type);
// Elements per block and bytes per block (F32: 1 and 4); {0, 0} when unknown.
struct GGMLBlock {
  int64_t elements = 0;
  int64_t bytes = 0;
};
GGMLBlock ggml_block(uint32_t type);
// Whether dequantize_row() decodes this type, and the list for messages.
bool ggml_type_supported(uint32_t type);
std::string ggml_supported_types();  // "F32, F16, BF16, Q8_0, ..."
// Decodes `n` elements (a whole number of blocks) of `type` at `src` into
// `dst`. Throws tess::Error naming `what` (a tensor) for unsupported types.
void dequantize_row(uint32_t type, const uint8_t* src, float* dst, int64_t n, const std::string& what);

enum class GGUFValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_value_type_name(GGUFValueType t);

// One metadata value. Integers keep their exact value in `u` (unsigned types)
// or `i` (signed types); floats in `f`; arrays hold their elements (all of
// `array_type`, which may itself be ARRAY).
struct GGUFValue {
  GGUFValueType type = GGUFValueType::UINT8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0.0;
  bool b = false;
  std::string s;
  GGUFValueType array_type = GGUFValueType::UINT8;
  std::vector<GGUFValue> array;

  bool is_integer() const;
  bool is_float() const { return type == GGUFValueType::FLOAT32 || type == GGUFValueType::FLOAT64; }
  // One-line rendering for messages and `tess convert` logs (arrays abridged).
  std::string to_string() const;
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // GGUF order: dims[0] is the innermost (contiguous) one
  uint32_t type = 0;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
  std::vector<int64_t> shape() const;  // torch order (dims reversed): [rows, ..., dims[0]]
};

class GGUFFile {
 public:
  // Maps and validates `path`; throws tess::Error naming the file (and the
  // key or tensor at fault) on any inconsistency.
  explicit GGUFFile(const std::filesystem::path& path);
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset of the data section
  uint64_t file_size() const { return size_; }

  const std::map<std::string, GGUFValue>& metadata() const { return metadata_; }
  const GGUFValue* find(const std::string& key) const;  // nullptr when absent
  // Typed lookups; a missing key (without a fallback) or a value of the wrong
  // type is an error naming the file, the key and what was expected.
  const GGUFValue& get(const std::string& key) const;
  uint64_t get_uint(const std::string& key) const;  // any non-negative integer type
  uint64_t get_uint(const std::string& key, uint64_t fallback) const;
  double get_float(const std::string& key) const;  // float or integer types
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }  // in file order
  const GGUFTensorInfo* find_tensor(const std::string& name) const;
  const GGUFTensorInfo& tensor(const std::string& name) const;  // throws naming the file
  const uint8_t* tensor_data(const GGUFTensorInfo& t) const { return data_ + t.offset; }

  // The tensor as a contiguous fp32 CPU tensor in torch order (shape()).
  at::Tensor dequantize(const GGUFTensorInfo& t) const;
  at::Tensor dequantize(const std::string& name) const { return dequantize(tensor(name)); }

 private:
  std::filesystem::path path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t size_ = 0;
  std::map<std::string, GGUFValue> metadata_;
  std::vector<GGUFTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  const uint8_t* data_ = nullptr;
  util::MappedFile file_;
};

}  // namespace tess::model
