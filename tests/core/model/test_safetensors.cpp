#include <catch2/catch.hpp>

#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/model/safetensors.h"
#include "core/util/error.h"
#include "core/util/sha256.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using namespace tess::model;
using Catch::Matchers::Contains;
using tess::test::TempDir;

namespace {

// The bits of a float tensor as integers, so NaN payloads and -0 compare exactly.
torch::Tensor bits(const torch::Tensor& t) {
  auto c = t.contiguous();
  return c.view(c.element_size() == 4 ? torch::kInt32 : torch::kInt16);
}

bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() && torch::equal(bits(a), bits(b));
}

std::string bytes_sha256(const torch::Tensor& t) {
  auto c = t.contiguous();
  return tess::util::sha256_hex(
      std::string_view(static_cast<const char*>(c.data_ptr()), size_t(c.numel()) * c.element_size()));
}

// Every bit pattern is fair game, NaNs and denormals included.
torch::Tensor random_bits(std::vector<int64_t> shape, torch::ScalarType type) {
  if (type == torch::kFloat)
    return torch::randint(-(int64_t(1) << 31), (int64_t(1) << 31) - 1, shape, torch::kLong).to(torch::kInt).view(type);
  return torch::randint(-32768, 32767, shape, torch::kLong).to(torch::kShort).view(type);
}

std::map<std::string, torch::Tensor> sample_tensors() {
  torch::manual_seed(7);
  return {
      {"a.f32", random_bits({3, 5}, torch::kFloat)},
      {"b.bf16", random_bits({7}, torch::kBFloat16)},
      {"c.f16", random_bits({2, 3, 4}, torch::kHalf)},
      {"d.scalar", torch::tensor(-0.0f)},
      {"e.empty", torch::empty({0, 4}, torch::kHalf)},
      {"f.values", torch::tensor({1.5f, -2.25f, 1000.0f, std::numeric_limits<float>::infinity()})},
  };
}

// A file in safetensors layout with a hand-written header; `declared`
// overrides the header length written in the first 8 bytes.
fs::path raw_file(const TempDir& dir, const std::string& name, const std::string& header, const std::string& data,
                  std::optional<uint64_t> declared = {}) {
  uint64_t n = declared.value_or(header.size());
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = char(n >> (8 * i));
  return dir.write(name, len + header + data);
}

std::string open_error(const fs::path& path) {
  try {
    SafetensorsFile f(path);
  } catch (const tess::Error& e) {
    return e.what();
  }
  FAIL("opening " << path << " did not throw");
  return "";
}

std::string checkpoint_error(const fs::path& dir) {
  try {
    SafetensorsCheckpoint c(dir);
  } catch (const tess::Error& e) {
    return e.what();
  }
  FAIL("opening checkpoint " << dir << " did not throw");
  return "";
}

std::vector<std::string> dir_listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& f : fs::directory_iterator(dir)) names.push_back(f.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string quoted(const fs::path& p) {
  std::string q = "'";
  q += p.string();  // (not "'" + ... + "'": GCC 12 warns falsely on that)
  q += "'";
  return q;
}

tess::test::CommandResult run_python(const TempDir& dir, const std::string& script, const std::string& args) {
  auto py = dir.write("script.py", script);
  return tess::test::run_command(std::string(TESS_PYTHON) + " " + quoted(py) + " " + args);
}

}  // namespace

TEST_CASE("safetensors round-trips F32, BF16 and F16 bit-exactly, with metadata", "[unit][model]") {
  TempDir dir;
  auto tensors = sample_tensors();
  tensors["g.transposed"] = torch::arange(6, torch::kFloat).reshape({2, 3}).t();  // non-contiguous input
  auto path = dir / "m.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});
  CHECK(dir_listing(dir.path()) == std::vector<std::string>{"m.safetensors"});  // no .tmp left behind

  SafetensorsFile f(path);
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}});
  REQUIRE(f.entries().size() == tensors.size());
  size_t i = 0;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {  // file order is name order, tightly packed
    const auto& e = f.entries()[i++];
    CHECK(e.name == name);
    CHECK(e.begin == offset);
    offset = e.end;
    auto loaded = f.load(name);
    INFO(name);
    CHECK(bit_equal(loaded, t.contiguous()));
    CHECK(loaded.is_contiguous());
  }
  CHECK(f.find("c.f16")->dtype == "F16");
  CHECK(f.find("b.bf16")->dtype == "BF16");
  CHECK(f.find("d.scalar")->shape.empty());
  CHECK(f.find("e.empty")->shape == std::vector<int64_t>{0, 4});
  CHECK(f.find("nope") == nullptr);
  CHECK(std::signbit(f.load("d.scalar").item<float>()));

  // The loaded tensor owns its data: it outlives the file object.
  torch::Tensor kept;
  {
    SafetensorsFile g(path);
    kept = g.load("a.f32");
  }
  CHECK(bit_equal(kept, tensors["a.f32"]));

  // No metadata means no "__metadata__" key at all.
  write_safetensors(dir / "plain.safetensors", {{"x", torch::ones({2})}}, {});
  CHECK(SafetensorsFile(dir / "plain.safetensors").metadata().empty());
  CHECK_THAT(tess::test::read_file(dir / "plain.safetensors"), !Contains("__metadata__"));
}

