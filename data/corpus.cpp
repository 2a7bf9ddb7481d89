#include "data/corpus.h"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/util/error.h"
#include "core/util/format.h"
#include "core/util/progress.h"
#include "core/util/rng.h"
#include "core/util/sha256.h"
#include "data/jsonl.h"
#include "data/line_reader.h"
#include "data/token_dataset.h"
#include "data/tokenizer.h"

namespace tess::data {
namespace fs = std::filesystem;

// ---- options --------------------------------------------------------------------

DocSplit parse_doc_split(const std::string& name) {
  if (name == "blank-line") return DocSplit::BlankLine;
  if (name == "file") return DocSplit::File;
  throw Error(fmt::format("unknown document split '{}' (expected blank-line or file)", name));
}

std::string doc_split_name(DocSplit split) { return split == DocSplit::File ? "file" : "blank-line"; }

InputFormat parse_input_format(const std::string& name) {
  if (name == "auto") return InputFormat::Auto;
  if (name == "text") return InputFormat::Text;
  if (name == "jsonl") return InputFormat::Jsonl;
  throw Error(fmt::format("unknown input format '{}' (expected auto, text or jsonl)", name));
}

namespace {

bool is_jsonl_name(const fs::path& file) {
  std::string name = file.filename().string();
  if (name.size() > 3 && name.compare(name.size() - 3, 3, ".gz") == 0) name.resize(name.size() - 3);
  for (const char* ext : {".jsonl", ".json", ".ndjson"}) {
    size_t n = std::strlen(ext);
    if (name.size() > n && name.compare(name.size() - n, n, ext) == 0) return true;
  }
  return false;
}

void add_directory(const fs::path& dir, std::vector<fs::path>& out) {
  std::vector<fs::path> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  if (ec) throw Error(fmt::format("cannot read directory '{}': {}", dir.string(), ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(fmt::format("cannot read directory '{}': {}", dir.string(), ec.message()));
    std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (files.empty()) throw Error(fmt::format("directory '{}' holds no input file", dir.string()));
  std::sort(files.begin(), files.end());
  out.insert(out.end(), files.begin(), files.end());
}

}  // namespace

std::vector<fs::path> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> out;
  for (const auto& input : inputs) {
    if (input.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      int rc = ::glob(input.c_str(), 0, nullptr, &g);
      if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        throw Error(fmt::format("input pattern '{}' matches no file", input));
      }
      if (rc != 0) {
        globfree(&g);
        throw Error(fmt::format("input pattern '{}': cannot expand it (glob error {})", input, rc));
      }
      std::vector<fs::path> matches(g.gl_pathv, g.gl_pathv + g.gl_pathc);
      globfree(&g);
      std::sort(matches.begin(), matches.end());
      for (const auto& m : matches) {
        if (fs::is_directory(m)) add_directory(m, out);
        else out.push_back(m);
      }
    } else if (fs::is_directory(input)) {
      add_directory(input, out);
    } else if (fs::is_regular_file(input)) {
      out.emplace_back(input);
    } else if (fs::exists(input)) {
      throw Error(fmt::format("input '{}' is not a regular file or a directory", input));
    } else {
      throw Error(fmt::format("input '{}' does not exist", input));
    }
  }
  return out;
}

std::string CorpusReport::summary() const {
  auto split = [](const char* name, const SplitCounts& c) {
    return fmt::format("{}: {} documents, {} tokens in {} shard(s)\n", name, c.documents, c.tokens, c.shards);
  };
  std::string s = fmt::format("wrote {} ({}, {} input file(s), {:.1f}s)\n", output.string(), dtype, files, seconds);
  s += split("train", train);
  s += split("validation", validation);
  if (empty_documents) s += fmt::format("empty documents left out: {}\n", empty_documents);
  if (skipped_records) s += fmt::format("malformed records skipped: {}\n", skipped_records);
  return s;
}

namespace {

// ---- reading ----------------------------------------------------------------------


bool is_blank(const std::string& s) { return s.find_first_not_of(" \t\r\f\v") == std::string::npos; }

struct Source {
  fs::path path;
  bool validation = false;  // a --validation-input file
  bool jsonl = false;
  int64_t bytes = 0;
};

// A work unit: consecutive records of one file, in input order.
struct Chunk {
  int64_t seq = 0;
  size_t source = 0;
  std::vector<std::string> texts;  // document text, or the raw JSONL line
  std::vector<int64_t> lines;      // where each record starts (1-based)
  std::exception_ptr error;        // reading failed here: raised when the writer gets this far
  int64_t input_bytes_done = 0;    // input progress after this chunk
};

enum class RecordStatus : uint8_t { Ok, Empty, Bad };

struct ChunkResult {
  int64_t seq = 0;
  size_t source = 0;
  std::vector<RecordStatus> status;
  std::vector<int64_t> lines;
  std::vector<std::string> problems;  // one per Bad record, in order
  std::vector<int32_t> ids;           // the Ok documents' tokens, concatenated
  std::vector<int64_t> lengths;       // one per Ok document
  std::exception_ptr error;
  int64_t input_bytes_done = 0;
};

// ---- writing -------------------------------------------------------------------------

// A file written with checked writes and hashed as it goes.
class HashedFile {
 public:
  HashedFile(const fs::path& path, std::string relative) : path_(path), relative_(std::move(relative)) {
    f_ = std::fopen(path.c_str(), "wb");
    if (!f_) throw Error(fmt::format("cannot create '{}': {}", path.string(), std::strerror(errno)));
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  ~HashedFile() {
    if (f_) std::fclose(f_);
  }
  HashedFile(const HashedFile&) = delete;
  HashedFile& operator=(const HashedFile&) = delete;

  void write(const void* data, size_t n) {
    if (n == 0) return;
    if (std::fwrite(data, 1, n, f_) != n) fail("write");
    sha_.update(data, n);
    bytes_ += static_cast<int64_t>(n);
  }
  // Flushes to disk (so that the rename at the end publishes complete files).
  ShardInfo close(int64_t tokens) {
    if (std::fflush(f_) != 0) fail("write");
    if (::fsync(fileno(f_)) != 0) fail("sync");
    int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) fail("close");
    return ShardInfo{relative_, tokens, bytes_, sha_.hex_digest()};
  }
  int64_t bytes() const { return bytes_; }

