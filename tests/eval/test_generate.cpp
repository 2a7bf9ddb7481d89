// `tess generate`: the library (KV-cache AR decoding, the step printer) and
// the real binary on tiny freshly initialised models (a SentencePiece
// tokenizer trained here, a diffusion and a causal model directory).
#include <catch2/catch.hpp>

#include <map>

#include <algorithm>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/sampler.h"
#include "core/model/hf_checkpoint.h"
#include "core/util/rng.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "eval/generate.h"
#include "tests/eval/workspace.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using tess::test::run_tess;
using tess::test::workspace;

namespace {

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("KV-cache greedy decoding equals greedy decoding by repeated full forwards", "[unit][eval]") {
  auto config = tess::test::tiny_eval_config(60);
  for (int64_t window : {0, 5}) {
    config.sliding_window = window;
    tess::model::Decoder d(config, 11);
    d->eval();
    std::vector<int64_t> prompt{1, 7, 19, 33, 4};
    tess::util::Rng a(1, "generate"), b(1, "generate");
    auto cached = tess::eval::ar_generate(*d, prompt, 12, /*eos*/ -1, 0.0, 1.0, a);
    auto full = tess::eval::ar_generate_uncached(*d, prompt, 12, -1, 0.0, 1.0, b);
    INFO("sliding window " << window);
    CHECK(cached.size() == 12);
    CHECK(cached == full);
    // Stops before EOS: make the first greedy token the EOS.
    tess::util::Rng c(1, "generate");
    CHECK(tess::eval::ar_generate(*d, prompt, 12, cached.front(), 0.0, 1.0, c).empty());
  }
  // Seeded sampling: same seed, same tokens.
  tess::model::Decoder d(config, 12);
  tess::util::Rng s1(4, "generate"), s2(4, "generate");
  std::vector<int64_t> prompt{1, 2, 3};
  CHECK(tess::eval::ar_generate(*d, prompt, 10, -1, 0.9, 1.0, s1) ==
        tess::eval::ar_generate(*d, prompt, 10, -1, 0.9, 1.0, s2));
}

TEST_CASE("a diffusion model's noise settings travel with it and drive its sampling", "[unit][eval]") {
  using namespace tess::diffusion;
  auto& w = workspace();
  tess::test::TempDir tmp;
  auto dir = tmp / "k2";
  fs::copy(w.diffusion, dir, fs::copy_options::recursive);
  auto lm = load_diffusion_lm(w.diffusion);
  CHECK(lm->noise == NoiseSettings{});  // saved with the reference's values
  lm->noise = {2.0, "linear", 100};
  save_diffusion_lm(dir, *lm);
  auto back = load_diffusion_lm(dir);
  CHECK(back->noise == NoiseSettings{2.0, "linear", 100});

  // tess generate samples with k = 2 and the linear schedule: the same tokens
  // as the sampler called with those options directly.
  tess::eval::GenerateOptions o;
  o.steps = 3;
  o.length = 6;
  o.top_p = 1.0;
  tess::eval::GenerationPrompt p;
  p.prompt.user = "the cat sat";
  // An untrained model may stop at once: take the first seed whose answer is
  // long enough for the comparison to tell settings apart.
  std::vector<tess::eval::Generation> via_generate;
  for (o.seed = 1; o.seed < 50; ++o.seed) {
    via_generate = tess::eval::Generator(dir, o).generate({p});
    if (via_generate[0].tokens.size() >= 3) break;
  }
  auto tok = tess::data::load_tokenizer(dir);
  auto encoded = tess::data::encode_prompt(*tok, p.prompt);
  auto batch = SampleBatch::from_prompts({std::vector<int64_t>(encoded.begin(), encoded.end())}, o.length,
                                         tok->pad_id() >= 0 ? tok->pad_id() : tok->eos_id());
  auto sample_with = [&](double k, Schedule schedule) {
    SamplerOptions so;
    so.steps = o.steps;
    so.top_p = o.top_p;
    so.simplex_value = k;
    so.schedule = schedule;
    back->eval();
    tess::util::Rng rng(o.seed, "generate");
    auto ids = Sampler(*back, so).sample(batch, rng);
    return Sampler::span_outputs(ids, batch, tok->eos_id(), tok->pad_id())[0];
  };
  REQUIRE(via_generate[0].tokens.size() >= 3);
  CHECK(via_generate[0].tokens == sample_with(2.0, Schedule::Linear));
  CHECK(via_generate[0].tokens != sample_with(5.0, Schedule::CosineImproved));

  // A bad stored value is an error naming the file and the key.
  auto text = tess::test::read_file(dir / "config.json");
  auto j = nlohmann::json::parse(text);
  j["simplex_value"] = -1;
  std::ofstream(dir / "config.json") << j.dump();
  CHECK_THROWS_WITH(load_diffusion_lm(dir), Contains("config.json: simplex_value must be a positive number"));
}

TEST_CASE("the step printer: plain numbered lines off a terminal, in-place ANSI redraws on one", "[unit][eval]") {
  tess::test::TempDir dir;
  auto path = dir / "steps.txt";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    tess::eval::StepPrinter plain(f, false);
    plain({0, 3, 2, {"hello\nworld"}});
    plain({1, 3, 1, {"a", "b"}});
    std::fclose(f);
  }
  auto text = tess::test::read_file(path);
  CHECK(text == "step 1/3 t=2: hello⏎world\nstep 2/3 t=1 [0]: a\nstep 2/3 t=1 [1]: b\n");
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    tess::eval::StepPrinter tty(f, true, 40);
    tty({0, 2, 1, {"first", "second"}});
    tty({1, 2, 0, {"third", std::string(200, 'x')}});
    std::fclose(f);
  }
  text = tess::test::read_file(path);
  CHECK_THAT(text, Contains("\x1b[2A"));   // cursor up over the two lines of the block
  CHECK_THAT(text, Contains("\r\x1b[2K"));  // clear line
  CHECK_THAT(text, Contains("…"));          // long lines are cut to the width
  CHECK(text.find(std::string(100, 'x')) == std::string::npos);
}

