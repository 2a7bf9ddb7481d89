#pragma once
// Chat data for stage 2 (instruction tuning), preference pairs for the reward
// model and held-out evaluation records, all in the Tulu template of the
// reference (docs/method.md section 6, docs/data.md):
//
//   <s><|user|>\n{user}\n<|assistant|>\n{assistant}</s>[PAD]...[PAD]
//
// <s>, </s> and [PAD] are the tokenizer's BOS/EOS/PAD ids (never text); the
// markers are plain text. span_mask is 1 on the response, its </s> and the
// trailing PADs, 0 on <s> and the prompt.
//
// A tokenizer without BOS (bos_id() < 0, e.g. Qwen2.5) has no <s>: every
// sequence starts with the prompt text's own tokens, as HF's Qwen2 chat data
// does; "[BOS] +" below is then nothing. EOS is required (it ends the answer),
// and so is PAD (the trainer adds [PAD] when the tokenizer has none). PAD may
// be EOS's id (Qwen2.5's <|endoftext|>): length, prompt_length and span_mask
// go by position, never by id, so the padded tail and the answer's </s> then
// share the id and nothing else changes.
//
// Tokenization, precisely. With P = prompt_text(prompt) (which always ends in
// "<|assistant|>\n") and A the response:
//   prompt ids   = [BOS] + encode(P)            (exactly encode_prompt())
//   response ids = R, the tokens of A as a continuation of P: encode(P + A)
//                  without its first |encode(P)| tokens when those equal
//                  encode(P) (always so for Llama/Mistral SentencePiece
//                  models, whose pieces never contain "\n"); otherwise, if a
//                  piece would straddle the boundary, encode(A) on its own.
//   sequence     = [BOS] + encode(P) + R + [EOS] + [PAD] * (L - length)
// So the prompt/response boundary is exact, the prompt part of a training
// sequence is exactly what encode_prompt() gives at generation time, and the
// ids are those of tokenizing "<s>" + P + A + "</s>" in one go, as the
// reference does (with SentencePiece's dummy prefix space at the start of P,
// the legacy Llama/Mistral behaviour after <s>). Message contents are
// stripped of leading/trailing whitespace first, as the reference does.
// R is computed once, from the untruncated prompt.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/config/choices.h"
#include "data/jsonl.h"

namespace at {
class Tensor;
}
namespace tess::config {
class Config;
}

namespace tess::data {

class Tokenizer;

using config::ChatTurns;      // data.chat.turns
using config::TooLongPolicy;  // data.chat.too_long

struct ChatOptions {
  int64_t seq_len = 512;  // L
  // First: the first user message and the assistant answer right after it.
  // All: every earlier user/assistant pair as clean context, the LAST
  // assistant answer as the span.
  ChatTurns turns = ChatTurns::First;
  // Render a leading system message as "<|system|>\n{system}\n" before the
  // first user turn. When false (the reference), it is left out and counted.
  bool system_message = false;
  TooLongPolicy too_long = TooLongPolicy::TruncatePrompt;
  bool skip_bad = false;  // data.skip_bad_records
  bool progress = true;   // progress bar while building a dataset

  // data.seq_len, data.chat.turns, data.chat.system_message,
  // data.chat.too_long, data.skip_bad_records.
  static ChatOptions from_config(const config::Config& config);
};

// What the template renders in front of the span.
struct ChatPrompt {
  std::string system;  // empty: no system block
  std::vector<std::pair<std::string, std::string>> history;  // earlier (user, assistant) turns, oldest first
  std::string user;    // the user message the span answers
};

// "<|system|>\n{system}\n" (when system is not empty), then per earlier turn
// "<|user|>\n{u}\n<|assistant|>\n{a}\n", then "<|user|>\n{user}\n<|assistant|>\n".
std::string prompt_text(const ChatPrompt& prompt);
// [BOS] + encode(prompt_text(prompt)) (no BOS when the tokenizer has none):
// the prompt-only part, for generation.
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const ChatPrompt& prompt);
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& user);
// R: the tokens of `response` as a continuation of `prompt_text` (see above).
std::vector<int32_t> encode_response(const Tokenizer& tok, const std::string& prompt_text,
                                     const std::string& response);

// One conversation as read from JSONL.
struct ChatRecord {
  ChatPrompt prompt;
  std::string response;          // the assistant answer that becomes the span
  std::string task;              // optional "task" field (synthetic data, evaluation)
  bool system_left_out = false;  // had a system message that options.system_message excluded
};

