// tess's GGUF reader and `tess convert gguf` against llama.cpp's own `gguf`
// package: files written by its GGUFWriter, tensors dequantised by
// gguf.quants.dequantize (golden data from tests/tools/gguf_reference.py in
// tests/data/gguf/), and a tiny Llama converted GGUF -> HF whose logits must
// match HF transformers on the original model.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <fstream>

#include "core/model/gguf.h"
#include "core/model/gguf_convert.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/safetensors.h"
#include "tests/support/test_support.h"

using namespace tess::model;
using tess::test::error_of;
using Catch::Matchers::Contains;

namespace {

const std::string kData = std::string(TESS_TEST_DATA) + "/gguf/";

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

std::string file_bytes(const std::string& path) { return tess::test::read_file(path); }

std::string python_tool(const std::string& args) {
  return std::string(TESS_PYTHON) + " " + TESS_SOURCE_DIR + "/tests/tools/gguf_reference.py " + args;
}

}  // namespace

TEST_CASE("GGUF metadata of every value type reads as gguf's GGUFWriter wrote it", "[unit][gguf]") {
  GGUFFile f(kData + "quants.gguf");
  CHECK(f.version() == 3);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() % 32 == 0);
  CHECK(f.get_string("general.architecture") == "test");
  CHECK(f.get("test.u8").type == GGUFValueType::UINT8);
  CHECK(f.get_uint("test.u8") == 200);
  CHECK(f.get("test.i8").i == -100);
  CHECK(f.get_uint("test.u16") == 60000);
  CHECK(f.get("test.i16").i == -30000);
  CHECK(f.get_uint("test.u32") == 4000000000ULL);
  CHECK(f.get("test.i32").i == -2000000000LL);
  CHECK(f.get_uint("test.u64") == (1ULL << 63) + 5);
  CHECK(f.get("test.i64").i == -(int64_t(1) << 62));
  CHECK(f.get_float("test.f32") == 0.25);
  CHECK(f.get("test.f64").type == GGUFValueType::FLOAT64);
  CHECK(f.get_float("test.f64") == -1.0e-300);
  CHECK(f.get_bool("test.bool", false));
  CHECK(f.get_string("test.string") == "h\xc3\xa9llo w\xc3\xb6rld");
  CHECK(f.get_int_array("test.int_array") == std::vector<int64_t>{3, -1, 4});
  CHECK(f.get_string_array("test.string_array") == std::vector<std::string>{"a", "", "\xc3\xa7"});
  const auto& nested = f.get("test.nested");
  REQUIRE(nested.array_type == GGUFValueType::ARRAY);
  REQUIRE(nested.array.size() == 2);
  CHECK(nested.array[0].array.size() == 2);
  CHECK(nested.array[1].array[0].i == 3);
  // Wrong types and missing keys name the file and the key.
  CHECK_THAT(error_of([&] { f.get_string("test.u8"); }), Contains("quants.gguf") && Contains("'test.u8' is uint8"));
  CHECK_THAT(error_of([&] { f.get_uint("test.i8"); }), Contains("'test.i8' is -100, expected a non-negative"));
  CHECK_THAT(error_of([&] { f.get_uint("llama.block_count"); }), Contains("'llama.block_count' is missing"));
  CHECK(f.get_uint("llama.block_count", 7) == 7);
}

TEST_CASE("GGUF tensors of every supported type dequantise exactly as gguf.quants.dequantize", "[unit][gguf]") {
  GGUFFile f(kData + "quants.gguf");
  SafetensorsFile expected(kData + "quants_expected.safetensors");
  std::set<std::string> types;
  for (const auto& e : expected.entries()) {
    INFO(e.name);
    const auto& t = f.tensor(e.name);
    types.insert(ggml_type_name(t.type));
    auto got = f.dequantize(t);
    auto want = expected.load(e.name);
    REQUIRE(got.sizes() == want.sizes());  // torch order: GGUF dims reversed
    // Bit-identical, infinities included (the F16 tensor holds an inf and a subnormal).
    CHECK(torch::equal(got.isinf(), want.isinf()));
    auto finite = want.isfinite();
    CHECK(torch::equal(got.masked_select(finite), want.masked_select(finite)));
  }
  CHECK(types == std::set<std::string>{"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"});
  CHECK(f.tensor("q4_1").shape() == std::vector<int64_t>{2, 3, 64});
}