TEST_CASE("read_prompts: prompt and messages records, errors name file:line", "[unit][eval]") {
  tess::test::TempDir dir;
  auto good = dir.write("p.jsonl",
                        "{\"prompt\": \"hi\", \"task\": \"t1\", \"answer\": \"42\"}\n"
                        "\n"
                        "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, "
                        "{\"role\": \"assistant\", \"content\": \"a\"}]}\n");
  auto prompts = tess::eval::read_prompts(good);
  REQUIRE(prompts.size() == 2);
  CHECK(prompts[0].prompt.user == "hi");
  CHECK(prompts[0].task == "t1");
  CHECK(prompts[0].answer == "42");
  CHECK(prompts[1].prompt.user == "q");
  CHECK(prompts[1].answer == "a");
  CHECK_THROWS_WITH(tess::eval::read_prompts(dir / "nope.jsonl"), Contains("nope.jsonl") && Contains("does not exist"));
  auto empty = dir.write("empty.jsonl", "\n");
  CHECK_THROWS_WITH(tess::eval::read_prompts(empty), Contains("no prompts"));
  auto bad = dir.write("bad.jsonl", "{\"prompt\": \"ok\"}\n{\"prompt\": \n");
  CHECK_THROWS_WITH(tess::eval::read_prompts(bad), Contains("bad.jsonl:2"));
}

TEST_CASE("tess generate --prompt prints text and the same seed gives the same text", "[integration][eval]") {
  auto& w = workspace();
  auto base = "generate --model " + q(w.diffusion) + " --prompt 'the cat sat' --steps 4 --length 12 --show-steps ";
  auto a = run_tess(base + "--seed 1");
  INFO(a.err);
  REQUIRE(a.exit_code == 0);
  auto lines = lines_of(a.out);
  REQUIRE(lines.size() == 5);  // 4 step lines (stdout is not a terminal) + the answer
  for (int i = 0; i < 4; ++i) CHECK(lines[i].rfind(fmt::format("step {}/4 t={}: ", i + 1, 3 - i), 0) == 0);
  CHECK(run_tess(base + "--seed 1").out == a.out);
  CHECK(run_tess(base + "--seed 2").out != a.out);

  auto plain = run_tess("generate --model " + q(w.diffusion) + " --prompt 'the dog' --steps 3 --length 8 --seed 5");
  INFO(plain.err);
  REQUIRE(plain.exit_code == 0);
  CHECK(lines_of(plain.out).size() <= 1);  // one answer (empty answers print an empty line)
  CHECK(plain.out == run_tess("generate --model " + q(w.diffusion) +
                              " --prompt 'the dog' --steps 3 --length 8 --seed 5").out);
}

