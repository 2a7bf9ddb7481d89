#include "data/chat.h"

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <functional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include "core/config/config.h"
#include "core/util/error.h"
#include "core/util/progress.h"
#include "data/tokenizer.h"

namespace tess::data {
namespace fs = std::filesystem;

namespace {

constexpr size_t kFirstBad = 5;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && is_space(s[a])) ++a;
  while (b > a && is_space(s[b - 1])) --b;
  return s.substr(a, b - a);
}

// A string field of a record, or RecordError.
std::string string_field(const nlohmann::json& record, const char* name, bool required) {
  auto it = record.find(name);
  if (it == record.end()) {
    if (required) throw RecordError(fmt::format("missing field '{}'", name));
    return {};
  }
  if (!it->is_string()) throw RecordError(fmt::format("field '{}' must be a string, got {}", name, it->type_name()));
  return it->get<std::string>();
}

std::string non_empty(const std::string& text, const std::string& what) {
  std::string s = strip(text);
  if (s.empty()) throw RecordError(fmt::format("{} is empty", what));
  return s;
}

enum class Role { System, User, Assistant };

struct Message {
  Role role;
  std::string content;  // as given (not stripped)
};

const char* role_name(Role r) {
  switch (r) {
    case Role::System: return "system";
    case Role::User: return "user";
    case Role::Assistant: return "assistant";
  }
  return "?";
}

// Structure of a "messages" list: objects with a known role and string content,
// an optional system message first, then user/assistant alternating from user.
std::vector<Message> parse_messages(const nlohmann::json& list, const char* field) {
  if (!list.is_array()) throw RecordError(fmt::format("field '{}' must be a list of messages, got {}", field, list.type_name()));
  // "message 3" in a chat record, "'chosen' message 3" in a preference pair.
  auto where = [&](size_t n) {
    return std::string(field) == "messages" ? fmt::format("message {}", n) : fmt::format("'{}' message {}", field, n);
  };
  std::vector<Message> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& m = list[i];
    const size_t n = i + 1;
    if (!m.is_object())
      throw RecordError(fmt::format("{} must be an object {{\"role\", \"content\"}}, got {}", where(n), m.type_name()));
    auto role = m.find("role");
    if (role == m.end()) throw RecordError(fmt::format("{} has no 'role'", where(n)));
    if (!role->is_string()) throw RecordError(fmt::format("{}: 'role' must be a string", where(n)));
    auto content = m.find("content");
    if (content == m.end()) throw RecordError(fmt::format("{} has no 'content'", where(n)));
    if (!content->is_string())
      throw RecordError(fmt::format("{}: 'content' must be a string, got {}", where(n), content->type_name()));
    std::string r = role->get<std::string>();
    Role parsed;
    if (r == "system") parsed = Role::System;
    else if (r == "user") parsed = Role::User;
    else if (r == "assistant") parsed = Role::Assistant;
    else throw RecordError(fmt::format("{} has unknown role '{}' (expected system, user or assistant)", where(n), r));
    out.push_back({parsed, content->get<std::string>()});
  }
  // Order.
  size_t first = 0;
  if (!out.empty() && out[0].role == Role::System) first = 1;
  for (size_t i = first; i < out.size(); ++i) {
    Role expected = (i - first) % 2 == 0 ? Role::User : Role::Assistant;
    if (out[i].role == Role::System)
      throw RecordError(fmt::format("{}: a system message is only allowed first", where(i + 1)));
    if (out[i].role != expected)
      throw RecordError(fmt::format("{} has role '{}' but '{}' was expected (after an optional system "
                                    "message, roles alternate user, assistant, user, ...)",
                                    where(i + 1), role_name(out[i].role), role_name(expected)));
  }
  return out;
}