TEST_CASE("a GGUF tensor of an unsupported type is an error naming the tensor and the type", "[unit][gguf]") {
  GGUFFile f(kData + "unsupported.gguf");  // the header still parses: Q6_K's block size is known
  REQUIRE(f.tensors().size() == 1);
  CHECK(f.tensors()[0].shape() == std::vector<int64_t>{2, 256});
  auto err = error_of([&] { f.dequantize("blk.0.attn_q.weight"); });
  CHECK_THAT(err, Contains("unsupported.gguf") && Contains("'blk.0.attn_q.weight'") && Contains("Q6_K") &&
                      Contains("not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1"));
  CHECK_THAT(error_of([&] { f.dequantize("nope"); }), Contains("no tensor named 'nope'"));
}

TEST_CASE("truncated or corrupt GGUF files are clear errors, never reads past the end", "[unit][gguf]") {
  tess::test::TempDir dir;
  const std::string good = file_bytes(kData + "quants.gguf");
  const GGUFFile reference(kData + "quants.gguf");
  auto write = [&](const std::string& name, const std::string& bytes) {
    auto p = dir / name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  };
  // Every prefix of the file fails cleanly (mmap of the exact size: a read
  // past the end would fault under ASan and usually without).
  for (size_t n = 0; n < good.size(); n += (n < 64 ? 1 : 37)) {
    INFO("prefix of " << n << " bytes");
    auto p = write("prefix.gguf", good.substr(0, n));
    auto err = error_of([&] { GGUFFile f(p); });
    CHECK_THAT(err, Contains(p.string()));
    if (n >= 24) CHECK_THAT(err, Contains("truncated"));
  }
  // Cut inside the last tensor: the error names it.
  auto cut = write("cut.gguf", good.substr(0, good.size() - 1));
  CHECK_THAT(error_of([&] { GGUFFile f(cut); }),
             Contains("tensor 'q5_1'") && Contains("lies outside the file") && Contains("truncated"));

  auto bad_magic = write("magic.gguf", "GGML" + good.substr(4));
  CHECK_THAT(error_of([&] { GGUFFile f(bad_magic); }), Contains("not a GGUF file: bad magic \"GGML\""));
  std::string v1 = good;
  v1[4] = 1;
  CHECK_THAT(error_of([&] { GGUFFile f(write("v1.gguf", v1)); }), Contains("GGUF version 1 is not supported"));
  std::string v9 = good;
  v9[4] = 9;
  CHECK_THAT(error_of([&] { GGUFFile f(write("v9.gguf", v9)); }), Contains("unsupported GGUF version 9"));
  // A tensor offset moved past the end of the data section.
  std::string moved = good;
  const auto& last = reference.tensor("q5_1");
  // Its offset field (8 bytes, last in its tensor info) is found by value in the header.
  std::string needle(reinterpret_cast<const char*>(&last.offset), 8);
  auto at = moved.rfind(needle, reference.data_offset());
  REQUIRE(at != std::string::npos);
  uint64_t far = last.offset + 4096;
  moved.replace(at, 8, std::string(reinterpret_cast<const char*>(&far), 8));
  CHECK_THAT(error_of([&] { GGUFFile f(write("moved.gguf", moved)); }),
             Contains("tensor 'q5_1' (Q5_1 [4, 64]) lies outside the file"));
  CHECK_THAT(error_of([&] { GGUFFile f(dir / "missing.gguf"); }), Contains("missing.gguf: cannot open"));
}

