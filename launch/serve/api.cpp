#include "launch/serve/api.h"

#include <cmath>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/diffusion/sampler.h"

namespace tess::serve {

using nlohmann::json;

ApiError::ApiError(int s, const std::string& message, std::string p, std::string c, std::string t)
    : std::runtime_error(message), status(s), type(std::move(t)), param(std::move(p)), code(std::move(c)) {
  if (type.empty())
    type = status == 401   ? "authentication_error"
           : status == 429 ? "rate_limit_error"
           : status >= 500 ? "server_error"
                           : "invalid_request_error";
}

json error_json(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  return {{"error", err}};
}

namespace {

ApiError bad(const std::string& param, const std::string& message) { return ApiError(400, message, param); }

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

// Typed, range-checked reads of one body field.
class Fields {
 public:
  explicit Fields(const json& body) : body_(body) {}
  bool has(const char* key) const { return body_.contains(key) && !body_.at(key).is_null(); }
  const json& at(const char* key) const { return body_.at(key); }

  int64_t integer(const char* key, int64_t fallback, int64_t lo, int64_t hi) const {
    if (!has(key)) return fallback;
    const auto& v = at(key);
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
      throw bad(key, fmt::format("'{}' must be an integer, got {}", key, type_name(v)));
    auto x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX
             : v.is_number_float()                                                         ? static_cast<int64_t>(v.get<double>())
                                                                                           : v.get<int64_t>();
    if (x < lo || x > hi) throw bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x));
    return x;
  }
  double number(const char* key, double fallback, double lo, double hi) const {
    if (!has(key)) return fallback;
    const auto& v = at(key);
    if (!v.is_number()) throw bad(key, fmt::format("'{}' must be a number, got {}", key, type_name(v)));
    double x = v.get<double>();
    if (!(x >= lo && x <= hi)) throw bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x));
    return x;
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!at(key).is_boolean()) throw bad(key, fmt::format("'{}' must be true or false, got {}", key, type_name(at(key))));
    return at(key).get<bool>();
  }
  std::string string(const char* key) const {
    if (!has(key)) throw bad(key, fmt::format("'{}' is required", key));
    if (!at(key).is_string()) throw bad(key, fmt::format("'{}' must be a string, got {}", key, type_name(at(key))));
    return at(key).get<std::string>();
  }

 private:
  const json& body_;
};

const std::set<std::string>& known_keys(Endpoint endpoint) {
  static const std::set<std::string> chat = {
      "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n",
      "stream", "stream_options", "user", "steps", "adaptive", "freeze", "stable_steps", "margin",
      "guidance_scale", "stream_steps"};
  static const std::set<std::string> completion = [] {
    auto s = chat;
    s.erase("messages");
    s.erase("max_completion_tokens");
    s.insert("prompt");
    return s;
  }();
  return endpoint == Endpoint::Chat ? chat : completion;
}

data::ChatPrompt parse_messages(const json& messages) {
  if (!messages.is_array() || messages.empty())
    throw bad("messages", "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
  data::ChatPrompt p;
  std::string pending_user;
  bool have_user = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    auto where = fmt::format("messages[{}]", i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw bad(where, fmt::format("{} must be an object with a string 'role'", where));
    auto role = m["role"].get<std::string>();
    if (!m.contains("content") || !m["content"].is_string())
      throw bad(where + ".content", fmt::format("{}.content must be a string (text only)", where));
    auto content = m["content"].get<std::string>();
    if (role == "system") {
      if (i != 0) throw bad(where, fmt::format("{}: a system message may only come first", where));
      p.system = content;
    } else if (role == "user") {
      if (have_user) throw bad(where, fmt::format("{}: two user messages in a row (expected user/assistant turns)", where));
      pending_user = content;
      have_user = true;
    } else if (role == "assistant") {
      if (!have_user) throw bad(where, fmt::format("{}: an assistant message must follow a user message", where));
      p.history.emplace_back(pending_user, content);
      have_user = false;
    } else {
      throw bad(where, fmt::format("{}: role '{}' (expected system, user or assistant)", where, role));
    }
  }
  if (!have_user) throw bad("messages", "the last message must be from the user (the model answers it)");
  if (pending_user.empty()) throw bad("messages", "the last user message is empty");
  p.user = pending_user;
  return p;
}

}  // namespace