ChatRecord record_from_messages(const std::vector<Message>& messages, ChatTurns turns, bool system_message) {
  ChatRecord rec;
  size_t first = 0;
  if (!messages.empty() && messages[0].role == Role::System) {
    first = 1;
    std::string sys = strip(messages[0].content);
    if (!sys.empty()) {
      if (system_message) rec.prompt.system = sys;
      else rec.system_left_out = true;
    }
  }
  // Index of the assistant message that becomes the span.
  size_t answer = messages.size();
  for (size_t i = first; i < messages.size(); ++i) {
    if (messages[i].role != Role::Assistant) continue;
    answer = i;
    if (turns == ChatTurns::First) break;
  }
  if (answer == messages.size()) throw RecordError("no assistant message");
  auto content = [&](size_t i) {
    return non_empty(messages[i].content, fmt::format("message {} ({}) content", i + 1, role_name(messages[i].role)));
  };
  // messages[first .. answer-1] alternate user, assistant, ..., user.
  for (size_t i = first; i + 2 < answer; i += 2) rec.prompt.history.emplace_back(content(i), content(i + 1));
  rec.prompt.user = content(answer - 1);
  rec.response = content(answer);
  return rec;
}

int64_t count_lines(const fs::path& file) {
  int64_t n = 0;
  char buf[1 << 16];
  if (file.extension() == ".gz") {
    gzFile f = gzopen(file.string().c_str(), "rb");
    if (!f) return 0;
    int got;
    while ((got = gzread(f, buf, sizeof buf)) > 0) n += std::count(buf, buf + got, '\n');
    gzclose(f);
    return n + 1;
  }
  std::ifstream in(file, std::ios::binary);
  while (in) {
    in.read(buf, sizeof buf);
    n += std::count(buf, buf + in.gcount(), '\n');
  }
  return n + 1;
}

// 1 when sequences start with the tokenizer's BOS, 0 for a tokenizer without
// one (Qwen2.5: they start with the prompt text, as HF's Qwen2 chat data does).
size_t bos_tokens(const Tokenizer& tok) { return tok.bos_id() >= 0 ? 1 : 0; }

void check_special_ids(const Tokenizer& tok) {
  if (tok.eos_id() < 0)
    throw Error("the chat template needs a tokenizer with an EOS token (</s>): it ends every answer");
  if (tok.pad_id() < 0)
    throw Error("the chat template pads with [PAD], but the tokenizer has no PAD token "
                "(add one, as model.add_pad_token does: a [PAD] token after the vocabulary)");
}

// Byte offsets of the code point starts of `text`, plus text.size().
std::vector<size_t> code_point_offsets(const std::string& text) {
  std::vector<size_t> out;
  for (size_t i = 0; i < text.size(); ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) out.push_back(i);
  out.push_back(text.size());
  return out;
}

// `text` cut from the left to the shortest cut that fits (given !fits(text)
// and fits("")), moved forward to the next word start when that still fits.
std::string cut_left(const std::string& text, const std::function<bool(const std::string&)>& fits) {
  auto offsets = code_point_offsets(text);
  size_t lo = 0, hi = offsets.size() - 1;  // !fits(lo), fits(hi)
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (fits(text.substr(offsets[mid]))) hi = mid;
    else lo = mid;
  }
  size_t off = offsets[hi];
  size_t q = off;
  while (q < text.size() && !(!is_space(text[q]) && (q == 0 || is_space(text[q - 1])))) ++q;
  if (q != off && q < text.size() && fits(text.substr(q))) off = q;
  return text.substr(off);
}

at::Tensor view_2d(const void* data, int64_t rows, int64_t cols, torch::Dtype dtype) {
  if (rows == 0) return torch::empty({0, cols}, dtype);
  return torch::from_blob(const_cast<void*>(data), {rows, cols}, dtype);
}

at::Tensor view_1d(const std::vector<int32_t>& v) {
  if (v.empty()) return torch::empty({0}, torch::kInt32);
  return torch::from_blob(const_cast<int32_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt32);
}

std::vector<int32_t> continuation(const Tokenizer& tok, const std::string& prompt_text,
                                  const std::vector<int32_t>& prompt_ids, const std::string& response) {
  auto full = tok.encode(prompt_text + response);
  if (full.size() > prompt_ids.size() && std::equal(prompt_ids.begin(), prompt_ids.end(), full.begin()))
    return std::vector<int32_t>(full.begin() + static_cast<std::ptrdiff_t>(prompt_ids.size()), full.end());
  spdlog::debug("a token straddles the prompt/response boundary; encoding the response on its own");
  return tok.encode(response);
}