 private:
  [[noreturn]] void fail(const char* what) {
    int e = errno;
    throw Error(fmt::format("cannot {} '{}': {}{}", what, path_.string(), std::strerror(e),
                            e == ENOSPC ? " (the disk is full; nothing was published)" : ""));
  }
  fs::path path_;
  std::string relative_;
  std::FILE* f_ = nullptr;
  util::Sha256 sha_;
  int64_t bytes_ = 0;
};

// The shards and the document index of one split.
class SplitWriter {
 public:
  SplitWriter(const fs::path& root, std::string name, int64_t shard_tokens, bool u16)
      : root_(root), name_(std::move(name)), shard_tokens_(shard_tokens), u16_(u16) {
    fs::create_directories(root_ / name_);
    std::string rel = name_ + "/docs.bin";
    index_ = std::make_unique<HashedFile>(root_ / rel, rel);
    int64_t zero = 0;
    index_->write(&zero, sizeof zero);
  }

  void add_document(const int32_t* ids, int64_t n) {
    while (n > 0) {
      if (!shard_) open_shard();
      int64_t k = std::min(n, shard_tokens_ - in_shard_);
      if (u16_) {
        buf16_.resize(static_cast<size_t>(k));
        for (int64_t i = 0; i < k; ++i) buf16_[static_cast<size_t>(i)] = static_cast<uint16_t>(ids[i]);
        shard_->write(buf16_.data(), buf16_.size() * 2);
      } else {
        shard_->write(ids, static_cast<size_t>(k) * 4);
      }
      ids += k;
      n -= k;
      in_shard_ += k;
      tokens_ += k;
      if (in_shard_ == shard_tokens_) close_shard();
    }
    index_->write(&tokens_, sizeof tokens_);
    ++documents_;
  }