Request parse_request(Endpoint endpoint, const std::string& body, const Limits& limits) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON (UTF-8): {}", e.what()));
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  const auto& known = known_keys(endpoint);
  for (const auto& [key, value] : j.items())
    if (!known.count(key)) throw bad(key, fmt::format("Unrecognized request argument supplied: {}", key));
  Fields f(j);
  Request r;
  r.endpoint = endpoint;
  r.model = f.string("model");
  if (endpoint == Endpoint::Chat) {
    if (!f.has("messages")) throw bad("messages", "'messages' is required");
    r.chat = parse_messages(f.at("messages"));
  } else {
    if (!f.has("prompt")) throw bad("prompt", "'prompt' is required");
    const auto& p = f.at("prompt");
    if (p.is_array() && p.size() == 1 && p[0].is_string())
      r.text = p[0].get<std::string>();
    else if (p.is_string())
      r.text = p.get<std::string>();
    else
      throw bad("prompt", "'prompt' must be a string (or a list of exactly one string)");
    if (r.text.empty()) throw bad("prompt", "'prompt' is empty");
  }
  const int64_t max_span = 1 << 20;
  r.max_tokens = f.integer("max_tokens", limits.max_tokens, 1, max_span);
  if (f.has("max_completion_tokens")) r.max_tokens = f.integer("max_completion_tokens", r.max_tokens, 1, max_span);
  r.temperature = f.number("temperature", 1.0, 0.0, 2.0);
  r.top_p = f.number("top_p", limits.top_p, 0.0, 1.0);
  if (f.has("seed")) r.seed = static_cast<uint64_t>(f.integer("seed", 0, 0, INT64_MAX));
  if (f.has("stop")) {
    const auto& s = f.at("stop");
    if (s.is_string()) {
      r.stop = {s.get<std::string>()};
    } else if (s.is_array() && s.size() <= 4 && std::all_of(s.begin(), s.end(), [](const json& x) { return x.is_string(); })) {
      for (const auto& x : s) r.stop.push_back(x.get<std::string>());
    } else {
      throw bad("stop", "'stop' must be a string or a list of at most 4 strings");
    }
    r.stop.erase(std::remove(r.stop.begin(), r.stop.end(), std::string()), r.stop.end());
  }
  r.n = f.integer("n", 1, 1, limits.max_n);
  r.stream = f.boolean("stream", false);
  if (f.has("stream_options")) {
    const auto& o = f.at("stream_options");
    if (!o.is_object()) throw bad("stream_options", "'stream_options' must be an object");
    for (const auto& [key, value] : o.items())
      if (key != "include_usage")
        throw bad("stream_options." + key, fmt::format("Unrecognized stream option: {}", key));
    if (o.contains("include_usage")) {
      if (!o["include_usage"].is_boolean()) throw bad("stream_options.include_usage", "'include_usage' must be a boolean");
      r.include_usage = o["include_usage"].get<bool>();
    }
    if (!r.stream) throw bad("stream_options", "'stream_options' needs 'stream': true");
  }
  if (f.has("user") && !f.at("user").is_string()) throw bad("user", "'user' must be a string");
  r.steps = f.integer("steps", limits.steps, 1, diffusion::kMaxSamplingSteps);
  r.adaptive = f.boolean("adaptive", false);
  r.freeze = f.boolean("freeze", false);
  r.stable_steps = f.integer("stable_steps", 2, 1, diffusion::kMaxSamplingSteps);
  r.margin = f.number("margin", 0.5, 0.0, 1.0);
  if (!r.adaptive && !r.freeze && (f.has("stable_steps") || f.has("margin")))
    throw bad(f.has("stable_steps") ? "stable_steps" : "margin",
              "'stable_steps' and 'margin' need 'adaptive': true or 'freeze': true");
  r.guidance_scale = f.number("guidance_scale", 0.0, 0.0, 1e6);
  if (r.guidance_scale > 0 && !limits.guidance)
    throw bad("guidance_scale", "'guidance_scale' > 0 needs a reward model: start the server with --reward-model DIR");
  r.stream_steps = f.boolean("stream_steps", false);
  if (r.stream_steps && !r.stream) throw bad("stream_steps", "'stream_steps' needs 'stream': true");
  return r;
}

