#include "data/line_reader.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>
#include <zlib.h>

#include "core/util/error.h"

namespace tess::data {
namespace fs = std::filesystem;

namespace {
gzFile gz(void* f) { return static_cast<gzFile>(f); }
}  // namespace

LineReader::LineReader(const fs::path& file) : file_(file) {
  gzFile f = gzopen(file.c_str(), "rb");
  if (!f) throw Error(fmt::format("cannot open '{}': {}", file.string(), std::strerror(errno)));
  gzbuffer(f, 1 << 17);
  f_ = f;
}

LineReader::~LineReader() {
  if (f_) gzclose(gz(f_));
}

bool LineReader::next(std::string& line) {
  line.clear();
  for (;;) {
    if (pos_ == len_ && !fill()) {
      if (line.empty() && !pending_) return false;
      pending_ = false;
      break;
    }
    pending_ = true;
    const char* start = buf_ + pos_;
    const void* nl = std::memchr(start, '\n', len_ - pos_);
    if (nl) {
      size_t n = static_cast<size_t>(static_cast<const char*>(nl) - start);
      line.append(start, n);
      pos_ += n + 1;
      pending_ = false;
      break;
    }
    line.append(start, len_ - pos_);
    pos_ = len_;
  }
  ++line_no_;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

std::string LineReader::rest() {
  std::string out(buf_ + pos_, len_ - pos_);
  pos_ = len_;
  while (fill()) {
    out.append(buf_, len_);
    pos_ = len_;
  }
  return out;
}

int64_t LineReader::compressed_offset() const { return static_cast<int64_t>(gzoffset(gz(f_))); }

// zlib's gzread returns what it could inflate and reports a stream that ends
// early (Z_BUF_ERROR, "unexpected end of file") only through gzerror: both
// the -1 and the 0 return are checked.
bool LineReader::fill() {
  int n = gzread(gz(f_), buf_, sizeof buf_);
  if (n <= 0) {
    int err = Z_OK;
    const char* msg = gzerror(gz(f_), &err);
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
      std::string what = msg && *msg ? msg : "read error";
      if (auto prefix = file_.string() + ": "; what.rfind(prefix, 0) == 0) what.erase(0, prefix.size());
      throw Error(fmt::format("'{}': corrupt gzip data: {} (the file is damaged or was cut short)", file_.string(),
                              what));
    }
  }
  pos_ = 0;
  len_ = static_cast<size_t>(n);
  return n > 0;
}

}  // namespace tess::data