  SplitInfo finish() {
    if (shard_) close_shard();
    SplitInfo info;
    info.documents = documents_;
    info.tokens = tokens_;
    info.index = index_->close(0);
    info.index.tokens = 0;
    info.shards = std::move(shards_);
    return info;
  }

  int64_t tokens() const { return tokens_; }
  int64_t documents() const { return documents_; }

 private:
  void open_shard() {
    std::string rel = fmt::format("{}/shard-{:05d}.bin", name_, shards_.size());
    shard_ = std::make_unique<HashedFile>(root_ / rel, rel);
    in_shard_ = 0;
  }
  void close_shard() {
    shards_.push_back(shard_->close(in_shard_));
    shard_.reset();
  }
  fs::path root_;
  std::string name_;
  int64_t shard_tokens_;
  bool u16_;
  std::unique_ptr<HashedFile> shard_;
  std::unique_ptr<HashedFile> index_;
  std::vector<ShardInfo> shards_;
  std::vector<uint16_t> buf16_;
  int64_t in_shard_ = 0;
  int64_t tokens_ = 0;
  int64_t documents_ = 0;
};

// ---- the pipeline ------------------------------------------------------------------------
//
// reader thread -> chunks -> worker threads (parse + tokenize) -> results ->
// the calling thread writes them in sequence order. At most `max_inflight`
// chunks exist between reading and writing, which bounds memory.

class Pipeline {
 public:
  Pipeline(const Tokenizer& tok, const CorpusOptions& opt, const std::vector<Source>& sources)
      : tok_(tok), opt_(opt), sources_(sources) {}

  template <class Write>
  void run(int threads, Write&& write) {
    max_inflight_ = 2 * threads + 2;
    try {
      reader_ = std::thread([this] { read_all(); });
      for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
      for (int64_t seq = 0;; ++seq) {
        ChunkResult result;
        {
          std::unique_lock<std::mutex> lock(m_);
          cv_.wait(lock, [&] { return done_.count(seq) || (reader_done_ && seq == produced_); });
          auto it = done_.find(seq);
          if (it == done_.end()) break;  // everything written
          result = std::move(it->second);
          done_.erase(it);
        }
        cv_.notify_all();
        write(result);
        {
          std::lock_guard<std::mutex> lock(m_);
          ++consumed_;
        }
        cv_.notify_all();
      }
    } catch (...) {
      stop();
      throw;
    }
    stop();
  }

  ~Pipeline() { stop(); }

  std::atomic<int64_t> input_bytes{0};

