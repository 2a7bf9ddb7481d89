#include "core/model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "core/util/error.h"

// GGUF is little-endian (big-endian GGUF files exist but are marked only by
// their byte-swapped version number; we reject them as such).
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tess's GGUF reader assumes a little-endian host"
#endif

namespace tess::model {
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS

struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_elements;
  int64_t block_bytes;
};
// Every type ggml has defined (ggml.h / gguf-py's GGML_QUANT_SIZES), so that
// a file using one we cannot decode still parses and the error names it.
constexpr TypeInfo kTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

const TypeInfo* type_info(uint32_t type) {
  for (const auto& t : kTypes)
    if (t.id == type) return &t;
  return nullptr;
}

constexpr uint32_t kSupported[] = {0, 1, 30, 8, 2, 3, 6, 7};

std::string shape_text(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }


// ---- scalar decoding -------------------------------------------------------

inline float bits_to_f32(uint32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t w;
  std::memcpy(&w, &f, 4);
  return w;
}

// IEEE half -> float without branches on the data path (the FP16 library's
// fp16_ieee_to_fp32_value): normals are rebased by an exponent offset and a
// scale, subnormals go through a magic-number subtraction; inf/NaN survive.
inline float f16_to_f32(uint16_t h) {
  const uint32_t w = uint32_t(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float exp_scale = 0x1.0p-112f;
  const float normalized = bits_to_f32((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = 126u << 23;
  const float denormalized = bits_to_f32((two_w >> 17) | magic_mask) - 0.5f;
  const uint32_t cutoff = 1u << 27;
  return bits_to_f32(sign | (two_w < cutoff ? f32_to_bits(denormalized) : f32_to_bits(normalized)));
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- block decoders (ggml-quants.c, dequantize_row_*) ----------------------
// Each decodes `nb` consecutive blocks of 32 values. Block layouts:
//   Q8_0: f16 d, int8 q[32]                 x = d * q
//   Q4_0: f16 d, u8 qs[16]                  x[j] = d * (lo(qs[j]) - 8), x[j+16] = d * (hi(qs[j]) - 8)
//   Q4_1: f16 d, f16 m, u8 qs[16]           x = d * nibble + m
//   Q5_0: f16 d, u32 qh, u8 qs[16]          5th bit of value j in qh bit j (j < 32); x = d * (q - 16)
//   Q5_1: f16 d, f16 m, u32 qh, u8 qs[16]   x = d * q + m

void dequant_q8_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 34, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const int8_t* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) dst[j] = d * float(q[j]);
  }
}

void dequant_q4_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * float(int(qs[j] & 0x0F) - 8);
      dst[j + 16] = d * float(int(qs[j] >> 4) - 8);
    }
  }
}

void dequant_q4_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 20, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const float m = f16_to_f32(load_u16(src + 2));
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * float(qs[j] & 0x0F) + m;
      dst[j + 16] = d * float(qs[j] >> 4) + m;
    }
  }
}

void dequant_q5_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 22, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const uint32_t qh = load_u32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) << 4) & 0x10;
      const int h1 = int(qh >> (j + 12)) & 0x10;
      dst[j] = d * float((int(qs[j] & 0x0F) | h0) - 16);
      dst[j + 16] = d * float((int(qs[j] >> 4) | h1) - 16);
    }
  }
}

void dequant_q5_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 24, dst += 32) {
    const float d = f16_to_f32(load_u16(src));
    const float m = f16_to_f32(load_u16(src + 2));
    const uint32_t qh = load_u32(src + 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) << 4) & 0x10;
      const int h1 = int(qh >> (j + 12)) & 0x10;
      dst[j] = d * float(int(qs[j] & 0x0F) | h0) + m;
      dst[j + 16] = d * float(int(qs[j] >> 4) | h1) + m;
    }
  }
}

void dequant_f16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = f16_to_f32(load_u16(src + 2 * j));
}

void dequant_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] = bits_to_f32(uint32_t(load_u16(src + 2 * j)) << 16);
}

// ---- header parsing --------------------------------------------------------

// Reads the header sequentially; every read is bounds-checked against the
// file and a short read names what was being read and where.
class Cursor {
 public:
  Cursor(const fs::path& path, const uint8_t* data, uint64_t size) : path_(path), data_(data), size_(size) {}

