#pragma once
// Lines of a plain or gzip-compressed text file, read in blocks (bounded
// memory whatever the file size). The one reader for every text input
// (corpora, chat/preference/eval JSONL), so a gzip file that ends before its
// end-of-stream marker — cut at a flush point or mid-line — is always
// "corrupt gzip data: unexpected end of file", never a short or bad read.
// zlib reads files that are not gzip-compressed as they are.
#include <cstdint>
#include <filesystem>
#include <string>

namespace tess::data {

class LineReader {
 public:
  explicit LineReader(const std::filesystem::path& file);  // throws tess::Error "cannot open"
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its '\n' (and a trailing '\r'); false at the end.
  // Throws tess::Error naming the file when the compressed data is corrupt
  // or truncated (before handing out the incomplete last line).
  bool next(std::string& line);
  // The rest of the file, checked the same way.
  std::string rest();

  int64_t line_no() const { return line_no_; }  // of the line next() returned last
  int64_t compressed_offset() const;            // bytes of the file consumed so far

 private:
  bool fill();
  std::filesystem::path file_;
  void* f_ = nullptr;  // gzFile; zlib.h stays out of this header
  char buf_[1 << 16];
  size_t pos_ = 0, len_ = 0;
  bool pending_ = false;  // characters of the current line were read
  int64_t line_no_ = 0;
};

}  // namespace tess::data
