// Hostile inputs to a training run (issue "every input bounded"): each case
// first reproduces what used to crash or run silently wrong, through the real
// `tess` binary on tiny models, and asserts a clear error naming the input.
#include <catch2/catch.hpp>

#include <fstream>

#include <fmt/format.h>

#include "core/util/file.h"
#include "tests/support/test_support.h"
#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using namespace tess::test;
using Catch::Contains;

// Used to: LibTorch's "index out of range in self" with a stack trace at the
// first step that drew the id, naming no file.
TEST_CASE("a token shard holding an id outside the vocabulary stops training naming the shard", "[faults][train]") {
  auto& w = workspace();
  auto corpus = w.dir / "corpus_oov";
  fs::remove_all(corpus);
  fs::copy(w.corpus, corpus, fs::copy_options::recursive);
  auto shard = corpus / "train" / "shard-00000.bin";
  auto bytes = tess::util::read_file(shard);
  REQUIRE(bytes.size() > 64);
  for (size_t at = 32; at + 1 < bytes.size(); at += 32) {  // every 16th uint16 id becomes 65535
    bytes[at] = static_cast<char>(0xff);
    bytes[at + 1] = static_cast<char>(0xff);
  }
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  auto cfg = w.config("oov", "run:\n  stage: ar\n");
  auto r = run_tess("train " + cfg.string() +
                    fmt::format(" --set run.dir={} --set data.tokenizer={} --set data.train=[{}] --set train.max_steps=3",
                                (w.dir / "runs/oov").string(), w.tokenizer.string(), corpus.string()));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains(fmt::format("dataset '{}' (train): token ", corpus.string())) &&
                        Contains("of shard 'train/shard-00000.bin'") && Contains("is id 65535") &&
                        Contains(fmt::format("vocabulary of {}", w.vocab)));
  CHECK_THAT(r.err, !Contains("index out of range") && !Contains("Exception raised from"));
}
