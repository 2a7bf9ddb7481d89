// A Qwen2-shaped model with a Qwen2.5-like tokenizer (no BOS, <|endoftext|>
// both EOS and PAD) through tess end to end: stage 2 trains from YAML, the
// final model loads, and `tess generate` (chat template and --raw),
// `tess eval` answer with it.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/diffusion/diffusion_lm.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "tests/support/test_support.h"
#include "tests/train/trainer_workspace.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using nlohmann::json;
using namespace tess::test;

TEST_CASE("a Qwen2 model with a tokenizer without BOS (PAD == EOS) is instruction-tuned then generates and evaluates",
          "[integration][train]") {
  TempDir dir;
  // The base model: the committed tiny Qwen2 config (q/k/v biases, tied
  // embeddings) with the vocabulary of the committed byte-level BPE tokenizer
  // (1200 tokens, <|endoftext|> = id 0), laid out as Qwen2.5's: bos_token null,
  // <|endoftext|> as EOS and PAD. `tess model init --like` takes both.
  auto like = dir / "like";
  dir.write("like/tokenizer.json", read_file(fs::path(TESS_TEST_DATA) / "bpe" / "gpt2" / "tokenizer.json"));
  dir.write("like/tokenizer_config.json",
            json{{"bos_token", nullptr}, {"eos_token", "<|endoftext|>"}, {"pad_token", "<|endoftext|>"}}.dump());
  auto config = json::parse(read_file(fs::path(TESS_TEST_DATA) / "hf_tiny" / "qwen2" / "config.json"));
  config["vocab_size"] = 1200;
  config["bos_token_id"] = nullptr;
  config["eos_token_id"] = 0;
  config["pad_token_id"] = 0;
  dir.write("like/config.json", config.dump(1));
  auto base = dir / "base";
  auto init = run_tess("model init --like " + shell_quote(like.string()) + " --output " + shell_quote(base.string()));
  INFO(init.err);
  REQUIRE(init.exit_code == 0);

  auto data = dir / "data";
  auto synth = run_tess("tokenize synthetic --output " + shell_quote(data.string()) +
                        " --train 40 --test 8 --preferences 0 --tasks addition,counting");
  INFO(synth.err);
  REQUIRE(synth.exit_code == 0);
  auto train = data / "chat_train.jsonl", test = data / "chat_test.jsonl";

  // Stage 2 from YAML; the tokenizer comes from model.path.
  auto run = dir / "run";
  auto cfg = dir.write("qwen_instruction.yaml", "run:\n  stage: instruction\n  dir: " + run.string() +
                                                     "\nmodel:\n  path: " + base.string() +
                                                     "\ndata:\n  train: [" + train.string() +
                                                     "]\n  seq_len: 64\n"
                                                     "diffusion:\n  timesteps: 100\n"
                                                     "train:\n  batch_size: 4\n  lr: 3.0e-3\n  max_steps: 6\n"
                                                     "log:\n  every: 1\n  progress_interval_s: 1000\n");
  train_ok(cfg, "");
  REQUIRE(metrics(run).size() == 6);
  CHECK_THAT(read_file(run / "log.txt"), Contains("chat data (L=64): 40 record(s) -> 40 example(s)"));
  auto final_dir = run / "final";

  // The final model loads as a diffusion model of the Qwen2 shape, and its
  // tokenizer still has no BOS, with PAD == EOS.
  auto lm = tess::diffusion::load_diffusion_lm(final_dir);
  CHECK(lm->timestep_embed_loaded());
  const auto& c = lm->decoder->config();
  CHECK(c.model_type == "qwen2");
  CHECK(c.qkv_bias());
  CHECK(c.vocab_size == 1200);
  CHECK(c.bos_token_id == -1);
  auto tok = tess::data::load_tokenizer(final_dir);
  CHECK(tok->bos_id() < 0);
  CHECK(tok->eos_id() == 0);
  CHECK(tok->pad_id() == tok->eos_id());

  // The instruction data the run trained on starts with the prompt text's own
  // tokens: the report's first example renders without <s>, and its prompt is
  // exactly encode(<|user|>\n{user}\n<|assistant|>\n).
  std::string first_line;
  {
    std::ifstream in(train);
    REQUIRE(std::getline(in, first_line));
  }
  std::string user = json::parse(first_line).at("messages").at(0).at("content").get<std::string>();
  auto prompt_ids = tok->encode("<|user|>\n" + user + "\n<|assistant|>\n");
  CHECK(tess::data::encode_prompt(*tok, user) == prompt_ids);
  {
    auto shown = run_tess("tokenize chat --tokenizer " + shell_quote(final_dir.string()) + " --input " +
                          shell_quote(train.string()) + " --seq-len 64 --show 1");
    INFO(shown.out);
    INFO(shown.err);
    REQUIRE(shown.exit_code == 0);
    auto at = shown.out.find("--- example 1: 64 tokens: ");
    REQUIRE(at != std::string::npos);
    auto example = shown.out.substr(at);
    CHECK_THAT(example, StartsWith("--- example 1: 64 tokens: " + std::to_string(prompt_ids.size()) + " prompt (clean)"));
    auto body = example.substr(example.find('\n') + 1);
    CHECK_THAT(body, StartsWith("<|user|>\n" + user + "\n<|assistant|>\n⟦"));
    CHECK_THAT(body, Contains("\npieces: < | us er | >"));  // the first piece is the prompt's own '<'
  }

  // tess generate with the chat template: exit 0, 4 denoising steps shown,
  // then the answer line (after 6 steps the argmax of every span position may
  // be <|endoftext|>, which ends the answer, so its text is not required).
  std::string model = " --model " + shell_quote(final_dir.string());
  {
    auto gen = run_tess("generate" + model + " --prompt 'What is 2 + 3?' --steps 4 --length 8 --show-steps");
    INFO(gen.err);
    CHECK(gen.exit_code == 0);
    CHECK_THAT(gen.out, StartsWith("step 1/4 t=") && Contains("\nstep 4/4 t=0: "));
  }
  {
    auto answers = dir / "answers.jsonl";
    auto gen = run_tess("generate" + model + " --prompt 'What is 2 + 3?' --steps 4 --length 8 --output " +
                        shell_quote(answers.string()));
    INFO(gen.err);
    CHECK(gen.exit_code == 0);
    if (gen.exit_code == 0) {
      auto answer = json::parse(read_file(answers));
      CHECK(answer.at("prompt") == "What is 2 + 3?");
      CHECK(answer.at("steps") == 4);
      CHECK(answer.at("output").is_string());
    }
  }

  // --raw: the prompt text alone (no BOS to put in front) is continued.
  {
    auto raw = run_tess("generate" + model + " --raw --prompt 'The answer is' --steps 4 --length 8");
    INFO(raw.err);
    CHECK(raw.exit_code == 0);
    CHECK(raw.out.find_first_not_of(" \n") != std::string::npos);
  }

  // tess eval on the held-out prompts.
  {
    auto report = dir / "eval.json";
    auto ev = run_tess("eval" + model + " --data " + shell_quote(test.string()) + " --steps 4 --length 8 --output " +
                       shell_quote(report.string()));
    INFO(ev.out);
    INFO(ev.err);
    REQUIRE(ev.exit_code == 0);
    CHECK_THAT(ev.out, Contains("exact_match"));
    auto r = json::parse(read_file(report));
    INFO(r.dump(1));
    CHECK(r.at("metrics").at("exact_match").is_number());
    CHECK(r.at("metrics").at("exact_match_n") == 8);
    CHECK(r.at("settings").at("steps") == 4);
  }

  // tess serve answers the official openai client (chat template and raw completion).
  {
    auto smoke = tess::test::run_command(
        std::string(TESS_PYTHON) + " " + shell_quote(std::string(TESS_SOURCE_DIR) + "/tests/launch/serve/smoke_check.py") +
        " --command " + shell_quote(std::string(TESS_BINARY) + " serve" + model + " --steps 4 --max-tokens 8 --port 8000") +
        " 2>&1");
    INFO(smoke.out);
    CHECK(smoke.exit_code == 0);
  }
}