TEST_CASE("tess generate --input writes one JSONL line per prompt, batched", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto input = dir.write("in.jsonl",
                         "{\"prompt\": \"the cat\", \"task\": \"animals\", \"answer\": \"sat\"}\n"
                         "{\"prompt\": \"a much longer prompt about the dog in the park every morning\"}\n"
                         "{\"messages\": [{\"role\": \"user\", \"content\": \"we walk\"}, "
                         "{\"role\": \"assistant\", \"content\": \"home\"}]}\n");
  for (const char* mode : {"", "--ar"}) {
    auto model = std::string(mode).empty() ? w.diffusion : w.ar;
    auto out = dir / (std::string(mode).empty() ? "diffusion.jsonl" : "ar.jsonl");
    auto r = run_tess(fmt::format("generate --model {} --input {} --output {} --steps 3 --length 10 --batch-size 2 "
                                  "--seed 3 {}",
                                  q(model), q(input), q(out), mode));
    INFO(mode << "\n" << r.err);
    REQUIRE(r.exit_code == 0);
    auto lines = lines_of(tess::test::read_file(out));
    REQUIRE(lines.size() == 3);
    std::vector<nlohmann::json> js;
    for (const auto& l : lines) js.push_back(nlohmann::json::parse(l));
    for (const auto& j : js) {
      CHECK(j.at("prompt").is_string());
      CHECK(j.at("output").is_string());
      CHECK(j.at("steps").is_number_integer());
      CHECK(j.at("seconds").is_number());
    }
    CHECK(js[0].at("prompt") == "the cat");
    CHECK(js[0].at("task") == "animals");
    CHECK(js[0].at("answer") == "sat");
    CHECK_FALSE(js[1].contains("task"));
    CHECK(js[2].at("prompt") == "we walk");
    CHECK(js[2].at("answer") == "home");
    if (std::string(mode).empty()) {
      CHECK(js[0].at("steps") == 3);
    } else {
      CHECK(js[0].at("steps").get<int64_t>() <= 10);
    }
  }
}

TEST_CASE("tess generate --ar decodes a causal model, seeded and greedy", "[integration][eval]") {
  auto& w = workspace();
  auto base = "generate --ar --model " + q(w.ar) + " --prompt 'the cat sat' --length 6 ";
  auto greedy = run_tess(base + "--top-p 0 --seed 1");
  INFO(greedy.err);
  REQUIRE(greedy.exit_code == 0);
  CHECK(greedy.out == run_tess(base + "--top-p 0 --seed 2").out);  // argmax needs no draws
  auto s1 = run_tess(base + "--seed 7 --show-steps");
  REQUIRE(s1.exit_code == 0);
  CHECK(s1.out == run_tess(base + "--seed 7 --show-steps").out);
  CHECK_THAT(s1.out, Contains("step 1/6"));
}

