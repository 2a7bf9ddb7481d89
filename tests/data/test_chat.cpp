#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <functional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config/config.h"
#include "core/util/error.h"
#include "data/batches.h"
#include "data/chat.h"
#include "data/tokenizer.h"
#include "tests/support/test_support.h"

using namespace tess::data;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using tess::test::run_command;
using tess::test::run_tess;
using tess::test::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string make_corpus() {
  static const char* words[] = {
      "the", "a", "model", "answer", "is", "what", "number", "sum", "of", "and", "to", "list", "sort",
      "these", "numbers", "word", "reverse", "letters", "how", "many", "times", "does", "appear", "in",
      "value", "records", "here", "are", "some", "define", "mean", "be", "brief", "helpful", "assistant",
      "user", "system", "you", "hello", "there", "river", "stone", "garden", "apple", "weather", "today"};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t state = 0x2545F4914F6CDD1Dull;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  std::string out;
  for (int line = 0; line < 2000; ++line) {
    if (line % 20 == 0) out += "<|user|> ";
    if (line % 20 == 1) out += "<|assistant|> ";
    if (line % 40 == 2) out += "<|system|> ";
    int n = 4 + static_cast<int>(next() % 10);
    for (int w = 0; w < n; ++w) {
      std::string word = words[next() % n_words];
      if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      if (next() % 11 == 0) word = std::to_string(next() % 1000);
      if (w) out += ' ';
      out += word;
      if (w + 1 < n && next() % 9 == 0) out += next() % 2 ? "," : " +";
    }
    out += (next() % 4 == 0) ? "?\n" : ".\n";
  }
  return out;
}

// One tiny SentencePiece model per test run (Llama convention, no PAD).
const fs::path& model_file() {
  static TempDir dir;
  static fs::path model = [] {
    SentencePieceTrainOptions o;
    o.inputs = {dir.write("corpus.txt", make_corpus())};
    o.model_prefix = dir / "chat";
    o.vocab_size = 400;
    o.seed = 3;
    o.threads = 1;
    train_sentencepiece(o);
    return dir / "chat.model";
  }();
  return model;
}

// The tokenizer with a [PAD] added after the vocabulary, as training does.
std::unique_ptr<Tokenizer> padded_tokenizer() {
  auto tok = load_tokenizer(model_file());
  tok->add_special_token("[PAD]", true);
  return tok;
}


using tess::test::error_of;
using tess::test::shell_quote;

// Ids of `texts` from a Python tokenizer library: `load` binds `encode(text)
// -> ids` from the file in sys.argv[1]. An independent derivation of what the
// template must produce.
std::vector<std::vector<int32_t>> python_ids(const char* load, const fs::path& file,
                                             const std::vector<std::string>& texts) {
  TempDir dir;
  auto input = dir.write("texts.json", json(texts).dump());
  auto script = dir.write("enc.py", std::string("import json, sys\n") + load +
                                        "texts = json.load(open(sys.argv[2], encoding='utf-8'))\n"
                                        "print(json.dumps([encode(t) for t in texts]))\n");
  auto r = run_command(std::string(TESS_PYTHON) + " " + shell_quote(script.string()) + " " +
                       shell_quote(file.string()) + " " + shell_quote(input.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out).get<std::vector<std::vector<int32_t>>>();
}

// The Python sentencepiece package on the test's model.
std::vector<std::vector<int32_t>> python_encode(const std::vector<std::string>& texts) {
  return python_ids("import sentencepiece as spm\n"
                    "encode = spm.SentencePieceProcessor(model_file=sys.argv[1]).encode\n",
                    model_file(), texts);
}

ChatOptions options(int64_t L) {
  ChatOptions o;
  o.seq_len = L;
  o.progress = false;
  return o;
}

json chat_line(const std::string& user, const std::string& assistant) {
  return json{{"messages", json::array({{{"role", "user"}, {"content", user}}, {{"role", "assistant"}, {"content", assistant}}})}};
}

std::vector<int32_t> row(const int32_t* p, int64_t L) { return std::vector<int32_t>(p, p + L); }

// A byte-level BPE tokenizer laid out as Qwen2.5's: the committed GPT-2 style
// tokenizer.json (whose only special token is <|endoftext|>, id 0) with a
// tokenizer_config.json saying bos_token null and eos_token <|endoftext|>, and
// pad_token <|endoftext|> too when `pad_is_eos` (Qwen2.5's own setting), else
// no PAD, then a [PAD] added after the vocabulary as training does.
std::unique_ptr<Tokenizer> qwen_like_tokenizer(const TempDir& dir, bool pad_is_eos) {
  const std::string sub = pad_is_eos ? "qwen_pad_eos" : "qwen_no_bos";
  dir.write(sub + "/tokenizer.json", tess::test::read_file(fs::path(TESS_TEST_DATA) / "bpe" / "gpt2" / "tokenizer.json"));
  json config = {{"bos_token", nullptr}, {"eos_token", "<|endoftext|>"}};
  config["pad_token"] = pad_is_eos ? json("<|endoftext|>") : json(nullptr);
  dir.write(sub + "/tokenizer_config.json", config.dump());
  auto tok = load_tokenizer(dir / sub);
  if (!pad_is_eos) tok->add_special_token("[PAD]", true);
  return tok;
}

// Ids of texts from HF's `tokenizers` (no special tokens added: this
// tokenizer.json has no post-processor, like Qwen2.5's): an independent
// derivation for a BPE tokenizer.
std::vector<std::vector<int32_t>> hf_encode(const fs::path& tokenizer_json, const std::vector<std::string>& texts) {
  return python_ids("from tokenizers import Tokenizer\n"
                    "tok = Tokenizer.from_file(sys.argv[1])\n"
                    "encode = lambda t: tok.encode(t).ids\n",
                    tokenizer_json, texts);
}

}  // namespace