// Parses a record of either format:
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
//   {"prompt": "...", "completion": "..."}
// (other fields are ignored; "task" is kept). Rules: an optional system
// message only first; then roles alternate user, assistant, user, ...; at
// least one assistant message; contents are strings, and the used ones are
// not empty after stripping. Messages after the answer used as the span are
// ignored. Throws RecordError (read_jsonl adds file:line).
ChatRecord parse_chat_record(const nlohmann::json& record, const ChatOptions& options);

// One tokenized example of length L.
struct ChatSequence {
  std::vector<int32_t> ids;        // L ids
  std::vector<uint8_t> span_mask;  // L: 1 on response + </s> + PADs
  int32_t prompt_length = 0;       // [<s>] + prompt tokens; the span starts here
  int32_t length = 0;              // real tokens: [<s>] .. </s> inclusive (index of </s> = length - 1; truncate_right may cut </s>)
                                   // PADs from here on, whatever their id (PAD may be EOS's)
};

enum class EncodeStatus {
  Ok,
  Truncated,              // cut to fit: the sequence at L (truncate_right) or the prompt (truncate_prompt)
  DroppedTooLong,         // too long and the policy is drop
  DroppedResponseTooLong  // does not fit even with the minimal prompt (markers only)
};
const char* status_name(EncodeStatus status);

// Encodes a prompt with one or more responses (preference pairs share the
// prompt). Too long = [1] + |encode(P)| + |R| + 1 > L for some response (the
// leading 1 only with a BOS). With
// truncate_right (the reference's open-instruct encoding) each sequence
// <s> P R </s> is cut at L, so the response loses its end and its </s>; a
// prompt that leaves no response token is dropped (DroppedTooLong). With
// truncate_prompt the prompt is shortened from the left, markers kept:
// earlier turns are removed whole (oldest first), then the user text is cut
// from its start (at the smallest code-point offset that fits, moved forward
// to the next word start when that still fits), then the system text the same
// way. Drop (or a response longer than L minus the minimal prompt, i.e. the
// template with empty texts) returns no sequences.
struct EncodeResult {
  EncodeStatus status = EncodeStatus::Ok;
  std::vector<ChatSequence> sequences;  // one per response; empty when dropped
  ChatPrompt prompt;                    // the prompt actually used (after truncation)
};
EncodeResult encode_chat(const Tokenizer& tok, const ChatPrompt& prompt,
                         const std::vector<std::string>& responses, const ChatOptions& options);

// Human-readable view of a sequence for debugging templates: the text with the
// span between ⟦ ⟧ and the PAD run compressed ("[PAD]×12"), then the pieces
// the same way. Positions from seq.length on are shown as [PAD] (by
// position, so a PAD that shares EOS's id is still told from the </s>).
std::string render_sequence(const Tokenizer& tok, const ChatSequence& seq);

// What building a dataset did. Nothing is dropped without being counted here.
struct ChatReport {
  int64_t records = 0;          // well-formed records read
  int64_t examples = 0;         // kept (including truncated)
  int64_t truncated = 0;
  int64_t dropped_too_long = 0;            // policy drop
  int64_t dropped_response_too_long = 0;   // response does not fit L with the minimal prompt
  int64_t system_left_out = 0;             // system messages not rendered (data.chat.system_message false)
  int64_t bad_lines = 0;                   // skipped with skip_bad
  std::vector<std::string> first_bad;      // "file:line: problem", the first few
  int64_t real_tokens = 0;      // <s> .. </s> over kept sequences
  int64_t span_tokens = 0;      // span_mask = 1 (response + </s> + PAD)
  int64_t pad_tokens = 0;
  std::string summary() const;  // one line
  void add_bad(const std::filesystem::path& file, const JsonlReport& report);
};

// Tokenized chat examples, built once at load time (with a progress bar),
// stored contiguously: ids and span masks row-major [N, L].
class ChatDataset {
 public:
  // Reads every file in order; throws tess::Error (file:line) on a bad record
  // unless options.skip_bad. Logs report().summary().
  static ChatDataset build(const std::vector<std::filesystem::path>& files, const Tokenizer& tok,
                           const ChatOptions& options);