TEST_CASE("tess generate: clear errors for bad inputs", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto missing = run_tess("generate --model " + q(w.diffusion) + " --input " + q(dir / "none.jsonl"));
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains("none.jsonl") && Contains("does not exist"));

  auto bad = dir.write("bad.jsonl", "{\"prompt\": \"fine\"}\n{\"prompt\": 3}\n");
  auto r = run_tess("generate --model " + q(w.diffusion) + " --input " + q(bad));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("bad.jsonl:2"));

  auto empty = dir.write("empty.jsonl", "");
  auto e = run_tess("generate --model " + q(w.diffusion) + " --input " + q(empty));
  CHECK(e.exit_code == 1);
  CHECK_THAT(e.err, Contains("no prompts"));

  auto no_model = run_tess("generate --model " + q(dir / "nowhere") + " --prompt hi");
  CHECK(no_model.exit_code == 1);
  CHECK_THAT(no_model.err, Contains("nowhere") && Contains("does not exist"));

  auto mism = run_tess("generate --model " + q(w.mismatch) + " --prompt hi --steps 2 --length 4");
  CHECK(mism.exit_code == 1);
  CHECK_THAT(mism.err, Contains("mismatch"));

  // Used to: nan and inf passed the range checks.
  for (const char* bad : {"--top-p nan", "--top-p 1.5", "--temperature inf", "--temperature nan", "--temperature 0",
                          "--guidance-scale nan"}) {
    INFO(bad);
    auto b = run_tess("generate --model " + q(w.diffusion) + " --prompt hi --steps 2 --length 4 " + bad);
    CHECK(b.exit_code != 0);
    CHECK_THAT(b.err, Contains(std::string(bad).substr(0, std::string(bad).find(' '))));
  }

  // Used to: std::bad_alloc after gigabytes, or an int64 overflow.
  auto long_span = run_tess("generate --model " + q(w.diffusion) + " --prompt hi --steps 2 --length 100000000");
  CHECK(long_span.exit_code == 1);
  CHECK_THAT(long_span.err, Contains("--length 100000000 leaves no room for a prompt within the model's"));
  auto many_steps = run_tess("generate --model " + q(w.diffusion) + " --prompt hi --length 4 --steps 99999999999");
  CHECK(many_steps.exit_code == 1);
  CHECK_THAT(many_steps.err, Contains("--steps must be in [1, 100000], got 99999999999"));

  auto neither = run_tess("generate --model " + q(w.diffusion));
  CHECK(neither.exit_code != 0);
  CHECK_THAT(neither.err, Contains("--prompt"));
}

