#pragma once
// Tiny model directories shared by the eval tests, made once per test binary:
// a SentencePiece tokenizer trained on a small word corpus, an untrained
// diffusion model, an untrained causal LM, a reward model, a diffusion model
// whose vocabulary is smaller than the tokenizer's, and a "copy" causal LM
// whose layers are identities and whose head favours repeating the input
// token (so the likelihood ranking of choices has a known answer).
#include <filesystem>

#include "core/model/model_config.h"
#include "tests/support/test_support.h"

namespace tess::test {

model::ModelConfig tiny_eval_config(int64_t vocab);

struct Workspace {
  TempDir dir;
  std::filesystem::path diffusion, ar, mismatch, reward, copy_ar;
  Workspace();
};

Workspace& workspace();

}  // namespace tess::test
