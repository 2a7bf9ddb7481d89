// The request/response layer of `tess serve`: what is accepted, what is
// refused and how the refusal names the field, and the JSON clients parse.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "launch/serve/api.h"
#include "launch/serve/metrics.h"

using namespace tess::serve;
using nlohmann::json;

namespace {

Limits limits() {
  Limits l;
  l.steps = 50;
  l.max_tokens = 32;
  l.top_p = 0.9;
  l.max_n = 4;
  return l;
}

// The ApiError a body raises (fails the test when it is accepted).
ApiError refusal(Endpoint endpoint, const std::string& body, const Limits& l = limits()) {
  try {
    parse_request(endpoint, body, l);
  } catch (const ApiError& e) {
    return e;
  }
  FAIL("accepted: " << body);
  return ApiError(0, "");
}

const std::string chat_head = R"("model": "m", "messages": [{"role": "user", "content": "hi"}])";

}  // namespace

TEST_CASE("a chat request takes the server's defaults and its own settings", "[unit][serve]") {
  auto r = parse_request(Endpoint::Chat, "{" + chat_head + "}", limits());
  CHECK(r.model == "m");
  CHECK(r.chat.user == "hi");
  CHECK(r.max_tokens == 32);
  CHECK(r.steps == 50);
  CHECK(r.top_p == 0.9);
  CHECK(r.n == 1);
  CHECK_FALSE(r.seed);
  CHECK_FALSE(r.stream);
  r = parse_request(Endpoint::Chat,
                    R"({"model": "m", "messages": [{"role": "system", "content": "be brief"},
                       {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}], "max_tokens": 7, "steps": 12, "seed": 5, "n": 2,
                       "top_p": 0.5, "temperature": 0.7, "stop": ["x", "yz"], "stream": true, "stream_steps": true,
                       "stream_options": {"include_usage": true}, "adaptive": true, "stable_steps": 3,
                       "margin": 0.25, "user": "u1"})",
                    limits());
  CHECK(r.chat.system == "be brief");
  REQUIRE(r.chat.history.size() == 1);
  CHECK(r.chat.history[0] == std::pair<std::string, std::string>{"a", "b"});
  CHECK(r.chat.user == "c");
  CHECK(r.max_tokens == 7);
  CHECK(r.steps == 12);
  CHECK(*r.seed == 5);
  CHECK(r.n == 2);
  CHECK(r.sampler_top_p() == 0.5);
  CHECK(r.sampler_temperature() == 0.7);
  CHECK(r.stop == std::vector<std::string>{"x", "yz"});
  CHECK((r.stream && r.stream_steps && r.include_usage && r.adaptive));
  CHECK(r.stable_steps == 3);
  CHECK(r.margin == 0.25);
  r = parse_request(Endpoint::Chat, "{" + chat_head + R"(, "freeze": true, "margin": 0})", limits());
  CHECK((r.freeze && !r.adaptive && r.margin == 0));
}

TEST_CASE("temperature 0 is greedy decoding: the sampler's argmax", "[unit][serve]") {
  auto r = parse_request(Endpoint::Chat, "{" + chat_head + R"(, "temperature": 0})", limits());
  CHECK(r.sampler_top_p() == 0);
  CHECK(r.sampler_temperature() == 1);
}

TEST_CASE("a completion request takes a raw prompt, a string or a list of one", "[unit][serve]") {
  CHECK(parse_request(Endpoint::Completion, R"({"model": "m", "prompt": "once upon"})", limits()).text == "once upon");
  CHECK(parse_request(Endpoint::Completion, R"({"model": "m", "prompt": ["once"]})", limits()).text == "once");
  CHECK(refusal(Endpoint::Completion, R"({"model": "m", "prompt": ["a", "b"]})").param == "prompt");
  CHECK(refusal(Endpoint::Completion, R"({"model": "m", "messages": []})").param == "messages");
}