  Error fail(const std::string& what) const { return Error(fmt::format("{}: {}", path_.string(), what)); }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > remaining())
      throw fail(fmt::format("truncated file: {} needs {} bytes at offset {}, but the file ends at {} bytes", what, n,
                             pos_, size_));
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T read(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string read_string(const std::string& what) {
    uint64_t n = read<uint64_t>(what + " (string length)");
    const uint8_t* p = take(n, fmt::format("{} (string of {} bytes)", what, n));
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  const fs::path& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

bool valid_value_type(uint32_t t) { return t <= 12; }

// Smallest encoded size of one value of type `t` (for bounding array counts
// before allocating).
uint64_t min_encoded_size(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::BOOL: return 1;
    case GGUFValueType::UINT16: case GGUFValueType::INT16: return 2;
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::FLOAT32: return 4;
    case GGUFValueType::UINT64: case GGUFValueType::INT64: case GGUFValueType::FLOAT64: return 8;
    case GGUFValueType::STRING: return 8;   // the length
    case GGUFValueType::ARRAY: return 12;   // element type + count
  }
  return 1;
}

GGUFValue read_value(Cursor& c, GGUFValueType type, const std::string& key, int depth) {
  GGUFValue v;
  v.type = type;
  const std::string what = fmt::format("value of '{}'", key);
  switch (type) {
    case GGUFValueType::UINT8: v.u = c.read<uint8_t>(what); break;
    case GGUFValueType::UINT16: v.u = c.read<uint16_t>(what); break;
    case GGUFValueType::UINT32: v.u = c.read<uint32_t>(what); break;
    case GGUFValueType::UINT64: v.u = c.read<uint64_t>(what); break;
    case GGUFValueType::INT8: v.i = c.read<int8_t>(what); break;
    case GGUFValueType::INT16: v.i = c.read<int16_t>(what); break;
    case GGUFValueType::INT32: v.i = c.read<int32_t>(what); break;
    case GGUFValueType::INT64: v.i = c.read<int64_t>(what); break;
    case GGUFValueType::FLOAT32: v.f = c.read<float>(what); break;
    case GGUFValueType::FLOAT64: v.f = c.read<double>(what); break;
    case GGUFValueType::BOOL: {
      uint8_t b = c.read<uint8_t>(what);
      if (b > 1) throw c.fail(fmt::format("key '{}': bool value {} is neither 0 nor 1", key, b));
      v.b = b != 0;
      break;
    }
    case GGUFValueType::STRING: v.s = c.read_string(what); break;
    case GGUFValueType::ARRAY: {
      if (depth > 8) throw c.fail(fmt::format("key '{}': arrays nested more than 8 deep", key));
      uint32_t et = c.read<uint32_t>(what + " (array element type)");
      if (!valid_value_type(et)) throw c.fail(fmt::format("key '{}': unknown array element type {}", key, et));
      v.array_type = GGUFValueType(et);
      uint64_t n = c.read<uint64_t>(what + " (array length)");
      if (n > c.remaining() / min_encoded_size(v.array_type))
        throw c.fail(fmt::format("truncated file: key '{}' declares an array of {} {} values at offset {}, more than "
                                 "the {} bytes left in the file",
                                 key, n, gguf_value_type_name(v.array_type), c.pos(), c.remaining()));
      v.array.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.array.push_back(read_value(c, v.array_type, key, depth + 1));
      break;
    }
  }
  return v;
}

std::string expected_text(const GGUFValue& v) {
  std::string t = gguf_value_type_name(v.type);
  if (v.type == GGUFValueType::ARRAY) t += std::string(" of ") + gguf_value_type_name(v.array_type);
  return t;
}

}  // namespace

// ---- public helpers --------------------------------------------------------

std::string ggml_type_name(uint32_t type) {
  const TypeInfo* t = type_info(type);
  return t ? t->name : fmt::format("type {}", type);
}

GGMLBlock ggml_block(uint32_t type) {
  const TypeInfo* t = type_info(type);
  return t ? GGMLBlock{t->block_elements, t->block_bytes} : GGMLBlock{};
}

std::string ggml_supported_types() {
  std::string s;
  for (uint32_t t : kSupported) s += (s.empty() ? "" : ", ") + ggml_type_name(t);
  return s;
}


bool ggml_type_supported(uint32_t type) {
  return std::find(std::begin(kSupported), std::end(kSupported), type) != std::end(kSupported);
}