TEST_CASE("the chat template is byte-exact: <s><|user|> newline {user} newline <|assistant|> newline {answer}</s> + PAD", "[unit][data]") {
  auto tok = padded_tokenizer();
  const int32_t pad = tok->pad_id();
  const int64_t L = 48;
  const std::string prompt = "<|user|>\nWhat is the sum of 12 and 30?\n<|assistant|>\n";
  const std::string answer = "The sum is 42.";
  auto py = python_encode({prompt, prompt + answer, answer});
  const auto& p_ids = py[0];
  const auto& full = py[1];
  // The reference tokenizes "<s>" + prompt + answer + "</s>" in one go; the
  // prompt's own tokens are a prefix of that (pieces never cross "\n").
  REQUIRE(full.size() > p_ids.size());
  REQUIRE(std::equal(p_ids.begin(), p_ids.end(), full.begin()));
  std::vector<int32_t> expected{1};
  expected.insert(expected.end(), full.begin(), full.end());
  expected.push_back(2);
  const auto real = static_cast<int32_t>(expected.size());
  expected.resize(static_cast<size_t>(L), pad);

  TempDir dir;
  auto file = dir.write("chat.jsonl", chat_line("What is the sum of 12 and 30?", answer).dump() + "\n");
  auto ds = ChatDataset::build({file}, *tok, options(L));
  REQUIRE(ds.size() == 1);
  CHECK(row(ds.ids(0), L) == expected);
  CHECK(ds.length(0) == real);
  CHECK(ds.prompt_length(0) == static_cast<int32_t>(1 + p_ids.size()));
  // span_mask: 0 on <s> and the prompt; 1 on the answer, </s> and every PAD.
  for (int64_t i = 0; i < L; ++i) {
    INFO(i);
    CHECK(ds.span_mask(0)[i] == (i >= static_cast<int64_t>(1 + p_ids.size()) ? 1 : 0));
  }
  CHECK(ds.ids(0)[real - 1] == tok->eos_id());
  CHECK(tok->decode(row(ds.ids(0), L)) == prompt + answer);
  // The answer is encoded as a continuation: no dummy-prefix space, unlike
  // encoding it alone (which is why the boundary is not encode(answer)).
  CHECK(std::vector<int32_t>(full.begin() + static_cast<long>(p_ids.size()), full.end()) != py[2]);
  CHECK(encode_response(*tok, prompt, answer) == std::vector<int32_t>(full.begin() + static_cast<long>(p_ids.size()), full.end()));

  // The prompt-only ids for generation are exactly the clean part.
  auto gen = encode_prompt(*tok, std::string("What is the sum of 12 and 30?"));
  CHECK(gen == std::vector<int32_t>(expected.begin(), expected.begin() + ds.prompt_length(0)));
  ChatPrompt cp;
  cp.user = "What is the sum of 12 and 30?";
  CHECK(prompt_text(cp) == prompt);
  CHECK(encode_prompt(*tok, cp) == gen);

  // The same example as {prompt, completion}, with whitespace around the texts
  // (stripped, as the reference does).
  auto file2 = dir.write("pc.jsonl", json{{"prompt", "  What is the sum of 12 and 30?\n"}, {"completion", "The sum is 42. \n"}}.dump() + "\n");
  auto ds2 = ChatDataset::build({file2}, *tok, options(L));
  REQUIRE(ds2.size() == 1);
  CHECK(ds2.all_ids() == ds.all_ids());
  CHECK(ds2.all_span_masks() == ds.all_span_masks());

  // Tensors are views of the same memory.
  auto ids = ds.ids_tensor();
  CHECK(ids.dtype() == torch::kInt32);
  CHECK(ids.sizes() == torch::IntArrayRef({1, L}));
  CHECK(ids[0][5].item<int32_t>() == expected[5]);
  auto span = ds.span_mask_tensor();
  CHECK(span.dtype() == torch::kBool);
  CHECK(span.sum().item<int64_t>() == L - ds.prompt_length(0));
  CHECK(ds.lengths_tensor()[0].item<int32_t>() == real);

  auto shown = render_sequence(*tok, ds.sequence(0));
  CHECK_THAT(shown, Contains("<s><|user|>\nWhat is the sum of 12 and 30?\n<|assistant|>\n⟦The sum is 42.</s>[PAD]×"));
  CHECK_THAT(shown, Contains("pieces: <s> "));
}