 private:
  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_);
      abort_ = true;
    }
    cv_.notify_all();
    if (reader_.joinable()) reader_.join();
    for (auto& w : workers_)
      if (w.joinable()) w.join();
    workers_.clear();
  }

  // Waits for room, then queues the chunk; false when aborted.
  bool push(Chunk&& chunk) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return abort_ || produced_ - consumed_ < max_inflight_; });
    if (abort_) return false;
    chunk.seq = produced_++;
    todo_.push_back(std::move(chunk));
    lock.unlock();
    cv_.notify_all();
    return true;
  }

  void read_all() {
    int64_t bytes_before = 0;
    for (size_t s = 0; s < sources_.size(); ++s) {
      const Source& src = sources_[s];
      Chunk chunk;
      chunk.source = s;
      int64_t chunk_bytes = 0;
      auto flush = [&](int64_t done_bytes) {
        if (chunk.texts.empty() && !chunk.error) return true;
        chunk.input_bytes_done = done_bytes;
        bool ok = push(std::move(chunk));
        chunk = Chunk{};
        chunk.source = s;
        chunk_bytes = 0;
        return ok;
      };
      auto add = [&](std::string&& text, int64_t line, LineReader& in) {
        chunk_bytes += static_cast<int64_t>(text.size());
        chunk.texts.push_back(std::move(text));
        chunk.lines.push_back(line);
        if (static_cast<int64_t>(chunk.texts.size()) >= opt_.chunk_documents || chunk_bytes >= opt_.chunk_bytes)
          return flush(bytes_before + std::min(in.compressed_offset(), src.bytes));
        return true;
      };
      try {
        LineReader in(src.path);
        std::string line;
        if (src.jsonl) {
          while (in.next(line)) {
            if (is_blank(line)) continue;
            if (!add(std::move(line), in.line_no(), in)) return;
          }
        } else if (opt_.doc_split == DocSplit::File) {
          std::string text = in.rest();
          if (!add(std::move(text), 1, in)) return;
        } else {
          std::string block;
          int64_t start = 0;
          while (in.next(line)) {
            if (is_blank(line)) {
              if (!block.empty() && !add(std::move(block), start, in)) return;
              block.clear();
              continue;
            }
            if (block.empty()) start = in.line_no();
            else block += '\n';
            block += line;
          }
          if (!block.empty() && !add(std::move(block), start, in)) return;
        }
      } catch (...) {
        chunk.error = std::current_exception();
        flush(bytes_before);
        break;
      }
      bytes_before += src.bytes;
      if (!flush(bytes_before)) return;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      reader_done_ = true;
    }
    cv_.notify_all();
  }

  void work() {
    for (;;) {
      Chunk chunk;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return abort_ || !todo_.empty() || reader_done_; });
        if (abort_ || todo_.empty()) return;
        chunk = std::move(todo_.front());
        todo_.pop_front();
      }
      ChunkResult r = process(chunk);
      {
        std::lock_guard<std::mutex> lock(m_);
        done_.emplace(r.seq, std::move(r));
      }
      cv_.notify_all();
    }
  }

  ChunkResult process(Chunk& chunk) {
    ChunkResult r;
    r.seq = chunk.seq;
    r.source = chunk.source;
    r.error = chunk.error;
    r.input_bytes_done = chunk.input_bytes_done;
    r.lines = std::move(chunk.lines);
    const bool jsonl = sources_[chunk.source].jsonl;
    try {
      for (auto& raw : chunk.texts) {
        std::string text;
        if (jsonl) {
          std::string problem;
          try {
            auto rec = nlohmann::json::parse(raw);
            if (!rec.is_object()) {
              problem = fmt::format("expected a JSON object, got {}", rec.type_name());
            } else if (!rec.contains(opt_.text_field)) {
              problem = fmt::format("missing field '{}'", opt_.text_field);
            } else if (!rec[opt_.text_field].is_string()) {
              problem = fmt::format("field '{}' must be a string, got {}", opt_.text_field,
                                    rec[opt_.text_field].type_name());
            } else {
              text = rec[opt_.text_field].get<std::string>();
            }
          } catch (const nlohmann::json::exception& e) {
            problem = fmt::format("not valid JSON ({})", e.what());
          }
          if (!problem.empty()) {
            r.status.push_back(RecordStatus::Bad);
            r.problems.push_back(std::move(problem));
            continue;
          }
        } else {
          text = std::move(raw);
        }
        if (is_blank(text)) {
          r.status.push_back(RecordStatus::Empty);
          continue;
        }
        auto ids = tok_.encode(text);
        if (ids.empty()) {
          r.status.push_back(RecordStatus::Empty);
          continue;
        }
        r.status.push_back(RecordStatus::Ok);
        r.lengths.push_back(static_cast<int64_t>(ids.size()));
        r.ids.insert(r.ids.end(), ids.begin(), ids.end());
      }
    } catch (...) {
      if (!r.error) r.error = std::current_exception();
    }
    return r;
  }

  const Tokenizer& tok_;
  const CorpusOptions& opt_;
  const std::vector<Source>& sources_;
  std::thread reader_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Chunk> todo_;
  std::map<int64_t, ChunkResult> done_;
  int64_t produced_ = 0;
  int64_t consumed_ = 0;
  int64_t max_inflight_ = 4;
  bool reader_done_ = false;
  bool abort_ = false;
};