void dequantize_row(uint32_t type, const uint8_t* src, float* dst, int64_t n, const std::string& what) {
  const GGMLBlock blk = ggml_block(type);
  if (!ggml_type_supported(type))
    throw Error(fmt::format("{}: ggml type {} is not supported (supported: {})", what, ggml_type_name(type),
                            ggml_supported_types()));
  if (n % blk.elements != 0)
    throw Error(fmt::format("{}: {} elements are not a whole number of {}-element {} blocks", what, n, blk.elements,
                            ggml_type_name(type)));
  const int64_t nb = n / blk.elements;
  switch (GGMLType(type)) {
    case GGMLType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case GGMLType::F16: dequant_f16(src, dst, n); break;
    case GGMLType::BF16: dequant_bf16(src, dst, n); break;
    case GGMLType::Q8_0: dequant_q8_0(src, dst, nb); break;
    case GGMLType::Q4_0: dequant_q4_0(src, dst, nb); break;
    case GGMLType::Q4_1: dequant_q4_1(src, dst, nb); break;
    case GGMLType::Q5_0: dequant_q5_0(src, dst, nb); break;
    case GGMLType::Q5_1: dequant_q5_1(src, dst, nb); break;
    default: break;  // excluded by ggml_type_supported
  }
}

const char* gguf_value_type_name(GGUFValueType t) {
  switch (t) {
    case GGUFValueType::UINT8: return "uint8";
    case GGUFValueType::INT8: return "int8";
    case GGUFValueType::UINT16: return "uint16";
    case GGUFValueType::INT16: return "int16";
    case GGUFValueType::UINT32: return "uint32";
    case GGUFValueType::INT32: return "int32";
    case GGUFValueType::FLOAT32: return "float32";
    case GGUFValueType::BOOL: return "bool";
    case GGUFValueType::STRING: return "string";
    case GGUFValueType::ARRAY: return "array";
    case GGUFValueType::UINT64: return "uint64";
    case GGUFValueType::INT64: return "int64";
    case GGUFValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

bool GGUFValue::is_integer() const {
  switch (type) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16: case GGUFValueType::INT16:
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::UINT64: case GGUFValueType::INT64:
      return true;
    default:
      return false;
  }
}

std::string GGUFValue::to_string() const {
  switch (type) {
    case GGUFValueType::UINT8: case GGUFValueType::UINT16: case GGUFValueType::UINT32: case GGUFValueType::UINT64:
      return std::to_string(u);
    case GGUFValueType::INT8: case GGUFValueType::INT16: case GGUFValueType::INT32: case GGUFValueType::INT64:
      return std::to_string(i);
    case GGUFValueType::FLOAT32: case GGUFValueType::FLOAT64: return fmt::format("{}", f);
    case GGUFValueType::BOOL: return b ? "true" : "false";
    case GGUFValueType::STRING: return s.size() > 60 ? fmt::format("\"{}...\" ({} bytes)", s.substr(0, 60), s.size())
                                                       : "\"" + s + "\"";
    case GGUFValueType::ARRAY: {
      std::string out = "[";
      for (size_t k = 0; k < array.size() && k < 4; ++k) out += (k ? ", " : "") + array[k].to_string();
      if (array.size() > 4) out += fmt::format(", ... ({} {} values)", array.size(), gguf_value_type_name(array_type));
      return out + "]";
    }
  }
  return "?";
}

int64_t GGUFTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::vector<int64_t> GGUFTensorInfo::shape() const { return std::vector<int64_t>(dims.rbegin(), dims.rend()); }

// ---- GGUFFile --------------------------------------------------------------

GGUFFile::GGUFFile(const fs::path& path) : path_(path), file_(path) {
  size_ = file_.size();
  {
    const auto* bytes = file_.data();
    Cursor c(path_, bytes, size_);
    if (size_ < 4) throw c.fail(fmt::format("not a GGUF file: {} bytes, too short for the magic \"GGUF\"", size_));
    uint32_t magic = c.read<uint32_t>("magic");
    if (magic != kMagic) {
      std::string shown;
      for (int k = 0; k < 4; ++k) {
        char ch = char(bytes[k]);
        shown += (ch >= 32 && ch < 127) ? std::string(1, ch) : fmt::format("\\x{:02x}", uint8_t(ch));
      }
      throw c.fail(fmt::format("not a GGUF file: bad magic \"{}\", expected \"GGUF\"", shown));
    }
    version_ = c.read<uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
      if (version_ == 1) throw c.fail("GGUF version 1 is not supported (re-convert with a llama.cpp from 2023-08 on)");
      if ((version_ & 0xFFFF) == 0) throw c.fail(fmt::format("a big-endian GGUF file (version {}) is not supported",
                                                             __builtin_bswap32(version_)));
      throw c.fail(fmt::format("unsupported GGUF version {} (supported: 2, 3)", version_));
    }
    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata key count");
    // Each key needs at least 12 bytes (length + type), each tensor info 24.
    if (n_kv > c.remaining() / 12)
      throw c.fail(fmt::format("truncated file: {} metadata keys cannot fit in {} bytes", n_kv, c.remaining()));
    for (uint64_t k = 0; k < n_kv; ++k) {
      std::string key = c.read_string(fmt::format("metadata key #{}", k));
      uint32_t t = c.read<uint32_t>(fmt::format("type of key '{}'", key));
      if (!valid_value_type(t)) throw c.fail(fmt::format("key '{}': unknown value type {}", key, t));
      GGUFValue v = read_value(c, GGUFValueType(t), key, 0);
      if (!metadata_.emplace(key, std::move(v)).second) throw c.fail(fmt::format("duplicate metadata key '{}'", key));
    }
    if (const GGUFValue* a = find("general.alignment")) {
      if (a->type != GGUFValueType::UINT32)
        throw c.fail(fmt::format("general.alignment is {}, expected uint32", expected_text(*a)));
      if (a->u == 0 || (a->u & (a->u - 1)) != 0)
        throw c.fail(fmt::format("general.alignment {} is not a power of two", a->u));
      alignment_ = a->u;
    }

    if (n_tensors > c.remaining() / 24)
      throw c.fail(fmt::format("truncated file: {} tensor infos cannot fit in {} bytes", n_tensors, c.remaining()));
    tensors_.reserve(n_tensors);
    for (uint64_t k = 0; k < n_tensors; ++k) {
      GGUFTensorInfo t;
      t.name = c.read_string(fmt::format("name of tensor #{}", k));
      const std::string who = fmt::format("tensor '{}'", t.name);
      uint32_t n_dims = c.read<uint32_t>(who + " dimension count");
      if (n_dims == 0 || n_dims > kMaxDims)
        throw c.fail(fmt::format("{}: {} dimensions, expected 1 to {}", who, n_dims, kMaxDims));
      for (uint32_t d = 0; d < n_dims; ++d) {
        uint64_t v = c.read<uint64_t>(who + " dimensions");
        if (v > uint64_t(std::numeric_limits<int32_t>::max()))
          throw c.fail(fmt::format("{}: dimension {} is {}, too large", who, d, v));
        t.dims.push_back(int64_t(v));
      }
      t.type = c.read<uint32_t>(who + " type");
      t.offset = c.read<uint64_t>(who + " offset");
      const GGMLBlock blk = ggml_block(t.type);
      if (blk.elements == 0) throw c.fail(fmt::format("{}: unknown ggml type {}", who, t.type));
      if (t.dims[0] % blk.elements != 0)
        throw c.fail(fmt::format("{}: innermost dimension {} is not a multiple of the {}-element {} block", who,
                                 t.dims[0], blk.elements, ggml_type_name(t.type)));
      // At most 4 dims below 2^31 each: the product fits in 128 bits.
      unsigned __int128 bytes = (unsigned __int128)(t.dims[0] / blk.elements) * uint64_t(blk.bytes);
      for (size_t d = 1; d < t.dims.size(); ++d) bytes *= uint64_t(t.dims[d]);
      if (bytes > std::numeric_limits<uint64_t>::max() / 2) throw c.fail(fmt::format("{}: shape too large", who));
      t.nbytes = uint64_t(bytes);
      if (t.offset % alignment_ != 0)
        throw c.fail(fmt::format("{}: data offset {} is not a multiple of the alignment {}", who, t.offset, alignment_));
      if (!tensor_index_.emplace(t.name, tensors_.size()).second)
        throw c.fail(fmt::format("duplicate tensor name '{}'", t.name));
      tensors_.push_back(std::move(t));
    }
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    if (data_offset_ > size_ && !tensors_.empty())
      throw c.fail(fmt::format("truncated file: the data section should start at offset {}, but the file has {} bytes",
                               data_offset_, size_));
    data_ = bytes + std::min(data_offset_, size_);

    // Every tensor inside the file, none overlapping another.
    std::vector<const GGUFTensorInfo*> order;
    for (const auto& t : tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    const uint64_t have = size_ - std::min(data_offset_, size_);
    const GGUFTensorInfo* prev = nullptr;
    for (const auto* t : order) {
      if (t->offset > have || t->nbytes > have - t->offset)
        throw c.fail(fmt::format("tensor '{}' ({} {}) lies outside the file: bytes [{}, {}) of a data section of {} "
                                 "bytes (truncated file?)",
                                 t->name, ggml_type_name(t->type), shape_text(t->shape()), t->offset,
                                 t->offset + t->nbytes, have));
      if (prev && t->offset < prev->offset + prev->nbytes)
        throw c.fail(fmt::format("tensor '{}' at data offset {} overlaps tensor '{}' ending at {}", t->name, t->offset,
                                 prev->name, prev->offset + prev->nbytes));
      prev = t;
    }
  }
}

GGUFFile::~GGUFFile() = default;

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GGUFValue& GGUFFile::get(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) throw Error(fmt::format("{}: metadata key '{}' is missing", path_.string(), key));
  return *v;
}