TEST_CASE("system message and all-turns variants of the template", "[unit][data]") {
  auto tok = padded_tokenizer();
  const int64_t L = 96;
  json conv = {{"messages", json::array({{{"role", "system"}, {"content", "Be brief."}},
                                         {{"role", "user"}, {"content", "Hello there."}},
                                         {{"role", "assistant"}, {"content", "Hello."}},
                                         {{"role", "user"}, {"content", "What is 2 + 3?"}},
                                         {{"role", "assistant"}, {"content", "5"}},
                                         {{"role", "user"}, {"content", "Thanks."}}})}};
  auto o = options(L);
  SECTION("first turn, system left out (the reference)") {
    auto rec = parse_chat_record(conv, o);
    CHECK(rec.system_left_out);
    CHECK(prompt_text(rec.prompt) == "<|user|>\nHello there.\n<|assistant|>\n");
    CHECK(rec.response == "Hello.");
  }
  SECTION("first turn with the system message") {
    o.system_message = true;
    auto rec = parse_chat_record(conv, o);
    CHECK(!rec.system_left_out);
    CHECK(prompt_text(rec.prompt) == "<|system|>\nBe brief.\n<|user|>\nHello there.\n<|assistant|>\n");
    auto res = encode_chat(*tok, rec.prompt, {rec.response}, o);
    REQUIRE(res.status == EncodeStatus::Ok);
    auto py = python_encode({prompt_text(rec.prompt) + "Hello."});
    std::vector<int32_t> expected{1};
    expected.insert(expected.end(), py[0].begin(), py[0].end());
    expected.push_back(2);
    const auto& seq = res.sequences[0];
    CHECK(std::vector<int32_t>(seq.ids.begin(), seq.ids.begin() + seq.length) == expected);
    CHECK(tok->decode(seq.ids) == prompt_text(rec.prompt) + "Hello.");
  }
  SECTION("all turns: earlier turns are clean context, the last answer is the span") {
    o.turns = ChatTurns::All;
    o.system_message = true;
    auto rec = parse_chat_record(conv, o);
    CHECK(prompt_text(rec.prompt) ==
          "<|system|>\nBe brief.\n<|user|>\nHello there.\n<|assistant|>\nHello.\n<|user|>\nWhat is 2 + 3?\n<|assistant|>\n");
    CHECK(rec.response == "5");  // the trailing user message has no answer: not used
    auto res = encode_chat(*tok, rec.prompt, {rec.response}, o);
    const auto& seq = res.sequences[0];
    CHECK(tok->decode(std::vector<int32_t>(seq.ids.begin(), seq.ids.begin() + seq.prompt_length)) ==
          prompt_text(rec.prompt));
    CHECK(tok->decode(std::vector<int32_t>(seq.ids.begin() + seq.prompt_length, seq.ids.end())) == "5");
    for (int64_t i = 0; i < L; ++i) CHECK(seq.span_mask[static_cast<size_t>(i)] == (i >= seq.prompt_length ? 1 : 0));
  }
  SECTION("a dataset counts the system messages it leaves out") {
    TempDir dir;
    auto file = dir.write("c.jsonl", conv.dump() + "\n" + chat_line("Hi.", "Hello.").dump() + "\n");
    auto ds = ChatDataset::build({file}, *tok, o);
    CHECK(ds.size() == 2);
    CHECK(ds.report().system_left_out == 1);
    CHECK_THAT(ds.report().summary(), Contains("1 system message(s) left out"));
  }
}

TEST_CASE("truncate_right (the reference): the sequence is cut at L, the response loses its end and </s>",
          "[unit][data]") {
  auto tok = padded_tokenizer();
  const int64_t L = 40;
  auto o = options(L);
  o.too_long = TooLongPolicy::TruncateRight;
  ChatPrompt p;
  p.user = "What is the value of stone?";
  std::string long_answer;
  for (int i = 0; i < 40; ++i) long_answer += "river stone ";
  auto prompt_ids = encode_prompt(*tok, p);
  auto full_r = encode_response(*tok, prompt_text(p), long_answer);
  REQUIRE(static_cast<int64_t>(1 + prompt_ids.size() + full_r.size() + 1) > L);
  auto res = encode_chat(*tok, p, {long_answer}, o);
  REQUIRE(res.status == EncodeStatus::Truncated);
  const auto& seq = res.sequences[0];
  CHECK(seq.length == L);
  CHECK(res.prompt.user == p.user);  // the prompt is whole
  // <s> P, then the response's first L - 1 - |P| tokens, no </s>.
  CHECK(std::vector<int32_t>(seq.ids.begin() + seq.prompt_length, seq.ids.end()) ==
        std::vector<int32_t>(full_r.begin(), full_r.begin() + (L - seq.prompt_length)));
  CHECK(std::find(seq.ids.begin(), seq.ids.end(), tok->eos_id()) == seq.ids.end());
  for (int64_t i = 0; i < L; ++i) CHECK(seq.span_mask[static_cast<size_t>(i)] == (i >= seq.prompt_length ? 1 : 0));
  // A prompt that leaves no response token: dropped, as the reference filters it.
  ChatPrompt huge;
  for (int i = 0; i < 30; ++i) huge.user += "garden apple ";
  CHECK(encode_chat(*tok, huge, {"7"}, o).status == EncodeStatus::DroppedTooLong);
  // What fits is untouched.
  auto small = encode_chat(*tok, p, {"7"}, o);
  CHECK(small.status == EncodeStatus::Ok);
  CHECK(seq.prompt_length == small.sequences[0].prompt_length);
  CHECK(small.sequences[0].ids[static_cast<size_t>(small.sequences[0].length - 1)] == tok->eos_id());
}