void tally(ChatReport& report, EncodeStatus status) {
  switch (status) {
    case EncodeStatus::Truncated: ++report.truncated; [[fallthrough]];
    case EncodeStatus::Ok: ++report.examples; break;
    case EncodeStatus::DroppedTooLong: ++report.dropped_too_long; break;
    case EncodeStatus::DroppedResponseTooLong: ++report.dropped_response_too_long; break;
  }
}

void count_tokens(ChatReport& report, const ChatSequence& seq) {
  report.real_tokens += seq.length;
  report.span_tokens += std::count(seq.span_mask.begin(), seq.span_mask.end(), uint8_t{1});
  report.pad_tokens += static_cast<int64_t>(seq.ids.size()) - seq.length;
}

// Runs `visit` over every file with a progress bar; collects bad lines.
void for_each_record(const std::vector<fs::path>& files, const ChatOptions& options, const std::string& label,
                     ChatReport& report, const std::function<void(const nlohmann::json&)>& visit) {
  int64_t total = 0;
  std::vector<int64_t> lines;
  for (const auto& f : files) {
    std::error_code ec;
    if (!fs::is_regular_file(f, ec)) throw Error(fmt::format("'{}' does not exist or is not a file", f.string()));
    lines.push_back(count_lines(f));
    total += lines.back();
  }
  util::Progress::Options po;
  po.unit = "lines";
  po.enabled = options.progress;
  util::Progress progress(label, total, po);
  int64_t base = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    auto jr = read_jsonl(
        files[i],
        [&](const nlohmann::json& record, int64_t line) {
          visit(record);
          ++report.records;
          progress.update(base + line);
        },
        options.skip_bad);
    report.add_bad(files[i], jr);
    base += lines[i];
    progress.update(base);
  }
  progress.finish();
}

}  // namespace

// ---- options --------------------------------------------------------------------

ChatOptions ChatOptions::from_config(const config::Config& config) {
  ChatOptions o;
  o.seq_len = config.get_int("data.seq_len");
  o.turns = config::chat_turns_choices().parse(config.get_string("data.chat.turns"));
  o.system_message = config.get_bool("data.chat.system_message");
  o.too_long = config::too_long_choices().parse(config.get_string("data.chat.too_long"));
  o.skip_bad = config.get_bool("data.skip_bad_records");
  return o;
}

// ---- template -------------------------------------------------------------------

std::string prompt_text(const ChatPrompt& prompt) {
  std::string out;
  if (!prompt.system.empty()) out += "<|system|>\n" + prompt.system + "\n";
  for (const auto& [user, assistant] : prompt.history)
    out += "<|user|>\n" + user + "\n<|assistant|>\n" + assistant + "\n";
  out += "<|user|>\n" + prompt.user + "\n<|assistant|>\n";
  return out;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const ChatPrompt& prompt) {
  std::vector<int32_t> ids;
  if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
  auto p = tok.encode(prompt_text(prompt));
  ids.insert(ids.end(), p.begin(), p.end());
  return ids;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& user) {
  ChatPrompt p;
  p.user = strip(user);
  return encode_prompt(tok, p);
}

std::vector<int32_t> encode_response(const Tokenizer& tok, const std::string& prompt_text,
                                     const std::string& response) {
  return continuation(tok, prompt_text, tok.encode(prompt_text), response);
}

// ---- records --------------------------------------------------------------------

ChatRecord parse_chat_record(const nlohmann::json& record, const ChatOptions& options) {
  std::string task = string_field(record, "task", false);
  ChatRecord rec;
  if (record.contains("messages")) {
    auto messages = parse_messages(record["messages"], "messages");
    if (messages.empty()) throw RecordError("field 'messages' is empty");
    rec = record_from_messages(messages, options.turns, options.system_message);
  } else if (record.contains("prompt")) {
    rec.prompt.user = non_empty(string_field(record, "prompt", true), "field 'prompt'");
    rec.response = non_empty(string_field(record, "completion", true), "field 'completion'");
  } else {
    throw RecordError("missing field 'messages' (or 'prompt' and 'completion')");
  }
  rec.task = task;
  return rec;
}