uint64_t GGUFFile::get_uint(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.is_integer()) {
    bool is_signed = v.type == GGUFValueType::INT8 || v.type == GGUFValueType::INT16 ||
                     v.type == GGUFValueType::INT32 || v.type == GGUFValueType::INT64;
    if (!is_signed) return v.u;
    if (v.i >= 0) return uint64_t(v.i);
    throw Error(fmt::format("{}: metadata key '{}' is {}, expected a non-negative integer", path_.string(), key, v.i));
  }
  throw Error(fmt::format("{}: metadata key '{}' is {} {}, expected an unsigned integer", path_.string(), key,
                          expected_text(v), v.to_string()));
}

uint64_t GGUFFile::get_uint(const std::string& key, uint64_t fallback) const {
  return find(key) ? get_uint(key) : fallback;
}

double GGUFFile::get_float(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.is_float()) return v.f;
  if (v.is_integer()) return double(get_uint(key));
  throw Error(fmt::format("{}: metadata key '{}' is {} {}, expected a number", path_.string(), key, expected_text(v),
                          v.to_string()));
}

double GGUFFile::get_float(const std::string& key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

bool GGUFFile::get_bool(const std::string& key, bool fallback) const {
  const GGUFValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GGUFValueType::BOOL)
    throw Error(fmt::format("{}: metadata key '{}' is {}, expected bool", path_.string(), key, expected_text(*v)));
  return v->b;
}

