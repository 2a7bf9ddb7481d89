#pragma once
// Sharded training checkpoints (docs/checkpoints.md):
//
//   RUN_DIR/checkpoints/step_00001234/
//     model/                 the model in HF layout (config.json, safetensors, tokenizer)
//     rank_00000.safetensors one file per rank: its optimizer shard and, as
//     rank_00001.safetensors metadata, its random-stream states and loader position
//     manifest.json          written last: step, tokens, world size, config and
//                            tokenizer hashes, every file with size and sha256
//   RUN_DIR/checkpoints/latest   name of the newest complete checkpoint
//
// A checkpoint is written into a temporary sibling directory (step_N.staging);
// its manifest, written last, is the commit point. Then the directory is
// renamed into place (replacing an earlier save of the same step), `latest`
// is replaced atomically and checkpoints beyond keep_last are removed, oldest
// commit first, never the one `latest` names. recover_checkpoints() brings
// the state left by a crash between any two of those steps back to a
// committed one: a staging directory with a manifest is renamed into place
// (roll forward), one without is removed, and a missing or dangling `latest`
// points at the newest complete checkpoint again.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tess::checkpoint {

struct FileEntry {
  std::string path;  // relative to the checkpoint directory
  uint64_t size = 0;
  std::string sha256;
};

struct Manifest {
  int format_version = 1;
  int64_t commit = 0;  // commit order in the run directory (0: written before commits were counted)
  int64_t step = 0;
  int64_t tokens_seen = 0;
  int world_size = 1;
  std::string stage;
  std::string config_hash;
  std::string tokenizer_hash;
  // The run's configuration, key -> canonical value text (Config::
  // canonical_values()), so that a resume names what changed; empty in
  // checkpoints written before it was recorded.
  std::map<std::string, std::string> config;
  std::vector<FileEntry> files;

  std::string to_json() const;
  // Parses and validates (types, ranges, one rank file per rank, relative
  // paths): every reader of a manifest goes through it.
  static Manifest from_json(const std::string& text, const std::string& source);
};

std::filesystem::path checkpoints_root(const std::filesystem::path& run_dir);
std::string step_name(int64_t step);  // "step_00001234"

// The newest complete checkpoint of a run (from `latest`), if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

// The run's committed checkpoints (a manifest that parses and validates;
// files are not hashed here), oldest commit first.
struct CommittedCheckpoint {
  std::filesystem::path dir;
  Manifest manifest;
};
std::vector<CommittedCheckpoint> committed_checkpoints(const std::filesystem::path& run_dir);

// Repairs what an interrupted save left (see above); returns one line per
// repair, for the log. Call before reading `latest` at the start of a run.
std::vector<std::string> recover_checkpoints(const std::filesystem::path& run_dir);

// Reads and checks a checkpoint: the manifest parses, every listed file
// exists with its size and (when `hash`) its sha256, and no rank file is
// missing. Throws tess::Error naming the checkpoint and the file at fault.
Manifest verify_checkpoint(const std::filesystem::path& dir, bool hash = true);

// Writing one checkpoint. Every rank writes its files into staging_dir();
// then (after a barrier) rank 0 calls commit().
class CheckpointWriter {
 public:
  // `prepare`: (re)create the staging directory; exactly one rank does, before
  // the others write into it (a barrier in between).
  CheckpointWriter(const std::filesystem::path& run_dir, int64_t step, bool prepare = true);
  const std::filesystem::path& staging_dir() const { return staging_; }
  const std::filesystem::path& final_dir() const { return final_; }
  // Hashes the staged files, writes manifest.json, renames the directory into
  // place, points `latest` at it and keeps only the newest `keep_last`.
  std::filesystem::path commit(Manifest manifest, int keep_last);

 private:
  std::filesystem::path run_dir_, staging_, final_;
};


std::string rank_file_name(int rank);  // "rank_00000.safetensors"

// Random-stream states travel as safetensors metadata strings.
std::string hex_encode(const std::vector<uint8_t>& bytes);
std::vector<uint8_t> hex_decode(const std::string& text, const std::string& what);

}  // namespace tess::checkpoint