bool cut_at_stop(std::string& text, const std::vector<std::string>& stop) {
  size_t at = std::string::npos;
  for (const auto& s : stop)
    if (!s.empty()) at = std::min(at, text.find(s));
  if (at == std::string::npos) return false;
  text.resize(at);
  return true;
}

json usage_json(const ResponseHead& head, const std::vector<Choice>& choices) {
  int64_t completion = 0, steps = 0;
  for (const auto& c : choices) completion += c.tokens, steps += c.steps;
  return {{"prompt_tokens", head.prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", head.prompt_tokens + completion},
          {"steps", steps}};
}

namespace {

json chunk_head(Endpoint endpoint, const ResponseHead& head) {
  return {{"id", head.id},
          {"object", endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
          {"created", head.created},
          {"model", head.model}};
}

}  // namespace

json response_json(Endpoint endpoint, const ResponseHead& head, const std::vector<Choice>& choices) {
  json out = {{"id", head.id},
              {"object", endpoint == Endpoint::Chat ? "chat.completion" : "text_completion"},
              {"created", head.created},
              {"model", head.model}};
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    json choice = {{"index", i}, {"finish_reason", c.finish_reason}, {"steps", c.steps}};
    if (c.frozen >= 0) choice["frozen"] = c.frozen;
    if (endpoint == Endpoint::Chat)
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = c.text, choice["logprobs"] = nullptr;
    list.push_back(choice);
  }
  out["choices"] = list;
  out["usage"] = usage_json(head, choices);
  out["seed"] = head.seed;
  return out;
}

std::vector<json> final_chunks(const Request& request, const ResponseHead& head, const std::vector<Choice>& choices) {
  std::vector<json> out;
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    auto chunk = chunk_head(request.endpoint, head);
    if (request.endpoint == Endpoint::Chat) {
      chunk["choices"] = {{{"index", i}, {"delta", {{"role", "assistant"}, {"content", c.text}}}, {"finish_reason", nullptr}}};
      out.push_back(chunk);
      chunk["choices"] = {{{"index", i}, {"delta", json::object()}, {"finish_reason", c.finish_reason}}};
    } else {
      chunk["choices"] = {{{"index", i}, {"text", c.text}, {"finish_reason", c.finish_reason}, {"logprobs", nullptr}}};
    }
    out.push_back(chunk);
  }
  if (request.include_usage) {
    auto chunk = chunk_head(request.endpoint, head);
    chunk["choices"] = json::array();
    chunk["usage"] = usage_json(head, choices);
    out.push_back(chunk);
  }
  return out;
}

json step_chunk(Endpoint endpoint, const ResponseHead& head, const StepEvent& event) {
  auto chunk = chunk_head(endpoint, head);
  chunk["choices"] = json::array();
  json list = json::array();
  for (const auto& c : event.choices) {
    json conf = json::array();
    for (float x : c.confidence) conf.push_back(std::round(static_cast<double>(x) * 1e4) / 1e4);
    list.push_back({{"index", c.index}, {"text", c.text}, {"pieces", c.pieces}, {"confidence", conf}});
  }
  chunk["tess_step"] = {{"step", event.step}, {"steps", event.steps}, {"t", event.t}, {"choices", list}};
  return chunk;
}

bool authorized(const std::string& header, const std::string& api_key) {
  const std::string prefix = "Bearer ";
  std::string given = header.compare(0, prefix.size(), prefix) == 0 ? header.substr(prefix.size()) : std::string();
  // Every byte of the key is compared whatever the input, so the time says nothing about how much matched.
  unsigned char diff = given.size() == api_key.size() ? 0 : 1;
  for (size_t i = 0; i < api_key.size(); ++i)
    diff |= static_cast<unsigned char>(api_key[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0 && !api_key.empty();
}

}  // namespace tess::serve
