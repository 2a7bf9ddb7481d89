#pragma once
// Scalars for TensorBoard without TensorFlow or protobuf: an event file in the
// TFRecord format (length, masked CRC32C, data, masked CRC32C) whose records
// are hand-encoded `Event` protobufs. Point `tensorboard --logdir` at the
// directory given to the writer.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

namespace tess::util {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), e.g. "123456789" -> 0xE3069283.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }
// The TFRecord mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t mask_crc32c(uint32_t crc);

// One TFRecord framing `data`: uint64 LE length, masked CRC of the length
// bytes, the data, masked CRC of the data.
std::string tfrecord_frame(std::string_view data);

// Encoded `Event` messages (wall_time in seconds since the epoch).
std::string encode_file_version_event(double wall_time);  // file_version "brain.Event:2"
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);

// Writes events.out.tfevents.<unix seconds>.<hostname>.tess in `log_dir`
// (created if missing). Records are buffered; flush() (and the destructor)
// push them to the file. Every failure (directory or file cannot be created,
// a write fails, e.g. on a full disk) is a tess::Error naming the path.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::filesystem::path& log_dir);
  ~TensorBoardWriter();  // flushes; errors there are swallowed (call flush() to see them)
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  void flush();
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_record(const std::string& event);
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace tess::util