TEST_CASE("safetensors header puts __metadata__ first and is padded so data starts 8-byte aligned",
          "[unit][model]") {
  TempDir dir;
  for (int len = 1; len <= 16; ++len) {
    auto path = dir / (std::to_string(len) + ".safetensors");
    write_safetensors(path, {{std::string(len, 'w'), torch::ones({len}, torch::kHalf)}});
    std::string bytes = tess::test::read_file(path);
    REQUIRE(bytes.size() >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
    INFO("name length " << len << ", header " << bytes.substr(8, n));
    CHECK((8 + n) % 8 == 0);
    CHECK(bytes.size() == 8 + n + 2 * uint64_t(len));
    CHECK(bytes.compare(8, 31, R"({"__metadata__":{"format":"pt"})") == 0);
    CHECK(nlohmann::json::parse(bytes.substr(8, n)).is_object());
  }
}

TEST_CASE("files we write load in the Python safetensors package", "[unit][model]") {
  TempDir dir;
  auto tensors = sample_tensors();
  auto path = dir / "ours.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}, {"origin", "tess"}});
  auto r = run_python(dir, R"(
import hashlib, json, sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, "pt") as f:
    meta = f.metadata()
out = {"metadata": meta, "tensors": {}}
for k, v in tensors.items():
    raw = v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    out["tensors"][k] = {"dtype": str(v.dtype), "shape": list(v.shape), "sha256": hashlib.sha256(raw).hexdigest()}
out["values"] = tensors["f.values"][:3].tolist()  # JSON has no infinity
print(json.dumps(out))
)", quoted(path));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto out = nlohmann::json::parse(r.out);
  CHECK(out["metadata"] == nlohmann::json({{"format", "pt"}, {"origin", "tess"}}));
  REQUIRE(out["tensors"].size() == tensors.size());
  const std::map<torch::ScalarType, std::string> py_dtype = {
      {torch::kFloat, "torch.float32"}, {torch::kBFloat16, "torch.bfloat16"}, {torch::kHalf, "torch.float16"}};
  for (const auto& [name, t] : tensors) {
    INFO(name);
    const auto& got = out["tensors"][name];
    CHECK(got["dtype"] == py_dtype.at(t.scalar_type()));
    CHECK(got["shape"].get<std::vector<int64_t>>() == t.sizes().vec());
    CHECK(got["sha256"] == bytes_sha256(t));
  }
  CHECK(out["values"][0] == 1.5);
  CHECK(out["values"][1] == -2.25);
  CHECK(out["values"][2] == 1000.0);
}

TEST_CASE("files the Python safetensors package writes load bit-exactly", "[unit][model]") {
  TempDir dir;
  auto path = dir / "py.safetensors";
  auto ints = dir / "ints.safetensors";
  auto r = run_python(dir, R"(
import hashlib, sys, torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(0)
t = {
    "w.f32": torch.randn(4, 6, generator=g),
    "w.bf16": torch.randn(3, 5, generator=g).to(torch.bfloat16),
    "w.f16": torch.randn(7, generator=g).to(torch.float16),
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros(0, 4, dtype=torch.bfloat16),
    "ramp": torch.arange(10, dtype=torch.float32) / 4,
}
save_file(t, sys.argv[1], metadata={"format": "pt", "source": "python"})
save_file({"ids": torch.arange(3)}, sys.argv[2])
for k in sorted(t):
    print(k, hashlib.sha256(t[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest())
)", quoted(path) + " " + quoted(ints));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  SafetensorsFile f(path);
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"source", "python"}});
  std::istringstream lines(r.out);
  std::string name, sha;
  int count = 0;
  while (lines >> name >> sha) {
    INFO(name);
    CHECK(bytes_sha256(f.load(name)) == sha);
    ++count;
  }
  CHECK(count == 6);
  CHECK(f.entries().size() == 6);
  CHECK(f.load("w.bf16").scalar_type() == torch::kBFloat16);
  CHECK(f.load("w.bf16").sizes() == torch::IntArrayRef({3, 5}));
  CHECK(f.load("w.f16").scalar_type() == torch::kHalf);
  CHECK(f.load("scalar").dim() == 0);
  CHECK(f.load("scalar").item<float>() == 2.5f);
  CHECK(f.load("empty").sizes() == torch::IntArrayRef({0, 4}));
  CHECK(torch::equal(f.load("ramp"), torch::arange(10, torch::kFloat) / 4));

  // An int64 tensor from a real HF-written file is refused, by name.
  CHECK_THAT(open_error(ints), Contains(ints.string()) && Contains("'ids'") && Contains("I64") &&
                                   Contains("F32, BF16, F16"));
}