PreferenceRecord parse_preference_record(const nlohmann::json& record) {
  PreferenceRecord rec;
  rec.task = string_field(record, "task", false);
  rec.prompt.user = non_empty(string_field(record, "prompt", true), "field 'prompt'");
  auto response = [&](const char* name) {
    auto it = record.find(name);
    if (it == record.end()) throw RecordError(fmt::format("missing field '{}'", name));
    if (it->is_string()) return non_empty(it->get<std::string>(), fmt::format("field '{}'", name));
    if (it->is_array()) {
      auto messages = parse_messages(*it, name);
      for (auto m = messages.rbegin(); m != messages.rend(); ++m)
        if (m->role == Role::Assistant) return non_empty(m->content, fmt::format("the assistant message of '{}'", name));
      throw RecordError(fmt::format("field '{}' has no assistant message", name));
    }
    throw RecordError(fmt::format("field '{}' must be a string or a list of messages, got {}", name, it->type_name()));
  };
  rec.chosen = response("chosen");
  rec.rejected = response("rejected");
  if (strip(rec.chosen) == strip(rec.rejected))
    throw RecordError("'chosen' and 'rejected' are the same answer: the pair has nothing to prefer (its loss is "
                      "log 2 whatever the model)");
  return rec;
}

// ---- encoding -------------------------------------------------------------------

const char* status_name(EncodeStatus status) {
  switch (status) {
    case EncodeStatus::Ok: return "ok";
    case EncodeStatus::Truncated: return "truncated";
    case EncodeStatus::DroppedTooLong: return "dropped (too long)";
    case EncodeStatus::DroppedResponseTooLong: return "dropped (response too long)";
  }
  return "?";
}

EncodeResult encode_chat(const Tokenizer& tok, const ChatPrompt& prompt, const std::vector<std::string>& responses,
                         const ChatOptions& options) {
  check_special_ids(tok);
  if (responses.empty()) throw Error("encode_chat needs at least one response");
  const int64_t L = options.seq_len;
  const std::string full_text = prompt_text(prompt);
  const auto full_ids = tok.encode(full_text);
  std::vector<std::vector<int32_t>> rs;
  size_t max_r = 0;
  for (const auto& r : responses) {
    rs.push_back(continuation(tok, full_text, full_ids, r));
    max_r = std::max(max_r, rs.back().size());
  }
  const size_t bos = bos_tokens(tok);
  auto need = [&](size_t prompt_tokens) { return static_cast<int64_t>(bos + prompt_tokens + max_r + 1); };
  auto fits = [&](const ChatPrompt& p) { return need(tok.encode(prompt_text(p)).size()) <= L; };

  EncodeResult result;
  result.prompt = prompt;
  std::vector<int32_t> prompt_ids = full_ids;
  const bool cut_right = need(full_ids.size()) > L && options.too_long == TooLongPolicy::TruncateRight;
  if (cut_right) {
    if (static_cast<int64_t>(bos + full_ids.size()) >= L) {  // not one response token would remain
      result.status = EncodeStatus::DroppedTooLong;
      return result;
    }
    result.status = EncodeStatus::Truncated;
  } else if (need(full_ids.size()) > L) {
    if (!fits(ChatPrompt{})) {
      result.status = EncodeStatus::DroppedResponseTooLong;
      return result;
    }
    if (options.too_long == TooLongPolicy::Drop) {
      result.status = EncodeStatus::DroppedTooLong;
      return result;
    }
    ChatPrompt& p = result.prompt;
    while (!p.history.empty() && !fits(p)) p.history.erase(p.history.begin());
    if (!fits(p)) {
      ChatPrompt empty_user = p;
      empty_user.user.clear();
      if (fits(empty_user)) {
        p.user = cut_left(p.user, [&](const std::string& u) {
          ChatPrompt q = p;
          q.user = u;
          return fits(q);
        });
      } else {
        p = empty_user;
        p.system = cut_left(p.system, [&](const std::string& s) {
          ChatPrompt q = p;
          q.system = s;
          return fits(q);
        });
      }
    }
    prompt_ids = tok.encode(prompt_text(p));
    if (need(prompt_ids.size()) > L)  // cannot happen: the cut was checked
      throw Error("internal error: prompt truncation did not fit the sequence length");
    result.status = EncodeStatus::Truncated;
  }
  for (const auto& r : rs) {
    ChatSequence seq;
    seq.ids.reserve(static_cast<size_t>(L));
    if (bos) seq.ids.push_back(tok.bos_id());
    seq.ids.insert(seq.ids.end(), prompt_ids.begin(), prompt_ids.end());
    seq.prompt_length = static_cast<int32_t>(seq.ids.size());
    seq.ids.insert(seq.ids.end(), r.begin(), r.end());
    seq.ids.push_back(tok.eos_id());
    if (cut_right && static_cast<int64_t>(seq.ids.size()) > L) seq.ids.resize(static_cast<size_t>(L));
    // By position: the tail from `length` on is padding even when PAD and EOS
    // share an id (Qwen2.5's <|endoftext|>); the span mask does not look at ids.
    seq.length = static_cast<int32_t>(seq.ids.size());
    seq.ids.resize(static_cast<size_t>(L), tok.pad_id());
    seq.span_mask.assign(static_cast<size_t>(L), 1);
    std::fill(seq.span_mask.begin(), seq.span_mask.begin() + seq.prompt_length, uint8_t{0});
    result.sequences.push_back(std::move(seq));
  }
  return result;
}