TEST_CASE("too-long examples: the prompt is cut from the left keeping the markers, or dropped, and all are counted", "[unit][data]") {
  auto tok = padded_tokenizer();
  const int64_t L = 40;
  std::string long_user = "Here are some records: river is 12, stone is 7, garden is 30, apple is 5. What is the value of stone?";
  auto o = options(L);
  ChatPrompt p;
  p.user = long_user;
  auto full_r = encode_response(*tok, prompt_text(p), "7");
  auto res = encode_chat(*tok, p, {"7"}, o);
  REQUIRE(res.status == EncodeStatus::Truncated);
  const auto& seq = res.sequences[0];
  CHECK(seq.length <= L);
  CHECK(seq.length >= L - 8);  // cut at the last word start that fits
  // Markers stay; the user text is a suffix of the original starting at a word.
  std::string shown = tok->decode(std::vector<int32_t>(seq.ids.begin(), seq.ids.begin() + seq.prompt_length));
  CHECK_THAT(shown, StartsWith("<|user|>\n"));
  CHECK(shown.size() > 23);
  CHECK(shown.substr(shown.size() - 15) == "\n<|assistant|>\n");
  std::string cut = res.prompt.user;
  CHECK(!cut.empty());
  CHECK(cut.size() < long_user.size());
  CHECK(long_user.substr(long_user.size() - cut.size()) == cut);
  CHECK(long_user[long_user.size() - cut.size() - 1] == ' ');
  CHECK(shown == "<|user|>\n" + cut + "\n<|assistant|>\n");
  CHECK(encode_prompt(*tok, res.prompt) == std::vector<int32_t>(seq.ids.begin(), seq.ids.begin() + seq.prompt_length));
  // The span is intact.
  CHECK(std::vector<int32_t>(seq.ids.begin() + seq.prompt_length, seq.ids.begin() + seq.length - 1) == full_r);

  // Drop policy.
  o.too_long = TooLongPolicy::Drop;
  CHECK(encode_chat(*tok, p, {"7"}, o).status == EncodeStatus::DroppedTooLong);
  // A response that cannot fit even after the minimal prompt is always dropped.
  o.too_long = TooLongPolicy::TruncatePrompt;
  std::string long_answer;
  for (int i = 0; i < 40; ++i) long_answer += "river stone ";
  auto r2 = encode_chat(*tok, p, {long_answer}, o);
  CHECK(r2.status == EncodeStatus::DroppedResponseTooLong);
  CHECK(r2.sequences.empty());

  // All turns: earlier turns go first (oldest first), then the user text.
  o.turns = ChatTurns::All;
  ChatPrompt multi;
  multi.history = {{"Hello there.", "Hello."}, {"What is the weather today?", "The weather is good."}};
  multi.user = "What is 2 + 3?";
  auto r3 = encode_chat(*tok, multi, {"5"}, o);
  REQUIRE(r3.status == EncodeStatus::Truncated);
  CHECK(r3.prompt.user == "What is 2 + 3?");
  CHECK(r3.prompt.history.size() < 2);
  if (!r3.prompt.history.empty()) CHECK(r3.prompt.history[0].first == "What is the weather today?");

  // In a dataset: counted, and reported in the summary.
  TempDir dir;
  auto file = dir.write("d.jsonl", chat_line("Hello there.", "Hello.").dump() + "\n" + chat_line(long_user, "7").dump() +
                                       "\n" + chat_line("Hi.", long_answer).dump() + "\n");
  auto ds = ChatDataset::build({file}, *tok, options(L));
  CHECK(ds.size() == 2);
  CHECK(ds.report().records == 3);
  CHECK(ds.report().examples == 2);
  CHECK(ds.report().truncated == 1);
  CHECK(ds.report().dropped_too_long == 0);
  CHECK(ds.report().dropped_response_too_long == 1);
  auto drop = options(L);
  drop.too_long = TooLongPolicy::Drop;
  auto ds2 = ChatDataset::build({file}, *tok, drop);
  CHECK(ds2.size() == 1);
  CHECK(ds2.report().dropped_too_long == 1);
  CHECK(ds2.report().dropped_response_too_long == 1);
  CHECK_THAT(ds2.report().summary(), Contains("1 dropped as too long") && Contains("1 dropped with a response too long"));
}

TEST_CASE("each kind of malformed chat line is an error naming file:line and the problem", "[unit][data]") {
  auto tok = padded_tokenizer();
  TempDir dir;
  const std::string good = chat_line("Hi.", "Hello.").dump() + "\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"text": "hello"})", "missing field 'messages' (or 'prompt' and 'completion')"},
      {R"({"prompt": "Hi."})", "missing field 'completion'"},
      {R"({"prompt": "Hi.", "completion": 5})", "field 'completion' must be a string"},
      {R"({"messages": "Hi."})", "field 'messages' must be a list"},
      {R"({"messages": []})", "field 'messages' is empty"},
      {R"({"messages": [{"role": "bot", "content": "x"}]})", "message 1 has unknown role 'bot'"},
      {R"({"messages": [{"role": "user"}]})", "message 1 has no 'content'"},
      {R"({"messages": [{"content": "x"}]})", "message 1 has no 'role'"},
      {R"({"messages": [{"role": "user", "content": ["x"]}]})", "'content' must be a string"},
      {R"({"messages": [{"role": "user", "content": "Hi."}]})", "no assistant message"},
      {R"({"messages": [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "  "}]})",
       "message 2 (assistant) content is empty"},
      {R"({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]})",
       "message 1 (user) content is empty"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})",
       "message 2 has role 'user' but 'assistant' was expected"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})",
       "a system message is only allowed first"},
      {R"({"prompt": "  ", "completion": "x"})", "field 'prompt' is empty"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "task": 3})",
       "field 'task' must be a string"},
  };
  int n = 0;
  for (const auto& [line, problem] : cases) {
    INFO(line);
    auto file = dir.write("bad" + std::to_string(n++) + ".jsonl", good + "\n" + line + "\n" + good);
    auto msg = error_of([&] { ChatDataset::build({file}, *tok, options(64)); });
    CHECK_THAT(msg, StartsWith(file.string() + ":3: "));
    CHECK_THAT(msg, Contains(problem));
    CHECK_THAT(msg, Contains("skip_bad_records"));
  }
}