std::string GGUFFile::get_string(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::STRING)
    throw Error(fmt::format("{}: metadata key '{}' is {}, expected string", path_.string(), key, expected_text(v)));
  return v.s;
}

std::string GGUFFile::get_string(const std::string& key, const std::string& fallback) const {
  return find(key) ? get_string(key) : fallback;
}

std::vector<std::string> GGUFFile::get_string_array(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::ARRAY || v.array_type != GGUFValueType::STRING)
    throw Error(fmt::format("{}: metadata key '{}' is {}, expected array of string", path_.string(), key,
                            expected_text(v)));
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) out.push_back(e.s);
  return out;
}

std::vector<int64_t> GGUFFile::get_int_array(const std::string& key) const {
  const GGUFValue& v = get(key);
  if (v.type != GGUFValueType::ARRAY || (!v.array.empty() && !v.array[0].is_integer()) ||
      (v.array.empty() && v.array_type == GGUFValueType::STRING))
    throw Error(fmt::format("{}: metadata key '{}' is {}, expected array of integers", path_.string(), key,
                            expected_text(v)));
  std::vector<int64_t> out;
  out.reserve(v.array.size());
  for (const auto& e : v.array) {
    bool is_signed = e.type == GGUFValueType::INT8 || e.type == GGUFValueType::INT16 ||
                     e.type == GGUFValueType::INT32 || e.type == GGUFValueType::INT64;
    out.push_back(is_signed ? e.i : int64_t(e.u));
  }
  return out;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GGUFTensorInfo& GGUFFile::tensor(const std::string& name) const {
  const GGUFTensorInfo* t = find_tensor(name);
  if (!t)
    throw Error(fmt::format("{}: no tensor named '{}' (the file holds {} tensors)", path_.string(), name,
                            tensors_.size()));
  return *t;
}

at::Tensor GGUFFile::dequantize(const GGUFTensorInfo& t) const {
  const std::string what = fmt::format("{}: tensor '{}'", path_.string(), t.name);
  if (!ggml_type_supported(t.type))
    throw Error(fmt::format("{}: ggml type {} is not supported (supported: {})", what, ggml_type_name(t.type),
                            ggml_supported_types()));
  auto out = torch::empty(t.shape(), torch::kFloat32);
  const GGMLBlock blk = ggml_block(t.type);
  const int64_t n_blocks = t.numel() / blk.elements;
  const uint8_t* src = tensor_data(t);
  float* dst = out.data_ptr<float>();
  // Blocks are independent: split the tensor into chunks of whole blocks.
  const int64_t grain = std::max<int64_t>(1, 65536 / blk.elements);
  at::parallel_for(0, n_blocks, grain, [&](int64_t begin, int64_t end) {
    dequantize_row(t.type, src + begin * blk.bytes, dst + begin * blk.elements, (end - begin) * blk.elements, what);
  });
  return out;
}

}  // namespace tess::model