std::string render_sequence(const Tokenizer& tok, const ChatSequence& seq) {
  const auto L = static_cast<int32_t>(seq.ids.size());
  int32_t span_start = L;
  for (int32_t i = 0; i < L; ++i)
    if (seq.span_mask[static_cast<size_t>(i)]) {
      span_start = i;
      break;
    }
  // The label of a special token at position i, empty for ordinary text. The
  // tail from `length` on is padding whatever its id (PAD may be EOS's id).
  auto special = [&](int32_t i) -> std::string {
    const int32_t id = seq.ids[static_cast<size_t>(i)];
    if (i >= seq.length) return "[PAD]";
    if (id == tok.bos_id()) return "<s>";
    if (id == tok.eos_id()) return "</s>";
    if (id == tok.pad_id()) return "[PAD]";
    return {};
  };
  // Text view: runs of ordinary tokens decoded together, specials spelled out.
  auto text_of = [&](int32_t from, int32_t to) {
    std::string out;
    std::vector<int32_t> run;
    auto flush = [&] {
      if (!run.empty()) out += tok.decode(run);
      run.clear();
    };
    for (int32_t i = from; i < to;) {
      int32_t id = seq.ids[static_cast<size_t>(i)];
      std::string s = special(i);
      if (s.empty()) {
        run.push_back(id);
        ++i;
        continue;
      }
      flush();
      int32_t j = i;
      while (j < to && seq.ids[static_cast<size_t>(j)] == id && special(j) == s) ++j;
      out += j - i > 1 ? fmt::format("{}×{}", s, j - i) : s;
      i = j;
    }
    flush();
    return out;
  };
  // Pieces separated by spaces; a run of PADs is compressed.
  auto pieces_of = [&](int32_t from, int32_t to) {
    std::string out;
    for (int32_t i = from; i < to;) {
      const int32_t id = seq.ids[static_cast<size_t>(i)];
      int32_t run = 1;
      if (special(i) == "[PAD]")
        while (i + run < to && seq.ids[static_cast<size_t>(i + run)] == id && special(i + run) == "[PAD]") ++run;
      if (!out.empty()) out += ' ';
      out += run > 1 ? fmt::format("{}×{}", tok.piece(id), run) : tok.piece(id);
      i += run;
    }
    return out;
  };
  std::string out = fmt::format("{} tokens: {} prompt (clean), {} span = {} response + </s> + {} PAD\n", L,
                                span_start, L - span_start, seq.length - span_start - 1, L - seq.length);
  out += text_of(0, span_start) + "⟦" + text_of(span_start, L) + "⟧\n";
  out += "pieces: " + pieces_of(0, span_start) + " ⟦" + pieces_of(span_start, L) + "⟧\n";
  return out;
}