TEST_CASE("skip_bad_records skips malformed lines and reports how many and where", "[unit][data]") {
  auto tok = padded_tokenizer();
  TempDir dir;
  const std::string good = chat_line("Hi.", "Hello.").dump() + "\n";
  auto a = dir.write("a.jsonl", good + "{oops\n" + good + R"({"messages": [{"role": "user", "content": "x"}]})" "\n");
  auto b = dir.write("b.jsonl", R"({"prompt": "x"})" "\n" + good);
  auto o = options(32);
  o.skip_bad = true;
  auto ds = ChatDataset::build({a, b}, *tok, o);
  CHECK(ds.size() == 3);
  const auto& r = ds.report();
  CHECK(r.records == 3);
  CHECK(r.bad_lines == 3);
  REQUIRE(r.first_bad.size() == 3);
  CHECK_THAT(r.first_bad[0], StartsWith(a.string() + ":2: not valid JSON"));
  CHECK_THAT(r.first_bad[1], StartsWith(a.string() + ":4: no assistant message"));
  CHECK_THAT(r.first_bad[2], StartsWith(b.string() + ":1: missing field 'completion'"));
  CHECK_THAT(r.summary(), Contains("3 bad line(s) skipped") && Contains(a.string() + ":2:"));
}

TEST_CASE("a tokenizer without PAD cannot build the template", "[unit][data]") {
  auto tok = load_tokenizer(model_file());  // no [PAD]
  TempDir dir;
  auto file = dir.write("a.jsonl", chat_line("Hi.", "Hello.").dump() + "\n");
  CHECK_THAT(error_of([&] { ChatDataset::build({file}, *tok, options(32)); }), Contains("no PAD token"));
  CHECK_THAT(error_of([&] { ChatDataset::build({dir / "missing.jsonl"}, *padded_tokenizer(), options(32)); }),
             Contains((dir / "missing.jsonl").string()));
}

TEST_CASE("preference pairs share the prompt and the reward is read at the last real token", "[unit][data]") {
  auto tok = padded_tokenizer();
  const int64_t L = 40;
  TempDir dir;
  json ultra = {{"prompt", "What is 2 + 3?"},
                {"chosen", json::array({{{"role", "user"}, {"content", "What is 2 + 3?"}}, {{"role", "assistant"}, {"content", "5"}}})},
                {"rejected", json::array({{{"role", "user"}, {"content", "What is 2 + 3?"}}, {{"role", "assistant"}, {"content", "It is 6."}}})}};
  auto file = dir.write("p.jsonl", json{{"prompt", "What is 2 + 3?"}, {"chosen", "5"}, {"rejected", "It is 6."}, {"task", "addition"}}.dump() +
                                       "\n" + ultra.dump() + "\n");
  auto ds = PreferenceDataset::build({file}, *tok, options(L));
  REQUIRE(ds.size() == 2);
  const std::string prompt = "<|user|>\nWhat is 2 + 3?\n<|assistant|>\n";
  auto py = python_encode({prompt, prompt + "5", prompt + "It is 6."});
  for (int64_t i = 0; i < 2; ++i) {
    std::vector<int32_t> chosen{1}, rejected{1};
    chosen.insert(chosen.end(), py[1].begin(), py[1].end());
    chosen.push_back(2);
    rejected.insert(rejected.end(), py[2].begin(), py[2].end());
    rejected.push_back(2);
    CHECK(ds.chosen_last(i) == static_cast<int32_t>(chosen.size()) - 1);
    CHECK(ds.rejected_last(i) == static_cast<int32_t>(rejected.size()) - 1);
    chosen.resize(static_cast<size_t>(L), tok->pad_id());
    rejected.resize(static_cast<size_t>(L), tok->pad_id());
    CHECK(row(ds.chosen_ids(i), L) == chosen);
    CHECK(row(ds.rejected_ids(i), L) == rejected);
    CHECK(ds.chosen_ids(i)[ds.chosen_last(i)] == tok->eos_id());
    CHECK(ds.prompt_length(i) == static_cast<int32_t>(1 + py[0].size()));
  }
  CHECK(ds.chosen_tensor().sizes() == torch::IntArrayRef({2, L}));
  CHECK(ds.rejected_last_tensor()[1].item<int32_t>() == ds.rejected_last(1));

  auto bad = dir.write("bad.jsonl", json{{"prompt", "x"}, {"chosen", "y"}}.dump() + "\n");
  CHECK_THAT(error_of([&] { PreferenceDataset::build({bad}, *tok, options(L)); }),
             Contains(bad.string() + ":1: missing field 'rejected'"));
  // Used to: accepted silently, a pair whose loss is log 2 whatever the model.
  auto same = dir.write("same.jsonl", json{{"prompt", "x"}, {"chosen", "y"}, {"rejected", " y "}}.dump() + "\n");
  CHECK_THAT(error_of([&] { PreferenceDataset::build({same}, *tok, options(L)); }),
             Contains(same.string() + ":1: 'chosen' and 'rejected' are the same answer"));
}

TEST_CASE("held-out evaluation records give the prompt and the reference answer", "[unit][data]") {
  auto tok = padded_tokenizer();
  TempDir dir;
  json m = chat_line("What is 2 + 3?", "5");
  m["task"] = "addition";
  auto file = dir.write("e.jsonl", json{{"prompt", "Define the word 'garden'."}, {"answer", "a plot of ground"}}.dump() +
                                       "\n" + m.dump() + "\n" + json{{"prompt", "Say hello."}}.dump() + "\n");
  auto recs = read_eval_records(file, options(64));
  REQUIRE(recs.size() == 3);
  CHECK(recs[0].prompt.user == "Define the word 'garden'.");
  CHECK(recs[0].reference == "a plot of ground");
  CHECK(recs[0].line == 1);
  CHECK(recs[1].prompt.user == "What is 2 + 3?");
  CHECK(recs[1].reference == "5");
  CHECK(recs[1].task == "addition");
  CHECK(recs[2].reference.empty());  // open-ended prompt
  CHECK(encode_prompt(*tok, recs[1].prompt) == encode_prompt(*tok, std::string("What is 2 + 3?")));
  auto bad = dir.write("bad.jsonl", "{\"answer\": \"x\"}\n");
  CHECK_THAT(error_of([&] { read_eval_records(bad, options(64)); }), Contains(bad.string() + ":1: missing field 'messages'"));
}