TEST_CASE("llama.cpp's Q/K row permutation is undone and GGUF names map to HF names", "[unit][gguf]") {
  // convert_hf_to_gguf's permute on one head of dimension 6 orders HF rows
  // [0 1 2 | 3 4 5] (rotary halves) as [0 3 1 4 2 5] (interleaved pairs).
  auto permuted = torch::tensor({0, 3, 1, 4, 2, 5}, torch::kFloat32).reshape({6, 1});
  CHECK(torch::equal(unpermute_qk(permuted, 1).flatten(), torch::arange(6, torch::kFloat32)));
  // Two heads: each head is un-permuted on its own.
  auto two = torch::tensor({0, 2, 1, 3, 4, 6, 5, 7}, torch::kFloat32).reshape({8, 1});
  CHECK(torch::equal(unpermute_qk(two, 2).flatten(), torch::arange(8, torch::kFloat32)));
  CHECK(gguf_to_hf_name("token_embd.weight") == "model.embed_tokens.weight");
  CHECK(gguf_to_hf_name("blk.12.attn_q.weight") == "model.layers.12.self_attn.q_proj.weight");
  CHECK(gguf_to_hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight");
  CHECK(gguf_to_hf_name("output.weight") == "lm_head.weight");
  CHECK(gguf_to_hf_name("blk.0.attn_q.bias").empty());
}

TEST_CASE("tess convert gguf turns a tiny Llama GGUF into a model with HF transformers' logits and tokenizer",
          "[integration][gguf]") {
  tess::test::TempDir dir;
  const std::string d = dir.path().string();
  auto made = tess::test::run_command(python_tool("tiny " + d));
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  SafetensorsFile golden(dir / "hf_logits.safetensors");
  auto ids = golden.load("ids").to(torch::kInt64);
  auto hf_logits = golden.load("logits");
  torch::NoGradGuard no_grad;
  auto tess_logits = [&](const std::filesystem::path& model_dir) {
    auto loaded = load_hf_model(model_dir, {std::string("float32")});
    loaded.decoder->eval();
    return loaded.decoder->forward(ids);
  };

  // F32 and F16 hold exactly the HF weights; Q8_0 is ~8-bit.
  const std::map<std::string, double> bound = {{"f32", 1e-4}, {"f16", 1e-4}, {"q8_0", 2e-2}};
  for (const auto& [type, tol] : bound) {
    INFO(type);
    auto r = tess::test::run_tess("convert gguf " + d + "/" + type + ".gguf " + d + "/" + type);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out, Contains("converted 21 tensors") && Contains("124736 parameters"));
    if (type == "q8_0") CHECK_THAT(r.out, Contains("(F32 5, Q8_0 16)"));
    CHECK(max_diff(tess_logits(dir / type), hf_logits) < tol);
    if (type == "q8_0") CHECK(max_diff(tess_logits(dir / type), hf_logits) > 1e-6);  // it really is quantised
  }
  auto config = tess::test::read_file(dir / "f32" / "config.json");
  CHECK_THAT(config, Contains("\"num_key_value_heads\": 2") && Contains("\"tie_word_embeddings\": false"));

  // transformers opens every converted directory: same logits as tess, and a
  // tokenizer identical to the one it builds from the GGUF itself.
  auto checked = tess::test::run_command(python_tool("check " + d));
  INFO(checked.err);
  REQUIRE(checked.exit_code == 0);
  CHECK_THAT(checked.out, Contains("f32: tokenizers agree") && Contains("f16: tokenizers agree") &&
                              Contains("q8_0: tokenizers agree"));
  for (const char* type : {"f32", "f16", "q8_0"}) {
    INFO(type);
    SafetensorsFile hf(dir / type / "hf_logits.safetensors");
    CHECK(max_diff(tess_logits(dir / type), hf.load("logits")) < 1e-4);
  }

  // bfloat16 weights: the same model, rounded.
  auto bf = tess::test::run_tess("convert gguf " + d + "/f32.gguf " + d + "/bf16 --dtype bfloat16");
  REQUIRE(bf.exit_code == 0);
  CHECK_THAT(tess::test::read_file(dir / "bf16" / "config.json"), Contains("\"torch_dtype\": \"bfloat16\""));
  SafetensorsCheckpoint bf_weights(dir / "bf16");
  CHECK(bf_weights.entry("model.embed_tokens.weight").dtype == "BF16");
  const double bf_diff = max_diff(tess_logits(dir / "bf16"), hf_logits);
  CHECK(bf_diff > 1e-6);
  CHECK(bf_diff < 5e-2);

  // A tensor type tess cannot decode: the error names the tensor and the type.
  auto bad = tess::test::run_tess("convert gguf " + d + "/iq4_nl.gguf " + d + "/iq4_nl");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Contains("'blk.1.ffn_down.weight'") && Contains("IQ4_NL") && Contains("supported: F32"));
  auto not_gguf = tess::test::run_tess("convert gguf " + d + "/hf/config.json " + d + "/x");
  CHECK(not_gguf.exit_code == 1);
  CHECK_THAT(not_gguf.err, Contains("not a GGUF file: bad magic"));
}
