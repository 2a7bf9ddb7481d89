#include "core/util/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "core/util/error.h"

namespace tess::util {
namespace fs = std::filesystem;
namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

// Protobuf wire format (little-endian fixed-width values, base-128 varints).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_fixed32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_fixed64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };
void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }
void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}
void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed64);
  put_fixed64(out, bits);
}
void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed32);
  put_fixed32(out, bits);
}

// Event { double wall_time = 1; int64 step = 2; ... }
std::string event_header(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) {
    put_key(e, 2, kVarint);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

double now_seconds() {
  using namespace std::chrono;
  return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

std::string tfrecord_frame(std::string_view data) {
  std::string header;
  put_fixed64(header, data.size());
  std::string rec = header;
  put_fixed32(rec, mask_crc32c(crc32c(header)));
  rec.append(data.data(), data.size());
  put_fixed32(rec, mask_crc32c(crc32c(data)));
  return rec;
}

std::string encode_file_version_event(double wall_time) {
  std::string e = event_header(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string v;  // Summary.Value { string tag = 1; float simple_value = 2; }
  put_bytes(v, 1, tag);
  put_float(v, 2, value);
  std::string summary;  // Summary { repeated Value value = 1; }
  put_bytes(summary, 1, v);
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);  // Event.summary = 5
  return e;
}

TensorBoardWriter::TensorBoardWriter(const fs::path& log_dir) {
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  if (ec || !fs::is_directory(log_dir))
    throw Error(fmt::format("cannot create the TensorBoard directory '{}': {}", log_dir.string(),
                            ec ? ec.message() : "not a directory"));
  double now = now_seconds();
  path_ = log_dir / fmt::format("events.out.tfevents.{}.{}.tess", static_cast<int64_t>(now), host_name());
  // Append: a writer re-created within the same second continues the file
  // (TensorBoard accepts a second file_version record).
  file_ = std::fopen(path_.c_str(), "ab");
  if (!file_)
    throw Error(fmt::format("cannot create the TensorBoard event file '{}': {}", path_.string(),
                            std::strerror(errno)));
  try {
    write_record(encode_file_version_event(now));
    flush();
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);  // flushes; an error here has nowhere to go
}

void TensorBoardWriter::write_record(const std::string& event) {
  std::string rec = tfrecord_frame(event);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size())
    throw Error(fmt::format("failed writing the TensorBoard event file '{}': {}", path_.string(),
                            std::strerror(errno)));
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  write_record(encode_scalar_event(now_seconds(), step, tag, static_cast<float>(value)));
}

void TensorBoardWriter::flush() {
  if (std::fflush(file_) != 0 || std::ferror(file_)) {
    int err = errno;
    std::clearerr(file_);
    throw Error(fmt::format("failed writing the TensorBoard event file '{}': {}", path_.string(),
                            std::strerror(err ? err : EIO)));
  }
}

}  // namespace tess::util