TEST_CASE("chat options come from the config keys", "[unit][data]") {
  auto cfg = tess::config::Config::load_string(
      "run:\n  stage: instruction\ndata:\n  seq_len: 256\n  skip_bad_records: true\n  chat:\n    turns: all\n    system_message: true\n    too_long: drop\n",
      "c.yaml", {}, ".");
  auto o = ChatOptions::from_config(cfg);
  CHECK(o.seq_len == 256);
  CHECK(o.skip_bad);
  CHECK(o.turns == ChatTurns::All);
  CHECK(o.system_message);
  CHECK(o.too_long == TooLongPolicy::Drop);
  auto d = ChatOptions::from_config(tess::config::Config{});
  CHECK(d.turns == ChatTurns::First);
  CHECK(!d.system_message);
  CHECK(d.too_long == TooLongPolicy::TruncateRight);  // the reference's
}

TEST_CASE("tess tokenize chat prints the preprocessing report and renders examples", "[unit][data]") {
  TempDir dir;
  auto file = dir.write("c.jsonl", chat_line("Hello there.", "Hello.").dump() + "\n{bad\n" +
                                       chat_line("What is the value of stone? Here are some records: river is 12, stone is 7.", "7").dump() + "\n");
  std::string base = "tokenize chat --tokenizer " + shell_quote(model_file().string()) + " --input " + shell_quote(file.string());
  auto r = run_tess(base + " --seq-len 32 --skip-bad --show 2 --too-long truncate_prompt");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("added [PAD]"));
  CHECK_THAT(r.out, Contains("chat data: 2 record(s), 2 example(s) of 32 tokens"));
  CHECK_THAT(r.out, Contains("truncated (prompt cut from the left): 1"));
  CHECK_THAT(r.out, Contains("bad lines skipped: 1"));
  CHECK_THAT(r.out, Contains(file.string() + ":2:"));
  CHECK_THAT(r.out, Contains("--- example 1: ") && Contains("<s><|user|>\nHello there.\n<|assistant|>\n⟦Hello.</s>[PAD]×"));
  CHECK_THAT(r.out, Contains("--- example 2: "));

  auto drop = run_tess(base + " --seq-len 32 --skip-bad --too-long drop");
  CHECK(drop.exit_code == 0);
  CHECK_THAT(drop.out, Contains("dropped (too long, policy drop): 1"));

  auto bad = run_tess(base + " --seq-len 32");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Contains(file.string() + ":2: not valid JSON"));

  auto pref = dir.write("p.jsonl", json{{"prompt", "What is 2 + 3?"}, {"chosen", "5"}, {"rejected", "6"}}.dump() + "\n");
  auto p = run_tess("tokenize chat --preferences --show 1 --seq-len 32 --tokenizer " + shell_quote(model_file().string()) +
                    " --input " + shell_quote(pref.string()));
  INFO(p.err);
  CHECK(p.exit_code == 0);
  CHECK_THAT(p.out, Contains("preference pairs: 1 record(s), 1 example(s)"));
  CHECK_THAT(p.out, Contains("pair 1 (chosen)") && Contains("⟦5</s>") && Contains("pair 1 (rejected)") && Contains("⟦6</s>"));
}