TEST_CASE("every bad request is a 400 that names its field", "[unit][serve]") {
  struct Case {
    std::string body, param, says;
  };
  std::vector<Case> cases = {
      {"{" + chat_head + R"(, "max_tokens": -1})", "max_tokens", "between 1 and"},
      {"{" + chat_head + R"(, "max_tokens": 0})", "max_tokens", "between 1 and"},
      {"{" + chat_head + R"(, "max_tokens": 2.5})", "max_tokens", "must be an integer"},
      {"{" + chat_head + R"(, "temperature": "hot"})", "temperature", "must be a number, got a string"},
      {"{" + chat_head + R"(, "temperature": 3})", "temperature", "between 0 and 2"},
      {"{" + chat_head + R"(, "top_p": 1.5})", "top_p", "between 0 and 1"},
      {"{" + chat_head + R"(, "n": 5})", "n", "between 1 and 4"},
      {"{" + chat_head + R"(, "steps": 0})", "steps", "between 1 and"},
      {"{" + chat_head + R"(, "seed": -3})", "seed", "between 0 and"},
      {"{" + chat_head + R"(, "stop": [1]})", "stop", "at most 4 strings"},
      {"{" + chat_head + R"(, "stream": "yes"})", "stream", "true or false"},
      {"{" + chat_head + R"(, "stream_steps": true})", "stream_steps", "needs 'stream': true"},
      {"{" + chat_head + R"(, "margin": 0.3})", "margin", "need 'adaptive': true or 'freeze': true"},
      {"{" + chat_head + R"(, "adaptive": true, "margin": 2})", "margin", "between 0 and 1"},
      {"{" + chat_head + R"(, "guidance_scale": 1})", "guidance_scale", "--reward-model"},
      {"{" + chat_head + R"(, "frequency_penalty": 0.5})", "frequency_penalty", "Unrecognized request argument"},
      {"{" + chat_head + R"(, "stream": true, "stream_options": {"x": 1}})", "stream_options.x", "Unrecognized"},
      {R"({"messages": [{"role": "user", "content": "hi"}]})", "model", "'model' is required"},
      {R"({"model": "m"})", "messages", "'messages' is required"},
      {R"({"model": "m", "messages": [{"role": "assistant", "content": "hi"}]})", "messages[0]", "must follow a user"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})",
       "messages", "last message must be from the user"},
      {R"({"model": "m", "messages": [{"role": "user", "content": 3}]})", "messages[0].content", "must be a string"},
      {R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})", "messages[0]", "role 'tool'"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
          {"role": "user", "content": "b"}]})", "messages[1]", "may only come first"},
  };
  for (const auto& c : cases) {
    INFO(c.body);
    auto e = refusal(Endpoint::Chat, c.body);
    CHECK(e.status == 400);
    CHECK(e.type == "invalid_request_error");
    CHECK(e.param == c.param);
    CHECK_THAT(std::string(e.what()), Catch::Contains(c.says));
  }
}

TEST_CASE("a body that is not JSON, not an object or not UTF-8 is a 400 saying so", "[unit][serve]") {
  for (std::string body : {std::string("{\"model\": "), std::string("[1, 2]"),
                           std::string("{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}")}) {
    INFO(body);
    auto e = refusal(Endpoint::Chat, body);
    CHECK(e.status == 400);
    CHECK(e.param.empty());
  }
  CHECK_THAT(std::string(refusal(Endpoint::Chat, "{\"a\": \"\xc3\"}").what()), Catch::Contains("UTF-8"));
}

TEST_CASE("guidance_scale is accepted when the server has a reward model", "[unit][serve]") {
  auto l = limits();
  l.guidance = true;
  CHECK(parse_request(Endpoint::Chat, "{" + chat_head + R"(, "guidance_scale": 2.5})", l).guidance_scale == 2.5);
}

TEST_CASE("stop strings cut the text before their first occurrence", "[unit][serve]") {
  std::string text = "one. two! three.";
  CHECK(cut_at_stop(text, {"!", "three"}));
  CHECK(text == "one. two");
  text = "abc";
  CHECK_FALSE(cut_at_stop(text, {"x"}));
  CHECK(text == "abc");
}