// ---- report -----------------------------------------------------------------------

void ChatReport::add_bad(const fs::path& file, const JsonlReport& report) {
  bad_lines += static_cast<int64_t>(report.skipped.size());
  for (const auto& b : report.skipped)
    if (first_bad.size() < kFirstBad) first_bad.push_back(fmt::format("{}:{}: {}", file.string(), b.line, b.problem));
}

std::string ChatReport::summary() const {
  std::string s = fmt::format(
      "{} record(s) -> {} example(s): {} truncated, {} dropped as too long, {} dropped with a response too long "
      "for the sequence length, {} bad line(s) skipped, {} system message(s) left out",
      records, examples, truncated, dropped_too_long, dropped_response_too_long, bad_lines, system_left_out);
  if (!first_bad.empty()) {
    s += " (";
    for (size_t i = 0; i < first_bad.size(); ++i) s += (i ? "; " : "") + first_bad[i];
    s += bad_lines > static_cast<int64_t>(first_bad.size()) ? "; ...)" : ")";
  }
  int64_t total = real_tokens + pad_tokens;
  if (total > 0)
    s += fmt::format("; tokens: {} real, {} in spans, {} PAD ({:.1f}%)", real_tokens, span_tokens, pad_tokens,
                     100.0 * static_cast<double>(pad_tokens) / static_cast<double>(total));
  return s;
}

// ---- datasets ---------------------------------------------------------------------

ChatSequence ChatDataset::sequence(int64_t i) const {
  ChatSequence s;
  s.ids.assign(ids(i), ids(i) + seq_len_);
  s.span_mask.assign(span_mask(i), span_mask(i) + seq_len_);
  s.prompt_length = prompt_length(i);
  s.length = length(i);
  return s;
}

ChatDataset ChatDataset::build(const std::vector<fs::path>& files, const Tokenizer& tok, const ChatOptions& options) {
  check_special_ids(tok);
  if (options.seq_len < 4) throw Error(fmt::format("chat sequences need seq_len >= 4, got {}", options.seq_len));
  ChatDataset ds;
  ds.seq_len_ = options.seq_len;
  for_each_record(files, options, "tokenizing chat data", ds.report_, [&](const nlohmann::json& j) {
    ChatRecord rec = parse_chat_record(j, options);
    if (rec.system_left_out) ++ds.report_.system_left_out;
    auto res = encode_chat(tok, rec.prompt, {rec.response}, options);
    tally(ds.report_, res.status);
    if (res.sequences.empty()) return;
    const auto& seq = res.sequences[0];
    count_tokens(ds.report_, seq);
    ds.ids_.insert(ds.ids_.end(), seq.ids.begin(), seq.ids.end());
    ds.span_.insert(ds.span_.end(), seq.span_mask.begin(), seq.span_mask.end());
    ds.lengths_.push_back(seq.length);
    ds.prompt_lengths_.push_back(seq.prompt_length);
    ds.tasks_.push_back(rec.task);
  });
  spdlog::info("chat data (L={}): {}", options.seq_len, ds.report_.summary());
  return ds;
}

at::Tensor ChatDataset::ids_tensor() const { return view_2d(ids_.data(), size(), seq_len_, torch::kInt32); }
at::Tensor ChatDataset::span_mask_tensor() const { return view_2d(span_.data(), size(), seq_len_, torch::kBool); }
at::Tensor ChatDataset::lengths_tensor() const { return view_1d(lengths_); }