TEST_CASE("safetensors reader rejects corrupted files, naming the file and the tensor", "[unit][model]") {
  TempDir dir;
  const std::string f32x2 = R"("dtype":"F32","shape":[2])";

  SECTION("truncated data") {
    auto path = dir / "cut.safetensors";
    write_safetensors(path, {{"a", torch::ones({4})}, {"b", torch::ones({8})}});
    fs::resize_file(path, fs::file_size(path) - 5);
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("truncated: expected 48 bytes of data, file has 43"));
  }
  SECTION("shorter than the length prefix") {
    auto path = dir.write("tiny", "abc");
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("too short"));
  }
  SECTION("header size larger than the file") {
    auto path = raw_file(dir, "big", "{}", "", 1000);
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("header size 1000 is larger"));
  }
  SECTION("invalid JSON") {
    auto path = raw_file(dir, "json", R"({"a": {"dtype": "F32",)", "");
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("invalid JSON header"));
  }
  SECTION("JSON that is not an object") {
    auto path = raw_file(dir, "array", "[1, 2]", "");
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("expected an object"));
  }
  SECTION("overlapping offsets") {
    auto path = raw_file(dir, "overlap",
                         "{\"a\":{" + f32x2 + ",\"data_offsets\":[0,8]},\"b\":{" + f32x2 + ",\"data_offsets\":[4,12]}}",
                         std::string(12, '\0'));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("tensor 'b'") && Contains("overlap tensor 'a'"));
  }
  SECTION("a gap between tensors") {
    auto path = raw_file(dir, "gap",
                         "{\"a\":{" + f32x2 + ",\"data_offsets\":[0,8]},\"b\":{" + f32x2 + ",\"data_offsets\":[12,20]}}",
                         std::string(20, '\0'));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("tensor 'b'") && Contains("expected it to begin at 8"));
  }
  SECTION("byte count not matching the shape") {
    auto path = raw_file(dir, "count", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 0));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("tensor 'a'") && Contains("needs 12 bytes") &&
                                     Contains("span 8"));
  }
  SECTION("unsupported dtype") {
    auto path = raw_file(dir, "f64", R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, 0));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("tensor 'a'") && Contains("dtype F64") &&
                                     Contains("supported: F32, BF16, F16"));
  }
  SECTION("missing dtype") {
    auto path = raw_file(dir, "nodtype", R"({"a":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, 0));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("tensor 'a'") && Contains("\"dtype\""));
  }
  SECTION("negative dimension") {
    auto path = raw_file(dir, "neg", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, 0));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("tensor 'a'") && Contains("non-negative"));
  }
  SECTION("bytes after the last tensor") {
    auto path = raw_file(dir, "tail", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(6, 0));
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("2 unexpected bytes"));
  }
  SECTION("non-string metadata") {
    auto path = raw_file(dir, "meta", R"({"__metadata__":{"k":1}})", "");
    CHECK_THAT(open_error(path), Contains(path.string()) && Contains("__metadata__"));
  }
  SECTION("a missing file") {
    CHECK_THAT(open_error(dir / "absent"), Contains((dir / "absent").string()) && Contains("cannot open"));
  }
  SECTION("loading a name the file does not hold") {
    auto path = dir / "ok.safetensors";
    write_safetensors(path, {{"a", torch::ones({1})}});
    SafetensorsFile f(path);
    CHECK_THROWS_WITH(f.load("missing"), Contains(path.string()) && Contains("'missing'"));
  }
}