TEST_CASE("responses, stream chunks and step events have OpenAI's shape", "[unit][serve]") {
  ResponseHead head{"chatcmpl-1", "m", 1700000000, 42, 9};
  std::vector<Choice> choices = {{"hello", "stop", 8, 2, 5}, {"hi there", "length", 8, 3}};
  auto r = response_json(Endpoint::Chat, head, choices);
  CHECK(r["object"] == "chat.completion");
  CHECK(r["choices"][1]["message"]["content"] == "hi there");
  CHECK(r["choices"][1]["index"] == 1);
  CHECK(r["choices"][0]["finish_reason"] == "stop");
  CHECK(r["usage"] == json({{"prompt_tokens", 9}, {"completion_tokens", 5}, {"total_tokens", 14}, {"steps", 16}}));
  CHECK(r["seed"] == 42);
  CHECK(r["choices"][0]["frozen"] == 5);  // asked for: reported
  CHECK_FALSE(r["choices"][1].contains("frozen"));
  auto c = response_json(Endpoint::Completion, head, choices);
  CHECK(c["object"] == "text_completion");
  CHECK(c["choices"][0]["text"] == "hello");
  CHECK(c["choices"][0]["logprobs"].is_null());

  Request req;
  req.endpoint = Endpoint::Chat;
  req.include_usage = true;
  auto chunks = final_chunks(req, head, choices);
  REQUIRE(chunks.size() == 5);  // (content, finish) per choice, then usage
  CHECK(chunks[0]["object"] == "chat.completion.chunk");
  CHECK(chunks[0]["choices"][0]["delta"]["content"] == "hello");
  CHECK(chunks[1]["choices"][0]["finish_reason"] == "stop");
  CHECK(chunks[3]["choices"][0]["index"] == 1);
  CHECK(chunks[4]["usage"]["completion_tokens"] == 5);
  CHECK(chunks[4]["choices"].empty());

  StepEvent e{3, 8, 5, {{0, "ab", {"a", "b"}, {0.5f, 0.25f}}}};
  auto s = step_chunk(Endpoint::Chat, head, e);
  CHECK(s["choices"].empty());
  CHECK(s["tess_step"]["step"] == 3);
  CHECK(s["tess_step"]["choices"][0]["pieces"] == json({"a", "b"}));
  CHECK(s["tess_step"]["choices"][0]["confidence"] == json({0.5, 0.25}));

  auto err = error_json(ApiError(429, "busy", "", "rate_limit_exceeded"));
  CHECK(err["error"]["type"] == "rate_limit_error");
  CHECK(err["error"]["param"].is_null());
  CHECK(err["error"]["code"] == "rate_limit_exceeded");
}

TEST_CASE("the API key must match exactly, as a Bearer token", "[unit][serve]") {
  CHECK(authorized("Bearer secret", "secret"));
  CHECK_FALSE(authorized("Bearer secre", "secret"));
  CHECK_FALSE(authorized("Bearer secrets", "secret"));
  CHECK_FALSE(authorized("secret", "secret"));
  CHECK_FALSE(authorized("Bearer ", "secret"));
  CHECK_FALSE(authorized("", "secret"));
}

TEST_CASE("metrics: request counts by endpoint and status, cumulative histograms, Prometheus text", "[unit][serve]") {
  Metrics m;
  m.request("/v1/chat/completions", 200);
  m.request("/v1/chat/completions", 200);
  m.request("/v1/chat/completions", 429);
  m.finished(0.3, 8, 5);
  m.finished(3.0, 16, 7);
  m.step(0.5, 4);
  m.step(0.5, 2);
  auto t = m.text(3, 1);
  CHECK_THAT(t, Catch::Contains("tess_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2\n"));
  CHECK_THAT(t, Catch::Contains("tess_requests_total{endpoint=\"/v1/chat/completions\",status=\"429\"} 1\n"));
  CHECK_THAT(t, Catch::Contains("tess_queue_length 1\n"));
  CHECK_THAT(t, Catch::Contains("tess_batch_rows 3\n"));
  CHECK_THAT(t, Catch::Contains("tess_completion_tokens_total 12\n"));
  CHECK_THAT(t, Catch::Contains("tess_tokens_per_second 12\n"));  // 12 tokens in 1 busy second
  CHECK_THAT(t, Catch::Contains("tess_mean_batch_rows 3\n"));
  // Buckets are cumulative: 0.3 s is in le=0.5 and above, 3 s from le=5 on.
  CHECK_THAT(t, Catch::Contains("tess_request_latency_seconds_bucket{le=\"0.25\"} 0\n"));
  CHECK_THAT(t, Catch::Contains("tess_request_latency_seconds_bucket{le=\"0.5\"} 1\n"));
  CHECK_THAT(t, Catch::Contains("tess_request_latency_seconds_bucket{le=\"5\"} 2\n"));
  CHECK_THAT(t, Catch::Contains("tess_request_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
  CHECK_THAT(t, Catch::Contains("tess_request_latency_seconds_count 2\n"));
  CHECK_THAT(t, Catch::Contains("tess_request_steps_sum 24\n"));
}
