#include "tests/eval/workspace.h"

#include <torch/torch.h>

#include "core/diffusion/diffusion_lm.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/reward_model.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;

namespace tess::test {

model::ModelConfig tiny_eval_config(int64_t vocab) {
  auto c = small_model_config(vocab);
  c.max_position_embeddings = 256;
  return c;
}

Workspace::Workspace() {
  std::string text;
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "park", "in", "sun",
                         "birds", "sing", "loud", "every", "morning", "and", "night", "we", "walk", "home"};
  uint32_t x = 777;
  for (int line = 0; line < 400; ++line) {
    for (int w = 0; w < 12; ++w) {
      x = x * 1103515245u + 12345u;
      text += std::string(words[(x >> 16) % 22]) + (w == 11 ? ".\n" : " ");
    }
  }
  auto corpus = dir.write("corpus.txt", text);
  data::SentencePieceTrainOptions spm;
  spm.inputs = {corpus};
  spm.model_prefix = dir / "spm";
  spm.vocab_size = 300;
  spm.threads = 1;
  data::train_sentencepiece(spm);
  auto tok = data::load_tokenizer(dir / "spm.model");
  int32_t pad = tok->add_special_token("[PAD]", true);

  auto config = tiny_eval_config(tok->vocab_size());
  config.bos_token_id = tok->bos_id();
  config.eos_token_id = tok->eos_id();
  config.pad_token_id = pad;

  diffusion = dir / "diffusion";
  diffusion::DiffusionLM lm(model::Decoder(config, 3), diffusion::SelfCondition::LogitsMean, false, 4);
  diffusion::save_diffusion_lm(diffusion, *lm);
  tok->save(diffusion);

  ar = dir / "ar";
  model::Decoder decoder(config, 5);
  model::save_hf_model(ar, *decoder);
  tok->save(ar);

  reward = dir / "reward";
  model::RewardModel rm(model::Decoder(config, 6), 7);
  model::save_reward_model(reward, *rm);
  tok->save(reward);

  copy_ar = dir / "copy_ar";
  {
    torch::NoGradGuard no_grad;
    auto untied = config;
    untied.tie_word_embeddings = false;
    model::Decoder copy(untied, 8);
    for (auto& p : copy->named_parameters())
      if (p.key().find("o_proj") != std::string::npos || p.key().find("down_proj") != std::string::npos)
        p.value().zero_();  // every layer is the identity
    copy->lm_head->weight.copy_(copy->embedding_weight() * 4.0);
    model::save_hf_model(copy_ar, *copy);
    tok->save(copy_ar);
  }

  mismatch = dir / "mismatch";
  diffusion::DiffusionLM small(model::Decoder(tiny_eval_config(100), 3), diffusion::SelfCondition::LogitsMean, false, 4);
  diffusion::save_diffusion_lm(mismatch, *small);
  tok->save(mismatch);
}

Workspace& workspace() {
  static Workspace w;
  return w;
}

}  // namespace tess::test