// Used to: an AR checkpoint ran under the diffusion sampler with a random
// time embedding, and --ar decoded a diffusion model; both printed garbage.
TEST_CASE("each sampler refuses the other kind of model and says why", "[integration][eval]") {
  auto& w = workspace();
  auto diffusion_of_ar = run_tess("generate --model " + q(w.ar) + " --prompt hi --steps 2 --length 4");
  CHECK(diffusion_of_ar.exit_code == 1);
  CHECK_THAT(diffusion_of_ar.err, Contains(w.ar.string() + " is an autoregressive model, not a diffusion model") &&
                                      Contains("random time embedding") && Contains("--ar"));
  auto ar_of_diffusion = run_tess("generate --ar --model " + q(w.diffusion) + " --prompt hi --length 4");
  CHECK(ar_of_diffusion.exit_code == 1);
  CHECK_THAT(ar_of_diffusion.err, Contains(w.diffusion.string() + " is a diffusion model") &&
                                      Contains("leave out --ar"));
  auto ok = run_tess("generate --ar --model " + q(w.ar) + " --prompt hi --length 4");
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("batched KV-cache decoding of prompts of different lengths equals decoding them one at a time",
          "[unit][eval]") {
  auto config = tess::test::tiny_eval_config(60);
  tess::model::Decoder d(config, 11);
  d->eval();
  std::vector<std::vector<int64_t>> prompts{{1, 7, 19, 33, 4}, {2, 5}, {9, 9, 9, 14, 3, 8, 21, 40}};
  tess::util::Rng a(1, "generate");
  int calls = 0;
  auto batched = tess::eval::ar_generate_batch(*d, prompts, 12, /*eos*/ -1, 0.0, 1.0, a,
                                               [&](const std::vector<std::vector<int64_t>>& so_far) {
                                                 ++calls;
                                                 CHECK(so_far.size() == prompts.size());
                                               });
  CHECK(calls == 12);
  REQUIRE(batched.size() == prompts.size());
  for (size_t r = 0; r < prompts.size(); ++r) {
    tess::util::Rng b(1, "generate");
    INFO("prompt " << r);
    CHECK(batched[r].size() == 12);
    CHECK(batched[r] == tess::eval::ar_generate_uncached(*d, prompts[r], 12, -1, 0.0, 1.0, b));
  }
  // A row stops at its own EOS while the others go on: make row 1's third greedy token the EOS.
  tess::util::Rng c(1, "generate");
  int64_t eos = batched[1][2];
  auto stopped = tess::eval::ar_generate_batch(*d, prompts, 12, eos, 0.0, 1.0, c);
  for (size_t r = 0; r < prompts.size(); ++r) {
    auto it = std::find(batched[r].begin(), batched[r].end(), eos);
    CHECK(stopped[r] == std::vector<int64_t>(batched[r].begin(), it));
  }
  CHECK(stopped[1].size() <= 2);
  // Seeded sampling: the same seed and batch give the same tokens.
  tess::util::Rng s1(4, "generate"), s2(4, "generate");
  CHECK(tess::eval::ar_generate_batch(*d, prompts, 10, -1, 0.9, 1.0, s1) ==
        tess::eval::ar_generate_batch(*d, prompts, 10, -1, 0.9, 1.0, s2));
  // A sliding window shorter than prompt + answer: still the one-at-a-time result.
  config.sliding_window = 5;
  tess::model::Decoder windowed(config, 11);
  windowed->eval();
  tess::util::Rng w(1, "generate");
  auto wb = tess::eval::ar_generate_batch(*windowed, prompts, 12, -1, 0.0, 1.0, w);
  for (size_t r = 0; r < prompts.size(); ++r) {
    tess::util::Rng b(1, "generate");
    CHECK(wb[r] == tess::eval::ar_generate_uncached(*windowed, prompts[r], 12, -1, 0.0, 1.0, b));
  }
}

TEST_CASE("tess generate --adaptive: each prompt's answer and steps do not depend on its batch, within the budget",
          "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto input = dir.write("in.jsonl",
                         "{\"prompt\": \"the cat\"}\n{\"prompt\": \"a dog in the park\"}\n{\"prompt\": \"we walk home\"}\n");
  std::map<int, std::vector<nlohmann::json>> by_batch;
  for (int batch : {1, 3}) {
    auto out = dir / ("adaptive_" + std::to_string(batch) + ".jsonl");
    auto r = run_tess(fmt::format("generate --model {} --input {} --output {} --steps 12 --length 6 --batch-size {} "
                                  "--seed 3 --adaptive --stable-steps 1 --margin 0",
                                  q(w.diffusion), q(input), q(out), batch));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    for (const auto& l : lines_of(tess::test::read_file(out))) by_batch[batch].push_back(nlohmann::json::parse(l));
    REQUIRE(by_batch[batch].size() == 3);
  }
  for (size_t i = 0; i < 3; ++i) {
    INFO("prompt " << i);
    CHECK(by_batch[1][i].at("output") == by_batch[3][i].at("output"));
    CHECK(by_batch[1][i].at("steps") == by_batch[3][i].at("steps"));
    CHECK(by_batch[1][i].at("steps").get<int64_t>() >= 2);  // stable_steps + 1 at the earliest
    CHECK(by_batch[1][i].at("steps").get<int64_t>() <= 12);
  }
  auto bad = run_tess(fmt::format("generate --model {} --prompt hi --adaptive --stable-steps 0", q(w.diffusion)));
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("--stable-steps must be at least 1"));
  bad = run_tess(fmt::format("generate --model {} --prompt hi --adaptive --ar", q(w.ar)));
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("does not apply to --ar"));
}

TEST_CASE("tess generate --seed-per-prompt: a prompt's answer is its answer alone, wherever it is in the file",
          "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto input = dir.write("in.jsonl",
                         "{\"prompt\": \"a dog in the park\"}\n{\"prompt\": \"we walk home\"}\n{\"prompt\": \"the cat\"}\n");
  auto out = dir / "all.jsonl";
  auto r = run_tess(fmt::format("generate --model {} --input {} --output {} --steps 6 --length 6 --batch-size 2 "
                                "--seed 9 --seed-per-prompt",
                                q(w.diffusion), q(input), q(out)));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto all = lines_of(tess::test::read_file(out));
  REQUIRE(all.size() == 3);
  // The third prompt alone, with the same seed: the same answer (without the flag it is the same stream too).
  auto alone = dir / "alone.jsonl";
  auto single = dir.write("one.jsonl", "{\"prompt\": \"the cat\"}\n");
  r = run_tess(fmt::format("generate --model {} --input {} --output {} --steps 6 --length 6 --seed 9", q(w.diffusion),
                           q(single), q(alone)));
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(all[2]).at("output") ==
        nlohmann::json::parse(lines_of(tess::test::read_file(alone))[0]).at("output"));
  // Without the flag the third prompt continues the file's stream: another answer.
  auto shared = dir / "shared.jsonl";
  r = run_tess(fmt::format("generate --model {} --input {} --output {} --steps 6 --length 6 --batch-size 2 --seed 9",
                           q(w.diffusion), q(input), q(shared)));
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(lines_of(tess::test::read_file(shared))[2]).at("output") !=
        nlohmann::json::parse(all[2]).at("output"));
}