TEST_CASE("safetensors writer refuses what it cannot store and leaves no partial file", "[unit][model]") {
  TempDir dir;
  std::map<std::string, torch::Tensor> one = {{"w", torch::ones({4})}};

  SECTION("unsupported dtype") {
    auto path = dir / "ints.safetensors";
    CHECK_THROWS_WITH(write_safetensors(path, {{"ids", torch::arange(3)}}),
                      Contains(path.string()) && Contains("'ids'") && Contains("float32"));
    CHECK(dir_listing(dir.path()).empty());
  }
  SECTION("target directory does not exist") {
    auto path = dir / "no" / "such" / "m.safetensors";
    CHECK_THROWS_WITH(write_safetensors(path, one), Contains(path.string()));
    CHECK(dir_listing(dir.path()).empty());
  }
  SECTION("target directory is a regular file") {
    auto plain = dir.write("plain", "x");
    auto path = plain / "m.safetensors";
    CHECK_THROWS_WITH(write_safetensors(path, one), Contains(path.string()));
    CHECK(dir_listing(dir.path()) == std::vector<std::string>{"plain"});
  }
  SECTION("target directory is not writable") {
    auto ro = dir / "ro";
    fs::create_directory(ro);
    bool mounted = ::geteuid() == 0 && ::mount("tmpfs", ro.c_str(), "tmpfs", MS_RDONLY, "size=64k") == 0;
    if (!mounted) fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    if (mounted || ::geteuid() != 0) {  // root ignores permission bits
      auto path = ro / "m.safetensors";
      CHECK_THROWS_WITH(write_safetensors(path, one), Contains(path.string()));
      CHECK(dir_listing(ro).empty());
    } else {
      WARN("running as root without mount: read-only directory case skipped");
    }
    if (mounted) ::umount(ro.c_str());
    fs::permissions(ro, fs::perms::owner_all);
  }
  SECTION("disk full mid-write keeps the previous file intact") {
    auto small = dir / "small";
    fs::create_directory(small);
    bool mounted = ::geteuid() == 0 && ::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k") == 0;
    auto path = small / "m.safetensors";
    write_safetensors(path, one);
    auto big = std::map<std::string, torch::Tensor>{{"w", torch::ones({256 * 1024})}};  // 1 MiB
    if (mounted) {
      CHECK_THROWS_WITH(write_safetensors(path, big), Contains(path.string()) && Contains("No space left"));
    } else {
      // Without a small filesystem, a file size limit fails write() the same way.
      WARN("tmpfs mount unavailable: simulating a full disk with RLIMIT_FSIZE");
      auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
      rlimit old_limit{};
      ::getrlimit(RLIMIT_FSIZE, &old_limit);
      rlimit limit = old_limit;
      limit.rlim_cur = 64 * 1024;
      ::setrlimit(RLIMIT_FSIZE, &limit);
      std::string message;
      try {
        write_safetensors(path, big);
      } catch (const tess::Error& e) {
        message = e.what();
      }
      ::setrlimit(RLIMIT_FSIZE, &old_limit);
      std::signal(SIGXFSZ, old_handler);
      CHECK_THAT(message, Contains(path.string()) && Contains("File too large"));
    }
    CHECK(dir_listing(small) == std::vector<std::string>{"m.safetensors"});  // no .tmp
    CHECK(bit_equal(SafetensorsFile(path).load("w"), one["w"]));
    if (mounted) ::umount(small.c_str());
  }
}