// Removes a directory tree when destroyed unless released.
struct TempDirGuard {
  fs::path path;
  bool armed = true;
  ~TempDirGuard() {
    if (!armed) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

CorpusReport tokenize_corpus(const Tokenizer& tok, const CorpusOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  if (opt.inputs.empty()) throw Error("tokenize corpus: no input given");
  if (opt.output.empty()) throw Error("tokenize corpus: no output directory given");
  if (!(opt.validation_fraction >= 0.0 && opt.validation_fraction < 1.0))
    throw Error(fmt::format("validation fraction must be in [0, 1), got {}", opt.validation_fraction));
  if (opt.validation_fraction > 0 && !opt.validation_inputs.empty())
    throw Error("give either a validation fraction or validation inputs, not both");
  if (opt.shard_tokens < 1) throw Error(fmt::format("shard size must be >= 1 token, got {}", opt.shard_tokens));
  if (opt.chunk_documents < 1 || opt.chunk_bytes < 1) throw Error("chunk sizes must be >= 1");
  if (opt.text_field.empty()) throw Error("the JSONL text field name is empty");

  const int32_t vocab = tok.vocab_size();
  std::string dtype = opt.dtype;
  if (dtype == "auto") dtype = vocab <= 65536 ? "uint16" : "uint32";
  if (dtype != "uint16" && dtype != "uint32")
    throw Error(fmt::format("unknown token dtype '{}' (expected auto, uint16 or uint32)", opt.dtype));
  if (dtype == "uint16" && vocab > 65536)
    throw Error(fmt::format("dtype uint16 cannot hold the ids of a {}-token vocabulary; use uint32", vocab));
  const bool u16 = dtype == "uint16";

  fs::path output = opt.output;
  if (!output.has_filename()) output = output.parent_path();  // "dir/" -> "dir"
  if (fs::exists(output) && !opt.overwrite)
    throw Error(fmt::format("'{}' already exists (pass --overwrite to replace it)", output.string()));

  std::vector<Source> sources;
  auto add_sources = [&](const std::vector<std::string>& inputs, bool validation) {
    for (const auto& p : expand_inputs(inputs)) {
      Source s;
      s.path = p;
      s.validation = validation;
      s.jsonl = opt.format == InputFormat::Jsonl || (opt.format == InputFormat::Auto && is_jsonl_name(p));
      std::error_code ec;
      auto size = fs::file_size(p, ec);
      s.bytes = ec ? 0 : static_cast<int64_t>(size);
      sources.push_back(std::move(s));
    }
  };
  add_sources(opt.inputs, false);
  add_sources(opt.validation_inputs, true);

  // Build under a temporary name next to the output, publish by rename.
  fs::path parent = output.has_parent_path() ? output.parent_path() : fs::path(".");
  fs::create_directories(parent);
  TempDirGuard tmp{parent / fmt::format(".{}.partial-{}", output.filename().string(), ::getpid())};
  fs::remove_all(tmp.path);
  fs::create_directories(tmp.path);

  DatasetMeta meta;
  meta.tokenizer_kind = tok.kind();
  meta.tokenizer_hash = tok.content_hash();
  meta.vocab_size = vocab;
  meta.bos_id = tok.bos_id();
  meta.eos_id = tok.eos_id();
  meta.pad_id = tok.pad_id();
  meta.dtype = dtype;
  meta.shard_tokens = opt.shard_tokens;
  meta.doc_split = doc_split_name(opt.doc_split);
  meta.validation_fraction = opt.validation_fraction;
  meta.split_seed = opt.split_seed;
  for (const auto& s : sources) {
    SourceInfo info;
    info.path = s.path.string();
    info.role = s.validation ? "validation" : "train";
    info.format = s.jsonl ? "jsonl" : "text";
    meta.sources.push_back(std::move(info));
  }

  int64_t total_bytes = 0;
  for (const auto& s : sources) total_bytes += s.bytes;

  SplitWriter train(tmp.path, "train", opt.shard_tokens, u16);
  SplitWriter validation(tmp.path, "validation", opt.shard_tokens, u16);
  util::Rng split_rng(opt.split_seed, "corpus_split");
  std::vector<JsonlReport> bad(sources.size());

  util::Progress::Options popt;
  popt.unit = "tokens";
  popt.enabled = opt.progress;
  util::Progress progress("tokenize", 0, popt);
  int64_t tokens_done = 0, docs_done = 0;

  int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Pipeline pipeline(tok, opt, sources);
  pipeline.run(threads, [&](ChunkResult& r) {
    const Source& src = sources[r.source];
    SourceInfo& info = meta.sources[r.source];
    size_t ok = 0, problem = 0;
    int64_t offset = 0;
    for (size_t k = 0; k < r.status.size(); ++k) {
      switch (r.status[k]) {
        case RecordStatus::Bad:
          if (!opt.skip_bad_records)
            throw Error(fmt::format("{}:{}: {} (pass --skip-bad-records to skip such lines)", src.path.string(),
                                    r.lines[k], r.problems[problem]));
          bad[r.source].skipped.push_back({r.lines[k], r.problems[problem]});
          ++problem;
          ++info.skipped_records;
          break;
        case RecordStatus::Empty:
          ++info.empty_documents;
          break;
        case RecordStatus::Ok: {
          int64_t n = r.lengths[ok++];
          const int32_t* ids = r.ids.data() + offset;
          offset += n;
          for (int64_t i = 0; i < n; ++i)
            if (ids[i] < 0 || ids[i] >= vocab)
              throw Error(fmt::format("{}:{}: the tokenizer produced id {} outside its vocabulary of {}",
                                      src.path.string(), r.lines[k], ids[i], vocab));
          bool to_validation =
              src.validation || (opt.validation_fraction > 0 && split_rng.uniform() < opt.validation_fraction);
          (to_validation ? validation : train).add_document(ids, n);
          ++info.documents;
          info.tokens += n;
          tokens_done += n;
          ++docs_done;
          break;
        }
      }
    }
    if (r.error) std::rethrow_exception(r.error);
    if (total_bytes > 0)
      progress.set_field("input", fmt::format("{:.0f}%", 100.0 * static_cast<double>(r.input_bytes_done) /
                                                             static_cast<double>(total_bytes)));
    progress.set_field("docs", util::human_count(static_cast<double>(docs_done)));
    progress.update(tokens_done);
  });
  progress.finish();

  for (size_t s = 0; s < sources.size(); ++s)
    if (!bad[s].skipped.empty()) {
      bad[s].records = meta.sources[s].documents + meta.sources[s].empty_documents;
      spdlog::warn("{}", bad[s].summary(sources[s].path));
    }

  meta.train = train.finish();
  meta.validation = validation.finish();
  if (meta.train.documents == 0)
    throw Error(fmt::format("the inputs hold no training document ({} file(s) read; all empty{})", sources.size(),
                            opt.validation_fraction > 0 ? " or sent to validation" : ""));

  {
    HashedFile meta_file(tmp.path / kTokenDatasetMetaFile, kTokenDatasetMetaFile);
    std::string text = meta.to_json();
    meta_file.write(text.data(), text.size());
    meta_file.close(0);
  }

  // Publish: the directory appears complete or not at all.
  fs::path old;
  if (fs::exists(output)) {
    old = parent / fmt::format(".{}.old-{}", output.filename().string(), ::getpid());
    fs::remove_all(old);
    fs::rename(output, old);
  }
  std::error_code ec;
  fs::rename(tmp.path, output, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, output);
    throw Error(fmt::format("cannot rename '{}' to '{}': {}", tmp.path.string(), output.string(), ec.message()));
  }
  tmp.armed = false;
  if (!old.empty()) fs::remove_all(old);

  CorpusReport report;
  report.output = output;
  report.dtype = dtype;
  report.train = {meta.train.documents, meta.train.tokens, static_cast<int64_t>(meta.train.shards.size())};
  report.validation = {meta.validation.documents, meta.validation.tokens,
                       static_cast<int64_t>(meta.validation.shards.size())};
  report.files = static_cast<int64_t>(sources.size());
  for (const auto& s : meta.sources) {
    report.empty_documents += s.empty_documents;
    report.skipped_records += s.skipped_records;
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace tess::data
