#pragma once
// The OpenAI-compatible request/response layer of `tess serve` (docs/serving.md),
// kept free of HTTP and of the model so it is unit-tested on its own: parsing
// and validating request bodies (every rejection names its field), and the
// JSON of responses, stream chunks, denoising-step events and errors.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/chat.h"

namespace tess::serve {

// An HTTP error with OpenAI's error object: {"error": {message, type, param, code}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "",
           std::string type = "");
};
nlohmann::json error_json(const ApiError& e);

enum class Endpoint { Chat, Completion };

// Server-wide defaults and limits a request is checked against.
struct Limits {
  int64_t steps = 100;        // default `steps`
  int64_t max_tokens = 64;    // default `max_tokens`
  double top_p = 0.99;        // default `top_p`
  int64_t max_n = 8;          // `n` at most (--max-batch: a request's choices are decoded together)
  bool guidance = false;      // a reward model is loaded
};

struct Request {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;
  data::ChatPrompt chat;  // Chat
  std::string text;       // Completion: the raw prompt
  int64_t max_tokens = 0;
  double temperature = 1.0;  // 0: greedy (argmax)
  double top_p = 0.99;       // 0: argmax
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int64_t n = 1;
  bool stream = false, stream_steps = false, include_usage = false;
  int64_t steps = 100;
  bool adaptive = false;
  bool freeze = false;  // freeze settled positions (sample.freeze)
  int64_t stable_steps = 2;
  double margin = 0.5;
  double guidance_scale = 0;
  // The sampler's nucleus: argmax when temperature or top_p is 0.
  double sampler_top_p() const { return temperature == 0 ? 0.0 : top_p; }
  double sampler_temperature() const { return temperature == 0 ? 1.0 : temperature; }
};

// Parses and validates a request body (400 naming the field for bad JSON,
// invalid UTF-8, missing/mistyped/out-of-range values and unknown keys).
Request parse_request(Endpoint endpoint, const std::string& body, const Limits& limits);

// One finished choice.
struct Choice {
  std::string text;
  std::string finish_reason;  // "stop" | "length"
  int64_t steps = 0;          // denoising steps it took
  int64_t tokens = 0;         // completion tokens (up to EOS or the stop string)
  int64_t frozen = -1;        // positions frozen (with freeze; -1: not asked)
};

// `text` cut before the first occurrence of any of `stop`; whether it was cut.
bool cut_at_stop(std::string& text, const std::vector<std::string>& stop);

struct ResponseHead {
  std::string id, model;
  int64_t created = 0;
  uint64_t seed = 0;
  int64_t prompt_tokens = 0;
};

// {"prompt_tokens", "completion_tokens", "total_tokens", "steps"}.
nlohmann::json usage_json(const ResponseHead& head, const std::vector<Choice>& choices);
// The non-streamed response (chat.completion / text_completion).
nlohmann::json response_json(Endpoint endpoint, const ResponseHead& head, const std::vector<Choice>& choices);
// The streamed chunks after the steps: the text and finish reason of every
// choice, then the usage chunk when asked for (without the final [DONE]).
std::vector<nlohmann::json> final_chunks(const Request& request, const ResponseHead& head,
                                         const std::vector<Choice>& choices);

// One denoising step of one choice, as a page draws it.
struct ChoiceStep {
  int64_t index = 0;
  std::string text;
  std::vector<std::string> pieces;  // concatenate to text
  std::vector<float> confidence;    // top-1 probability per piece
};
struct StepEvent {
  int64_t step = 0, steps = 0, t = 0;
  std::vector<ChoiceStep> choices;
};
// A chunk with "choices": [] and the extension "tess_step": {step, steps, t, choices}.
nlohmann::json step_chunk(Endpoint endpoint, const ResponseHead& head, const StepEvent& event);

// `Authorization: Bearer KEY` check, constant time in the key's length.
bool authorized(const std::string& header, const std::string& api_key);

}  // namespace tess::serve