TEST_CASE("a sharded checkpoint reads back the same tensors as a single file", "[unit][model]") {
  TempDir dir;
  torch::manual_seed(3);
  std::map<std::string, torch::Tensor> tensors;
  uint64_t total = 0;
  for (int i = 0; i < 10; ++i) {
    auto type = i % 3 == 0 ? torch::kFloat : i % 3 == 1 ? torch::kBFloat16 : torch::kHalf;
    auto t = random_bits({i + 1, 16}, type);
    total += uint64_t(t.numel()) * t.element_size();
    tensors["layer." + std::to_string(i) + ".weight"] = t;
  }
  const uint64_t max_shard = 300;

  write_safetensors_checkpoint(dir / "single", tensors);
  write_safetensors_checkpoint(dir / "fits", tensors, total);
  write_safetensors_checkpoint(dir / "sharded", tensors, max_shard);
  CHECK(dir_listing(dir / "single") == std::vector<std::string>{"model.safetensors"});
  CHECK(dir_listing(dir / "fits") == std::vector<std::string>{"model.safetensors"});

  auto index = nlohmann::json::parse(tess::test::read_file(dir / "sharded" / "model.safetensors.index.json"));
  CHECK(index["metadata"]["total_size"] == total);
  auto weight_map = index["weight_map"];
  REQUIRE(weight_map.size() == tensors.size());
  auto files = dir_listing(dir / "sharded");
  const size_t n_shards = files.size() - 1;
  REQUIRE(n_shards > 2);
  for (size_t i = 0; i < n_shards; ++i) {
    char expected[64];
    std::snprintf(expected, sizeof expected, "model-%05zu-of-%05zu.safetensors", i + 1, n_shards);
    CHECK(files[i] == expected);
    // Greedy: each shard stays within the limit unless it holds a single tensor.
    SafetensorsFile shard(dir / "sharded" / files[i]);
    uint64_t bytes = shard.entries().back().end;
    CHECK((bytes <= max_shard || shard.entries().size() == 1));
    for (const auto& e : shard.entries()) CHECK(weight_map[e.name] == files[i]);
  }
  CHECK(files.back() == "model.safetensors.index.json");

  SafetensorsCheckpoint single(dir / "single"), sharded(dir / "sharded");
  REQUIRE(sharded.names() == single.names());
  for (const auto& name : single.names()) {
    INFO(name);
    CHECK(bit_equal(sharded.load(name), single.load(name)));
    CHECK(bit_equal(sharded.load(name), tensors[name]));
    CHECK(sharded.entry(name).shape == single.entry(name).shape);
    CHECK(sharded.file_of(name).filename() == weight_map[name].get<std::string>());
  }
  CHECK(sharded.contains("layer.0.weight"));
  CHECK_FALSE(sharded.contains("nope"));
  CHECK_THROWS_WITH(sharded.load("nope"), Contains((dir / "sharded").string()) && Contains("'nope'"));

  // Re-saving as one file removes the old index and shards, which would shadow it.
  write_safetensors_checkpoint(dir / "sharded", tensors);
  CHECK(dir_listing(dir / "sharded") == std::vector<std::string>{"model.safetensors"});
  CHECK(SafetensorsCheckpoint(dir / "sharded").names() == single.names());
}

TEST_CASE("an inconsistent sharded index is an error naming index, shard and tensor", "[unit][model]") {
  TempDir dir;
  auto a = torch::ones({2}), b = torch::zeros({3}), c = torch::full({1}, 2.0f);
  auto index_path = dir / "model.safetensors.index.json";
  auto s1 = dir / "s1.safetensors", s2 = dir / "s2.safetensors";
  auto write_index = [&](const nlohmann::json& weight_map) {
    dir.write("model.safetensors.index.json",
              nlohmann::json({{"metadata", {{"total_size", 24}}}, {"weight_map", weight_map}}).dump());
  };

  SECTION("a listed tensor missing from its shard") {
    write_safetensors(s1, {{"a", a}, {"b", b}});
    write_index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"ghost", "s1.safetensors"}});
    CHECK_THAT(checkpoint_error(dir.path()),
               Contains(index_path.string()) && Contains(s1.string()) && Contains("'ghost'"));
  }
  SECTION("a tensor in two shards") {
    write_safetensors(s1, {{"a", a}, {"b", b}});
    write_safetensors(s2, {{"b", b}, {"c", c}});
    write_index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}});
    CHECK_THAT(checkpoint_error(dir.path()), Contains(index_path.string()) && Contains("'b'") &&
                                                 Contains("two shards") && Contains(s1.string()) &&
                                                 Contains(s2.string()));
  }
  SECTION("a shard tensor the index does not list") {
    write_safetensors(s1, {{"a", a}, {"b", b}});
    write_index({{"a", "s1.safetensors"}});
    CHECK_THAT(checkpoint_error(dir.path()),
               Contains(index_path.string()) && Contains(s1.string()) && Contains("'b'"));
  }
  SECTION("a missing shard file") {
    write_index({{"a", "gone.safetensors"}});
    CHECK_THAT(checkpoint_error(dir.path()), Contains((dir / "gone.safetensors").string()));
  }
  SECTION("neither an index nor a single file") {
    CHECK_THAT(checkpoint_error(dir.path()), Contains(dir.path().string()) && Contains("model.safetensors ") &&
                                                 Contains("model.safetensors.index.json"));
  }
}