PreferenceDataset PreferenceDataset::build(const std::vector<fs::path>& files, const Tokenizer& tok,
                                           const ChatOptions& options) {
  check_special_ids(tok);
  if (options.seq_len < 4) throw Error(fmt::format("preference sequences need seq_len >= 4, got {}", options.seq_len));
  PreferenceDataset ds;
  ds.seq_len_ = options.seq_len;
  for_each_record(files, options, "tokenizing preference pairs", ds.report_, [&](const nlohmann::json& j) {
    PreferenceRecord rec = parse_preference_record(j);
    auto res = encode_chat(tok, rec.prompt, {rec.chosen, rec.rejected}, options);
    tally(ds.report_, res.status);
    if (res.sequences.empty()) return;
    const auto& c = res.sequences[0];
    const auto& r = res.sequences[1];
    count_tokens(ds.report_, c);
    count_tokens(ds.report_, r);
    ds.chosen_.insert(ds.chosen_.end(), c.ids.begin(), c.ids.end());
    ds.rejected_.insert(ds.rejected_.end(), r.ids.begin(), r.ids.end());
    ds.chosen_last_.push_back(c.length - 1);
    ds.rejected_last_.push_back(r.length - 1);
    ds.prompt_lengths_.push_back(c.prompt_length);
  });
  spdlog::info("preference pairs (L={}): {}", options.seq_len, ds.report_.summary());
  return ds;
}

at::Tensor PreferenceDataset::chosen_tensor() const { return view_2d(chosen_.data(), size(), seq_len_, torch::kInt32); }
at::Tensor PreferenceDataset::rejected_tensor() const {
  return view_2d(rejected_.data(), size(), seq_len_, torch::kInt32);
}
at::Tensor PreferenceDataset::chosen_last_tensor() const { return view_1d(chosen_last_); }
at::Tensor PreferenceDataset::rejected_last_tensor() const { return view_1d(rejected_last_); }

// ---- evaluation records -------------------------------------------------------------

std::vector<EvalRecord> read_eval_records(const fs::path& file, const ChatOptions& options, JsonlReport* report) {
  std::vector<EvalRecord> out;
  auto jr = read_jsonl(
      file,
      [&](const nlohmann::json& j, int64_t line) {
        EvalRecord rec;
        rec.line = line;
        if (j.contains("messages")) {
          ChatRecord c = parse_chat_record(j, options);
          rec.prompt = c.prompt;
          rec.reference = c.response;
          rec.task = c.task;
        } else if (j.contains("prompt") && j.contains("choices")) {
          rec.prompt.user = non_empty(string_field(j, "prompt", true), "field 'prompt'");
          rec.task = string_field(j, "task", false);
          const auto& ch = j["choices"];
          if (!ch.is_array() || ch.size() < 2) throw RecordError("field 'choices' must be a list of at least 2 strings");
          for (const auto& c : ch) {
            if (!c.is_string()) throw RecordError("field 'choices' must hold strings only");
            rec.choices.push_back(non_empty(strip(c.get<std::string>()), "a choice"));
          }
          if (!j.contains("answer")) throw RecordError("missing field 'answer' (index or text of the right choice)");
          const auto& a = j["answer"];
          if (a.is_number_integer()) {
            rec.choice_answer = a.get<int64_t>();
          } else if (a.is_string()) {
            auto it = std::find(rec.choices.begin(), rec.choices.end(), strip(a.get<std::string>()));
            rec.choice_answer = it == rec.choices.end() ? -1 : static_cast<int64_t>(it - rec.choices.begin());
            if (rec.choice_answer < 0) throw RecordError("field 'answer' is not one of the choices");
          } else {
            throw RecordError(fmt::format("field 'answer' must be an index or a string, got {}", a.type_name()));
          }
          if (rec.choice_answer < 0 || rec.choice_answer >= static_cast<int64_t>(rec.choices.size()))
            throw RecordError(fmt::format("field 'answer' = {} is not a choice index (0..{})", rec.choice_answer,
                                          rec.choices.size() - 1));
          rec.reference = rec.choices[static_cast<size_t>(rec.choice_answer)];
        } else if (j.contains("prompt")) {
          rec.prompt.user = non_empty(string_field(j, "prompt", true), "field 'prompt'");
          std::string answer = j.contains("answer") ? string_field(j, "answer", true) : string_field(j, "completion", false);
          rec.reference = strip(answer);
          rec.task = string_field(j, "task", false);
        } else {
          throw RecordError("missing field 'messages' (or 'prompt' with 'answer')");
        }
        out.push_back(std::move(rec));
      },
      options.skip_bad);
  if (!jr.skipped.empty()) spdlog::warn("{}", jr.summary(file));
  if (report) *report = jr;
  return out;
}

}  // namespace tess::data