TEST_CASE("a tokenizer without BOS (Qwen2.5's layout): sequences start with the prompt text's own tokens",
          "[unit][data]") {
  TempDir dir;
  auto tok = qwen_like_tokenizer(dir, /*pad_is_eos=*/false);
  REQUIRE(tok->bos_id() == -1);
  REQUIRE(tok->eos_id() == 0);
  const int32_t pad = tok->pad_id();
  REQUIRE(pad == 1200);  // the added [PAD], after the 1200 tokens
  const int64_t L = 48;
  const std::string user = "What is the sum of 12 and 30?";
  const std::string prompt = "<|user|>\n" + user + "\n<|assistant|>\n";
  const std::string answer = "The sum is 42.";
  auto hf = hf_encode(dir / "qwen_no_bos" / "tokenizer.json", {prompt, prompt + answer});
  const auto& p_ids = hf[0];
  const auto& full = hf[1];
  REQUIRE(full.size() > p_ids.size());
  REQUIRE(std::equal(p_ids.begin(), p_ids.end(), full.begin()));
  // What HF's Qwen2 chat data is: the text's tokens (no BOS), then EOS.
  std::vector<int32_t> expected = full;
  expected.push_back(tok->eos_id());
  const auto real = static_cast<int32_t>(expected.size());
  expected.resize(static_cast<size_t>(L), pad);

  auto file = dir.write("chat.jsonl", chat_line(user, answer).dump() + "\n");
  auto ds = ChatDataset::build({file}, *tok, options(L));
  REQUIRE(ds.size() == 1);
  CHECK(row(ds.ids(0), L) == expected);
  CHECK(ds.ids(0)[0] == p_ids[0]);  // the first token is the prompt's, not a BOS
  CHECK(ds.length(0) == real);
  CHECK(ds.prompt_length(0) == static_cast<int32_t>(p_ids.size()));
  for (int64_t i = 0; i < L; ++i) {
    INFO(i);
    CHECK(ds.span_mask(0)[i] == (i >= static_cast<int64_t>(p_ids.size()) ? 1 : 0));
  }
  CHECK(tok->decode(row(ds.ids(0), L)) == prompt + answer);
  // The prompt-only ids for generation are exactly encode(prompt text), the
  // clean part of the training sequence.
  auto gen = encode_prompt(*tok, user);
  CHECK(gen == p_ids);
  CHECK(gen == tok->encode(prompt));
  CHECK(gen == std::vector<int32_t>(expected.begin(), expected.begin() + ds.prompt_length(0)));

  auto shown = render_sequence(*tok, ds.sequence(0));
  INFO(shown);
  CHECK_THAT(shown, StartsWith(fmt::format("48 tokens: {} prompt (clean), {} span = 6 response + </s> + {} PAD\n",
                                           p_ids.size(), L - static_cast<int64_t>(p_ids.size()), L - real)));
  CHECK_THAT(shown, Contains(fmt::format("PAD\n<|user|>\nWhat is the sum of 12 and 30?\n<|assistant|>\n⟦The sum is "
                                         "42.</s>[PAD]×{}⟧\n", L - real)));
  CHECK_THAT(shown, Contains("\npieces: < | us er | > "));
  CHECK_THAT(shown, !Contains("<s>"));

  // Fitting and truncation count no BOS. Exactly L = |P| + |R| + 1: fits whole.
  auto exact = options(static_cast<int64_t>(full.size()) + 1);
  auto fit = encode_chat(*tok, ChatPrompt{{}, {}, user}, {answer}, exact);
  REQUIRE(fit.status == EncodeStatus::Ok);
  CHECK(fit.sequences[0].ids == std::vector<int32_t>(expected.begin(), expected.begin() + real));
  CHECK(fit.sequences[0].length == real);
  // truncate_right: a prompt of L - 1 tokens leaves one answer token (with a
  // BOS it would leave none and be dropped); of L tokens, none.
  auto right = options(static_cast<int64_t>(p_ids.size()) + 1);
  right.too_long = TooLongPolicy::TruncateRight;
  auto cut = encode_chat(*tok, ChatPrompt{{}, {}, user}, {answer}, right);
  REQUIRE(cut.status == EncodeStatus::Truncated);
  CHECK(cut.sequences[0].ids == std::vector<int32_t>(full.begin(), full.begin() + static_cast<long>(p_ids.size()) + 1));
  CHECK(cut.sequences[0].length == static_cast<int32_t>(p_ids.size()) + 1);
  CHECK(cut.sequences[0].prompt_length == static_cast<int32_t>(p_ids.size()));
  right.seq_len = static_cast<int64_t>(p_ids.size());
  CHECK(encode_chat(*tok, ChatPrompt{{}, {}, user}, {answer}, right).status == EncodeStatus::DroppedTooLong);
  // truncate_prompt: the cut prompt's ids start the sequence, still no BOS.
  auto left = options(static_cast<int64_t>(full.size()) - 2);
  left.too_long = TooLongPolicy::TruncatePrompt;
  auto shortened = encode_chat(*tok, ChatPrompt{{}, {}, user}, {answer}, left);
  REQUIRE(shortened.status == EncodeStatus::Truncated);
  const auto& sp = shortened.sequences[0];
  CHECK(std::vector<int32_t>(sp.ids.begin(), sp.ids.begin() + sp.prompt_length) == encode_prompt(*tok, shortened.prompt));
  CHECK(sp.ids[0] == p_ids[0]);  // "<": the markers stay, and no BOS comes first
  CHECK(sp.length <= left.seq_len);
  CHECK(std::vector<int32_t>(sp.ids.begin() + sp.prompt_length, sp.ids.begin() + sp.length - 1) ==
        std::vector<int32_t>(full.begin() + static_cast<long>(p_ids.size()), full.end()));

  // Preference pairs: the reward is read at each answer's EOS.
  auto pref = dir.write("p.jsonl", json{{"prompt", user}, {"chosen", answer}, {"rejected", "It is 41."}}.dump() + "\n");
  auto pd = PreferenceDataset::build({pref}, *tok, options(L));
  REQUIRE(pd.size() == 1);
  CHECK(row(pd.chosen_ids(0), L) == expected);
  CHECK(pd.chosen_last(0) == real - 1);
  CHECK(pd.prompt_length(0) == static_cast<int32_t>(p_ids.size()));
}