TEST_CASE("tess generate --raw continues plain text: <s> + the text, no chat template", "[integration][eval]") {
  auto& w = workspace();
  auto tok = tess::data::load_tokenizer(w.diffusion);
  const std::string text = "the dog ran home";
  // The prompt's token count is in the error for a span that leaves it too little room: read it back.
  auto prompt_tokens = [&](const std::string& flags) {
    auto r = run_tess("generate --model " + q(w.diffusion) + " --prompt " + tess::test::shell_quote(text) +
                      " --length 254 " + flags);  // of the model's 256 positions
    INFO(r.err);
    CHECK(r.exit_code == 1);
    auto at = r.err.find("has ");
    REQUIRE(at != std::string::npos);
    return std::stoll(r.err.substr(at + 4));
  };
  int64_t raw = prompt_tokens("--raw");
  CHECK(raw == 1 + static_cast<int64_t>(tok->encode(text).size()));
  CHECK(prompt_tokens("") == static_cast<int64_t>(tess::data::encode_prompt(*tok, text).size()));
  CHECK(prompt_tokens("") > raw);  // the template's markers
  auto ok = run_tess("generate --model " + q(w.diffusion) + " --prompt " + tess::test::shell_quote(text) +
                     " --raw --steps 2 --length 4");
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("tess generate --infill fills the marked spans inside a text and keeps the rest", "[integration][eval]") {
  auto& w = workspace();
  tess::test::TempDir dir;
  auto out = dir / "infill.jsonl";
  auto r = run_tess("generate --model " + q(w.diffusion) +
                    " --infill 'the dog <span:3> home and <span:2> sun' --steps 4 --output " + q(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto g = nlohmann::json::parse(tess::test::read_file(out));
  // The text's own pieces stay, in order, around what was filled in.
  auto filled = g["output"].get<std::string>();
  auto a = filled.find("the dog"), b = filled.find("home and"), c = filled.rfind("sun");
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  REQUIRE(c != std::string::npos);
  CHECK(a < b);
  CHECK(b < c);
  CHECK(g["steps"] == 4);
  CHECK(filled.size() > std::string("the dog  home and  sun").size());  // 5 tokens went in
  // Same seed, same fill.
  auto again = run_tess("generate --model " + q(w.diffusion) + " --infill 'the dog <span:3> home and <span:2> sun' --steps 4");
  CHECK(again.out == filled + "\n");
  for (const auto& [text, message] : {std::pair<std::string, std::string>{"no spans here", "has no <span:N>"},
                                      {"bad <span:x> marker", "expected a positive token count"},
                                      {"open <span:3 never closed", "has no '>'"}}) {
    auto bad = run_tess("generate --model " + q(w.diffusion) + " --infill " + tess::test::shell_quote(text));
    CHECK(bad.exit_code == 1);
    CHECK_THAT(bad.err, Contains(message));
  }
  auto ar = run_tess("generate --model " + q(w.ar) + " --ar --infill 'a <span:2> b'");
  CHECK(ar.exit_code == 1);
  CHECK_THAT(ar.err, Contains("--infill") && Contains("--ar"));
  auto length = run_tess("generate --model " + q(w.diffusion) + " --infill 'a <span:2> b' --length 8");
  CHECK(length.exit_code != 0);
  CHECK_THAT(length.err, Contains("--length") && Contains("markers give the span lengths"));
}