  int64_t size() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t seq_len() const { return seq_len_; }
  const int32_t* ids(int64_t i) const { return ids_.data() + i * seq_len_; }
  const uint8_t* span_mask(int64_t i) const { return span_.data() + i * seq_len_; }
  int32_t length(int64_t i) const { return lengths_[static_cast<size_t>(i)]; }
  int32_t prompt_length(int64_t i) const { return prompt_lengths_[static_cast<size_t>(i)]; }
  const std::string& task(int64_t i) const { return tasks_[static_cast<size_t>(i)]; }
  ChatSequence sequence(int64_t i) const;

  const std::vector<int32_t>& all_ids() const { return ids_; }          // [N * L]
  const std::vector<uint8_t>& all_span_masks() const { return span_; }  // [N * L], 0/1
  const std::vector<int32_t>& lengths() const { return lengths_; }      // [N]
  // Views without copies, valid while the dataset lives: int32 [N, L],
  // bool [N, L], int32 [N].
  at::Tensor ids_tensor() const;
  at::Tensor span_mask_tensor() const;
  at::Tensor lengths_tensor() const;

  const ChatReport& report() const { return report_; }

 private:
  int64_t seq_len_ = 0;
  std::vector<int32_t> ids_;
  std::vector<uint8_t> span_;
  std::vector<int32_t> lengths_;
  std::vector<int32_t> prompt_lengths_;
  std::vector<std::string> tasks_;
  ChatReport report_;
};

// ---- preference pairs (reward model) -------------------------------------------

// {"prompt": "...", "chosen": "...", "rejected": "..."}; chosen/rejected may
// also be message lists (UltraFeedback style), whose last assistant message is
// the response. Optional "task".
struct PreferenceRecord {
  ChatPrompt prompt;  // prompt -> user
  std::string chosen;
  std::string rejected;
  std::string task;
};
PreferenceRecord parse_preference_record(const nlohmann::json& record);

// Each example: two sequences of length L with the same template and prompt
// (the prompt as user, chosen/rejected as the answer), and the index of the
// last real token of each (its </s>), where the reward is read. A too-long
// pair is truncated/dropped as a unit (the longer response decides).
class PreferenceDataset {
 public:
  static PreferenceDataset build(const std::vector<std::filesystem::path>& files, const Tokenizer& tok,
                                 const ChatOptions& options);

  int64_t size() const { return static_cast<int64_t>(chosen_last_.size()); }
  int64_t seq_len() const { return seq_len_; }
  const int32_t* chosen_ids(int64_t i) const { return chosen_.data() + i * seq_len_; }
  const int32_t* rejected_ids(int64_t i) const { return rejected_.data() + i * seq_len_; }
  int32_t chosen_last(int64_t i) const { return chosen_last_[static_cast<size_t>(i)]; }
  int32_t rejected_last(int64_t i) const { return rejected_last_[static_cast<size_t>(i)]; }
  int32_t prompt_length(int64_t i) const { return prompt_lengths_[static_cast<size_t>(i)]; }

  const std::vector<int32_t>& all_chosen() const { return chosen_; }      // [N * L]
  const std::vector<int32_t>& all_rejected() const { return rejected_; }  // [N * L]
  // Views without copies: int32 [N, L] and int32 [N] (last real token index).
  at::Tensor chosen_tensor() const;
  at::Tensor rejected_tensor() const;
  at::Tensor chosen_last_tensor() const;
  at::Tensor rejected_last_tensor() const;

  const ChatReport& report() const { return report_; }  // examples count pairs

 private:
  int64_t seq_len_ = 0;
  std::vector<int32_t> chosen_, rejected_;
  std::vector<int32_t> chosen_last_, rejected_last_, prompt_lengths_;
  ChatReport report_;
};

// ---- held-out evaluation records ------------------------------------------------

// {"prompt": "...", "answer": "..."} (or "completion" for the answer), or a
// chat record in the messages format whose span answer is the reference.
// Optional "task" (evaluation reports per task).
struct EvalRecord {
  ChatPrompt prompt;
  std::string reference;
  std::string task;
  int64_t line = 0;
  // Multiple choice: "choices": [...] with "answer" the index of the right
  // one or its text (then `reference` is that choice's text).
  std::vector<std::string> choices;
  int64_t choice_answer = -1;
};
// Reads a file of evaluation records (same rules and errors as chat data;
// skipped lines are counted in `report` when given).
std::vector<EvalRecord> read_eval_records(const std::filesystem::path& file, const ChatOptions& options,
                                          JsonlReport* report = nullptr);

}  // namespace tess::data