TEST_CASE("PAD == EOS (Qwen2.5's <|endoftext|>): the answer's EOS and the padded tail share the id, told apart by position",
          "[unit][data]") {
  TempDir dir;
  auto tok = qwen_like_tokenizer(dir, /*pad_is_eos=*/true);
  REQUIRE(tok->bos_id() == -1);
  REQUIRE(tok->eos_id() == 0);
  REQUIRE(tok->pad_id() == 0);
  const int32_t eos = tok->eos_id();
  const int64_t L = 48;
  const std::string user = "What is the sum of 12 and 30?";
  const std::string prompt = "<|user|>\n" + user + "\n<|assistant|>\n";
  const std::string answer = "The sum is 42.";
  auto hf = hf_encode(dir / "qwen_pad_eos" / "tokenizer.json", {prompt, prompt + answer});
  const auto p_len = static_cast<int32_t>(hf[0].size());
  std::vector<int32_t> expected = hf[1];
  expected.push_back(eos);
  const auto real = static_cast<int32_t>(expected.size());  // counts the answer's EOS
  expected.resize(static_cast<size_t>(L), eos);              // the tail pads with the same id

  auto file = dir.write("chat.jsonl", chat_line(user, answer).dump() + "\n");
  auto ds = ChatDataset::build({file}, *tok, options(L));
  REQUIRE(ds.size() == 1);
  CHECK(row(ds.ids(0), L) == expected);
  CHECK(ds.length(0) == real);
  CHECK(ds.ids(0)[real - 2] != eos);  // the answer's last token, then its EOS
  CHECK(ds.prompt_length(0) == p_len);
  // The span: the answer, its EOS and every PAD.
  for (int64_t i = 0; i < L; ++i) {
    INFO(i);
    CHECK(ds.span_mask(0)[i] == (i >= p_len ? 1 : 0));
  }
  const auto& rep = ds.report();
  CHECK(rep.real_tokens == real);
  CHECK(rep.pad_tokens == L - real);
  CHECK(rep.span_tokens == L - p_len);
  CHECK(tok->decode(row(ds.ids(0), L)) == prompt + answer);

  auto shown = render_sequence(*tok, ds.sequence(0));
  INFO(shown);
  CHECK_THAT(shown, Contains(fmt::format("span = 6 response + </s> + {} PAD\n", L - real)));
  CHECK_THAT(shown, Contains(fmt::format("⟦The sum is 42.</s>[PAD]×{}⟧\n", L - real)));
  CHECK_THAT(shown, Contains(fmt::format(" <|endoftext|> <|endoftext|>×{}⟧", L - real)));

  // The training batch (stage instruction / ar): ids and span as above; the
  // loss is averaged over the span positions, the EOS and the PADs included.
  auto cfg = tess::config::Config::load_string("run:\n  stage: instruction\ndata:\n  seq_len: 48\n", "c.yaml", {}, ".");
  auto examples = open_examples({file.string()}, {DataKind::Chat}, "instruction", cfg, *tok, tok->base_hash(), "train",
                                "data.train");
  auto batch = make_batch(*examples, {0}, nullptr);
  CHECK(torch::equal(batch.ids[0], torch::tensor(std::vector<int64_t>(expected.begin(), expected.end()))));
  CHECK(torch::equal(batch.span_mask[0], torch::arange(L) >= p_len));
  CHECK(batch.tokens == L - p_len);

  // Preference pairs (stage reward): the reward is read at each answer's EOS,
  // not at the last position holding EOS's id.
  auto pref = dir.write("p.jsonl", json{{"prompt", user}, {"chosen", answer}, {"rejected", "It is 41."}}.dump() + "\n");
  auto pd = PreferenceDataset::build({pref}, *tok, options(L));
  REQUIRE(pd.size() == 1);
  CHECK(row(pd.chosen_ids(0), L) == expected);
  CHECK(pd.chosen_last(0) == real - 1);
  CHECK(pd.rejected_ids(0)[pd.rejected_last(0)] == eos);
  CHECK(pd.rejected_ids(0)[pd.rejected_last(0) - 1] != eos);
  auto pcfg = tess::config::Config::load_string("run:\n  stage: reward\ndata:\n  seq_len: 48\n", "c.yaml", {}, ".");
  auto pairs = open_examples({pref.string()}, {DataKind::Preferences}, "reward", pcfg, *tok, tok->base_hash(), "train",
                             "data.train");
  auto pb = make_batch(*pairs, {0}, nullptr);
  auto marked = pb.span_mask[0].nonzero().view(-1);
  REQUIRE(marked.numel() == 2);
  CHECK(marked[0].item<int64_t>() == real - 1);
  CHECK(marked[1].item<int64_t>() == L + pd.rejected_last(0));

  SECTION("with a BOS too (SmolLM2: <|im_start|> BOS, <|im_end|> both EOS and PAD)") {
    auto smol = load_tokenizer(fs::path(TESS_TEST_DATA) / "bpe" / "smollm");
    REQUIRE(smol->bos_id() == 1);
    REQUIRE(smol->eos_id() == 2);
    REQUIRE(smol->pad_id() == 2);
    auto sh = hf_encode(fs::path(TESS_TEST_DATA) / "bpe" / "smollm" / "tokenizer.json", {prompt, prompt + answer});
    std::vector<int32_t> with_bos{1};
    with_bos.insert(with_bos.end(), sh[1].begin(), sh[1].end());
    with_bos.push_back(2);
    const auto n = static_cast<int32_t>(with_bos.size());
    with_bos.resize(static_cast<size_t>(L), 2);
    auto sd = ChatDataset::build({file}, *smol, options(L));
    REQUIRE(sd.size() == 1);
    CHECK(row(sd.ids(0), L) == with_bos);
    CHECK(sd.length(0) == n);
    CHECK(sd.prompt_length(0) == static_cast<int32_t>(1 + sh[0].size()));
    for (int64_t i = 0; i < L; ++i) CHECK(sd.span_mask(0)[i] == (i >= sd.prompt_length(0) ? 1 : 0));
    CHECK_THAT(render_sequence(*smol, sd.sequence(0)),
               Contains(fmt::format("<s><|user|>\nWhat is the sum of 12 and 30?\n<|assistant|>\n⟦The sum is "
                                    "42.</s>[PAD]×{}⟧\n", L - n)));
  }
}

TEST_CASE("a tokenizer without EOS cannot build the template, one without BOS can", "[unit][data]") {
  TempDir dir;
  dir.write("no_eos/tokenizer.json", tess::test::read_file(fs::path(TESS_TEST_DATA) / "bpe" / "gpt2" / "tokenizer.json"));
  dir.write("no_eos/tokenizer_config.json", json{{"bos_token", nullptr}, {"eos_token", nullptr}}.dump());
  auto tok = load_tokenizer(dir / "no_eos");
  tok->add_special_token("[PAD]", true);
  REQUIRE(tok->eos_id() == -1);
  auto file = dir.write("a.jsonl", chat_line("Hi.", "Hello.").dump() + "\n");
  CHECK_THAT(error_of([&] { ChatDataset::build({file}, *tok, options(32)); }), Contains("needs a tokenizer with an EOS token"));
  CHECK(ChatDataset::build({file}, *qwen_like_tokenizer(dir, false), options(32)).size() == 1);
}
