#include "eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/config/choices.h"
#include "core/config/config.h"
#include "core/diffusion/diffusion_loss.h"
#include "core/diffusion/noise_scheduler.h"
#include "core/model/hf_checkpoint.h"
#include "core/model/reward_model.h"
#include "core/util/error.h"
#include "core/util/format.h"
#include "core/util/progress.h"
#include "core/util/rng.h"
#include "data/chat.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace tess::eval {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int64_t> widen(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }

// Rows of different lengths right-padded into one int64 [B, L] tensor.
torch::Tensor pad_rows(const std::vector<std::vector<int64_t>>& rows, int64_t pad) {
  size_t longest = 0;
  for (const auto& r : rows) longest = std::max(longest, r.size());
  auto out = torch::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)}, pad, torch::kInt64);
  for (size_t i = 0; i < rows.size(); ++i)
    if (!rows[i].empty()) out[static_cast<int64_t>(i)].narrow(0, 0, static_cast<int64_t>(rows[i].size())).copy_(torch::tensor(rows[i], torch::kInt64));
  return out;
}

// Prompt ids + answer ids + EOS of each generation, under `tok`: the
// generator's own tokens when `tok` is the model's tokenizer, else the answer
// text re-encoded as a continuation of the prompt.
struct Scored {
  std::vector<int64_t> ids;
  int64_t prompt_length = 0;
};
Scored sequence_of(const data::Tokenizer& tok, const GenerationPrompt& p, const Generation& g, bool same_tokenizer) {
  Scored s;
  s.ids = widen(data::encode_prompt(tok, p.prompt));
  s.prompt_length = static_cast<int64_t>(s.ids.size());
  std::vector<int64_t> answer = same_tokenizer ? g.tokens : widen(data::encode_response(tok, data::prompt_text(p.prompt), g.output));
  s.ids.insert(s.ids.end(), answer.begin(), answer.end());
  s.ids.push_back(tok.eos_id());
  return s;
}

json exact_match_metrics(const std::vector<GenerationPrompt>& prompts, const std::vector<Generation>& gens,
                         AnswerExtraction how) {
  std::map<std::string, std::pair<int64_t, int64_t>> by_task;  // task -> (correct, total)
  int64_t correct = 0, total = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    if (prompts[i].answer.empty()) continue;
    bool ok = exact_match(gens[i].output, prompts[i].answer, how);
    correct += ok;
    ++total;
    auto& t = by_task[prompts[i].task.empty() ? "all" : prompts[i].task];
    t.first += ok;
    t.second += 1;
  }
  if (total == 0) throw Error("exact_match: no record of the data file has a reference answer");
  json tasks = json::object();
  for (const auto& [name, ct] : by_task)
    tasks[name] = {{"exact_match", static_cast<double>(ct.first) / static_cast<double>(ct.second)}, {"n", ct.second}};
  return {{"exact_match", static_cast<double>(correct) / static_cast<double>(total)},
          {"exact_match_n", total},
          {"exact_match_by_task", tasks}};
}

// Mean log-likelihood per token of `targets` positions, under a causal LM.
double ar_mean_logprob(model::DecoderImpl& lm, const std::vector<int64_t>& ids, int64_t first_target) {
  auto x = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  model::ForwardOptions fo;
  fo.attention = model::Attention::Causal;
  int64_t n = x.size(1);
  auto logp = torch::log_softmax(lm.forward(x.narrow(1, 0, n - 1), fo).to(torch::kFloat32), -1);  // [1, n-1, V]
  auto tgt = x.narrow(1, 1, n - 1);
  auto lp = logp.gather(2, tgt.unsqueeze(2)).squeeze(2).narrow(1, first_target - 1, n - first_target);
  return lp.mean().item<double>();
}

json perplexity_metric(const fs::path& model_dir, const std::vector<GenerationPrompt>& prompts,
                       const std::vector<Generation>& gens) {
  torch::NoGradGuard no_grad;
  auto tok = data::load_tokenizer(model_dir);
  auto lm = model::load_hf_model(model_dir).decoder;
  lm->eval();
  double nll = 0;
  int64_t tokens = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    auto s = sequence_of(*tok, prompts[i], gens[i], false);
    int64_t n = static_cast<int64_t>(s.ids.size()) - s.prompt_length;
    nll -= ar_mean_logprob(*lm, s.ids, s.prompt_length) * static_cast<double>(n);
    tokens += n;
  }
  return {{"perplexity", std::exp(nll / static_cast<double>(std::max<int64_t>(tokens, 1)))},
          {"perplexity_model", model_dir.string()},
          {"perplexity_tokens", tokens}};
}

// The reward model's score of each (prompt, answer, EOS), read at the EOS.
// `rm_dir` passed check_metric_inputs (a reward model with the model's
// tokenizer). `same_tokenizer`: the answers' own tokens are scored, else their
// text is re-encoded.
std::vector<double> reward_scores(const fs::path& rm_dir, const data::Tokenizer& tok,
                                  const std::vector<GenerationPrompt>& prompts, const std::vector<Generation>& gens,
                                  int64_t batch, bool same_tokenizer) {
  torch::NoGradGuard no_grad;
  auto rm = model::load_reward_model(rm_dir, std::string("float32"));
  rm->eval();
  int64_t pad = tok.pad_id() >= 0 ? tok.pad_id() : tok.eos_id();
  std::vector<double> scores;
  for (size_t start = 0; start < gens.size(); start += static_cast<size_t>(batch)) {
    std::vector<std::vector<int64_t>> rows;
    std::vector<int64_t> at;
    for (size_t i = start; i < std::min(gens.size(), start + static_cast<size_t>(batch)); ++i) {
      rows.push_back(sequence_of(tok, prompts[i], gens[i], same_tokenizer).ids);
      at.push_back(static_cast<int64_t>(rows.back().size()) - 1);  // the EOS
    }
    auto s = rm->forward(pad_rows(rows, pad), torch::tensor(at, torch::kInt64)).to(torch::kFloat64).contiguous();
    scores.insert(scores.end(), s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  }
  return scores;
}

json reward_metric(const fs::path& rm_dir, const data::Tokenizer& tok, const std::vector<GenerationPrompt>& prompts,
                   const std::vector<Generation>& gens, int64_t batch) {
  auto scores = reward_scores(rm_dir, tok, prompts, gens, batch, true);
  double sum = 0;
  for (double x : scores) sum += x;
  return {{"reward", sum / static_cast<double>(gens.size())}, {"reward_model", rm_dir.string()}};
}

// A task's judge (alpaca_eval): the reward model scores each response's text
// as an answer to its prompt, re-encoded, so model outputs and reference
// outputs are judged alike, with the reward model's own tokenizer.
tasks::Judge reward_judge(const fs::path& rm_dir, int64_t batch) {
  return [=](const std::vector<std::string>& prompts, const std::vector<std::string>& responses) {
    auto tok = data::load_tokenizer(rm_dir);
    std::vector<GenerationPrompt> ps(prompts.size());
    std::vector<Generation> gs(responses.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      ps[i].prompt.user = prompts[i];
      gs[i].output = responses[i];
    }
    return reward_scores(rm_dir, *tok, ps, gs, batch, false);
  };
}

// ---- multiple choice ------------------------------------------------------------------

struct ChoiceScorer {
  virtual ~ChoiceScorer() = default;
  // Mean log-likelihood (or its diffusion estimate) per token of each choice.
  virtual std::vector<double> score(const data::EvalRecord& r) = 0;
};

data::ChatOptions scoring_chat_options(int64_t max_len) {
  data::ChatOptions co;
  co.seq_len = max_len;
  co.progress = false;
  return co;
}

class ArChoiceScorer : public ChoiceScorer {
 public:
  explicit ArChoiceScorer(const fs::path& dir) : tok_(data::load_tokenizer(dir)), lm_(model::load_hf_model(dir).decoder) {
    lm_->eval();
  }
  std::vector<double> score(const data::EvalRecord& r) override {
    std::vector<double> out;
    auto enc = data::encode_chat(*tok_, r.prompt, r.choices, scoring_chat_options(lm_->config().max_position_embeddings));
    if (enc.sequences.empty()) throw Error(fmt::format("line {}: the prompt and a choice do not fit the model", r.line));
    for (const auto& s : enc.sequences) {
      std::vector<int64_t> ids(s.ids.begin(), s.ids.begin() + s.length);
      out.push_back(ar_mean_logprob(*lm_, ids, s.prompt_length));
    }
    return out;
  }

 private:
  std::unique_ptr<data::Tokenizer> tok_;
  model::Decoder lm_;
};

class DiffusionChoiceScorer : public ChoiceScorer {
 public:
  DiffusionChoiceScorer(const fs::path& dir, int64_t samples, uint64_t seed)
      : tok_(data::load_tokenizer(dir)),
        lm_(diffusion::load_diffusion_lm(dir)),
        loss_(diffusion::NoiseScheduler(diffusion::parse_schedule(lm_->noise.schedule), lm_->noise.timesteps),
              {lm_->noise.simplex_value, 0.0}),
        samples_(samples),
        seed_(seed) {
    lm_->eval();
  }
  std::vector<double> score(const data::EvalRecord& r) override {
    auto enc = data::encode_chat(*tok_, r.prompt, r.choices,
                                 scoring_chat_options(lm_->decoder->config().max_position_embeddings));
    if (enc.sequences.empty()) throw Error(fmt::format("line {}: the prompt and a choice do not fit the model", r.line));
    std::vector<double> out;
    for (const auto& s : enc.sequences) {
      auto ids = torch::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.begin() + s.length), torch::kInt64).unsqueeze(0);
      auto span = torch::zeros_like(ids, torch::kBool);
      span.narrow(1, s.prompt_length, s.length - s.prompt_length).fill_(true);  // the choice and its EOS
      // The same noise streams for every choice: the comparison sees the
      // same draws (common random numbers), not luck.
      util::Rng noise(seed_, "multiple_choice.noise"), coin(seed_, "multiple_choice.coin");
      double ce = 0;
      int64_t tokens = 0;
      for (int64_t k = 0; k < samples_; ++k) {
        auto res = loss_(*lm_, ids, span, {noise, coin});
        ce += res.loss_sum.item<double>();
        tokens += res.tokens;
      }
      out.push_back(-ce / static_cast<double>(std::max<int64_t>(tokens, 1)));
    }
    return out;
  }

 private:
  std::unique_ptr<data::Tokenizer> tok_;
  diffusion::DiffusionLM lm_;
  diffusion::DiffusionLoss loss_;
  int64_t samples_;
  uint64_t seed_;
};

// The index of the most likely choice of each record.
std::vector<int64_t> rank_choices(const EvalOptions& o, const std::vector<data::EvalRecord>& records) {
  torch::NoGradGuard no_grad;
  std::unique_ptr<ChoiceScorer> scorer;
  if (o.generate.ar) scorer = std::make_unique<ArChoiceScorer>(o.model);
  else scorer = std::make_unique<DiffusionChoiceScorer>(o.model, o.choice_samples, o.generate.seed);
  std::optional<util::Progress> bar;
  if (o.progress) bar.emplace("multiple choice ", static_cast<int64_t>(records.size()));
  std::vector<int64_t> best;
  for (const auto& r : records) {
    auto scores = scorer->score(r);
    best.push_back(std::max_element(scores.begin(), scores.end()) - scores.begin());
    if (bar) bar->advance();
  }
  if (bar) bar->finish();
  return best;
}

json multiple_choice_metric(const EvalOptions& o, const std::vector<data::EvalRecord>& records) {
  auto best = rank_choices(o, records);
  int64_t correct = 0;
  for (size_t i = 0; i < records.size(); ++i) correct += best[i] == records[i].choice_answer;
  auto total = static_cast<int64_t>(records.size());
  return {{"multiple_choice", static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(total, 1))},
          {"multiple_choice_n", total}};
}

}  // namespace

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {"exact_match", "multiple_choice", "perplexity",
                                                 "diversity",   "reward",          "speed"};
  return names;
}

EvalPlan EvalPlan::from_config(const config::Config& cfg) {
  EvalPlan plan;
  auto& o = plan.options;
  auto run_dir_set = [&] { return cfg.origin("run.dir").where != "default"; };
  o.model = cfg.get_string("eval.model");
  if (o.model.empty()) {
    if (!run_dir_set())
      throw Error("eval.model: no model to evaluate; give --model DIR (or eval.model, or a run config whose run.dir "
                  "holds final/)");
    o.model = fs::path(cfg.get_string("run.dir")) / "final";
    if (!fs::is_directory(o.model))
      throw Error(fmt::format("eval.model is empty, so the run's final model {} is evaluated, but it does not exist "
                              "(run.dir set at {}); train it first or give --model",
                              o.model.string(), cfg.origin("run.dir").where));
  }
  o.data = cfg.get_string("eval.data");
  if (o.data.empty()) throw Error("eval.data: no eval records; give --data FILE.jsonl (or eval.data in the config)");
  o.metrics.clear();
  for (const auto& m : cfg.get_string_list("eval.metrics"))
    if (std::find(o.metrics.begin(), o.metrics.end(), m) == o.metrics.end()) o.metrics.push_back(m);
  if (o.metrics.empty()) throw Error(fmt::format("{}: eval.metrics is empty", cfg.origin("eval.metrics").where));
  o.extraction = parse_answer_extraction(cfg.get_string("eval.extraction"));
  const auto& decoding = cfg.get_string("eval.decoding");
  o.generate.ar = decoding == "ar" || (decoding == "auto" && cfg.has("run.stage") &&
                                              config::run_stage_choices().parse(cfg.get_string("run.stage")) ==
                                                  config::RunStage::Ar);
  o.generate.steps = cfg.get_int("eval.steps");
  o.generate.length = cfg.get_int("eval.span_length");
  o.generate.top_p = cfg.get_float("eval.top_p");
  o.generate.temperature = cfg.get_float("eval.temperature");
  o.generate.seed = static_cast<uint64_t>(cfg.get_int("eval.seed"));
  o.generate.batch_size = cfg.get_int("eval.batch_size");
  o.generate.reward_model = cfg.get_string("eval.reward_model");
  o.generate.guidance_scale = cfg.get_float("eval.guidance_scale");
  o.generate.guidance_read = diffusion::reward_read_choices().parse(cfg.get_string("eval.guidance_read"));
  o.generate.device = cfg.get_string("eval.device");
  o.generate.stop = diffusion::StopRule::from_config(cfg);
  o.generate.cache_refresh = cfg.get_int("sample.cache_refresh");
  o.generate.seed_per_prompt = cfg.get_bool("sample.seed_per_prompt");
  o.generate.cpu_cache =
      config::cpu_allocator_choices().parse(cfg.get_string("run.cpu_allocator")) == config::CpuAllocator::Caching;
  o.perplexity_model = cfg.get_string("eval.perplexity_model");
  o.limit = cfg.get_int("eval.limit");
  o.choice_samples = cfg.get_int("eval.choice_samples");
  o.task = cfg.get_string("eval.task");
  if (!o.task.empty()) tasks::find_task(o.task);  // a typo fails here, naming the known tasks
  o.task_options.shots = cfg.get_int("eval.shots");
  o.task_options.prompts = cfg.get_string("eval.task_prompts");
  o.task_options.reference_outputs = cfg.get_string("eval.reference_outputs");
  o.task_options.likelihood = cfg.get_string("eval.mmlu_mode") == "likelihood";
  plan.sweep = cfg.get_string("eval.sweep");
  plan.output = cfg.get_string("eval.output");
  plan.samples = cfg.get_string("eval.samples");
  plan.plot = cfg.get_string("eval.plot");
  return plan;
}

namespace {

// The reward metric's model: --reward-model, else the guidance reward model.
fs::path reward_metric_model(const EvalOptions& o) {
  return o.reward_model.empty() ? o.generate.reward_model : o.reward_model;
}

// Everything a metric needs, checked before the first forward (not after
// minutes of sampling): the models it loads and the fields of the records.
void check_metric_inputs(const EvalOptions& o, const std::vector<data::EvalRecord>& records,
                         const std::function<bool(const char*)>& wants) {
  auto model_dir = [](const fs::path& dir, const char* what) {
    if (!fs::is_directory(dir) || !fs::exists(dir / "config.json"))
      throw Error(fmt::format("{} {} is not a model directory (no config.json)", what, dir.string()));
  };
  if (wants("perplexity")) {
    if (o.perplexity_model.empty()) throw Error("the perplexity metric needs --perplexity-model DIR (an AR model)");
    model_dir(o.perplexity_model, "--perplexity-model");
  }
  if (wants("reward") || wants("judge")) {
    auto rm = reward_metric_model(o);
    if (rm.empty())
      throw Error(wants("judge") ? fmt::format("--task {} is judged by a reward model: give --reward-model DIR", o.task)
                                 : std::string("the reward metric needs --reward-model DIR"));
    model_dir(rm, "--reward-model");
    model::require_reward_model(rm);
    // The reward metric scores the generated ids; a judge re-encodes text with its own tokenizer.
    if (wants("reward")) check_same_tokenizer(*data::load_tokenizer(o.model), o.model, rm);
  }
  if (wants("multiple_choice"))
    for (const auto& r : records)
      if (r.choices.empty())
        throw Error(fmt::format("{}:{}: multiple_choice needs \"choices\" and \"answer\" in every record",
                                o.data.string(), r.line));
}

}  // namespace

namespace {

data::EvalRecord as_record(const tasks::TaskItem& it) {
  data::EvalRecord r;
  r.prompt.user = it.prompt;
  r.reference = it.reference;
  r.task = it.group;
  r.line = it.line;
  r.choices = it.choices;
  r.choice_answer = it.answer_index;
  return r;
}

}  // namespace

EvalResult evaluate(const EvalOptions& o) {
  for (const auto& m : o.metrics)
    if (std::find(metric_names().begin(), metric_names().end(), m) == metric_names().end())
      throw Error(fmt::format("unknown metric '{}' (expected one of: {})", m, fmt::join(metric_names(), ", ")));
  const tasks::Task* task = o.task.empty() ? nullptr : &tasks::find_task(o.task);
  // A task's own scorer replaces exact_match and multiple_choice; "judge" is
  // its reward-model judge (alpaca_eval).
  auto wants = [&](const char* m) {
    if (std::string(m) == "judge") return task && task->needs_judge();
    if (task && (std::string(m) == "exact_match" || std::string(m) == "multiple_choice")) return false;
    return std::find(o.metrics.begin(), o.metrics.end(), m) != o.metrics.end();
  };
  data::ChatOptions co;
  co.progress = false;
  if (!fs::exists(o.data)) throw Error(fmt::format("eval data {} does not exist", o.data.string()));
  std::vector<tasks::TaskItem> items;
  std::vector<data::EvalRecord> records;
  if (task) {
    items = task->load(o.data, o.task_options);
    if (o.limit > 0 && static_cast<int64_t>(items.size()) > o.limit) items.resize(static_cast<size_t>(o.limit));
    for (const auto& it : items) records.push_back(as_record(it));
  } else {
    records = data::read_eval_records(o.data, co);
  }
  if (records.empty()) throw Error(fmt::format("eval data {} holds no records", o.data.string()));
  if (o.limit > 0 && static_cast<int64_t>(records.size()) > o.limit) records.resize(static_cast<size_t>(o.limit));
  check_metric_inputs(o, records, wants);
  bool ranks = task && task->ranks_choices(o.task_options);

  EvalResult result;
  const auto& g = o.generate;
  json settings = {{"model", o.model.string()},
                   {"kind", g.ar ? "ar" : "diffusion"},
                   {"data", o.data.string()},
                   {"records", records.size()},
                   {"length", g.length},
                   {"top_p", g.top_p},
                   {"temperature", g.temperature},
                   {"seed", g.seed},
                   {"batch_size", g.batch_size},
                   {"extraction", o.extraction == AnswerExtraction::FullString ? "full"
                                  : o.extraction == AnswerExtraction::LastNumber ? "last_number"
                                                                                 : "first_line"}};
  if (!g.ar) {
    settings["steps"] = g.steps;
    settings["guidance_scale"] = g.guidance_scale;
    if (g.guidance_scale > 0) {
      settings["guidance_reward_model"] = g.reward_model.string();
      settings["guidance_read"] = diffusion::reward_read_choices().name(g.guidance_read);
    }
    if (g.stop.enabled)
      settings["adaptive"] = {{"stable_steps", g.stop.stable_steps}, {"margin", g.stop.margin}};
    if (g.cache_refresh > 0) settings["cache_refresh"] = g.cache_refresh;
    if (g.seed_per_prompt) settings["seed_per_prompt"] = true;
    if (g.stop.freeze) settings["freeze"] = {{"stable_steps", g.stop.stable_steps}, {"margin", g.stop.margin}};
  }
  if (task) {
    settings["task"] = task->name();
    if (o.task_options.shots >= 0) settings["shots"] = o.task_options.shots;
    if (task->name() == "mmlu") settings["mmlu_mode"] = ranks ? "likelihood" : "generation";
    if (task->needs_judge()) settings["judge"] = reward_metric_model(o).string();
  }
  json metrics = json::object();

  // A task generates unless it ranks choices (then nothing is generated, and
  // the generation metrics have nothing to measure).
  bool generate = task ? !ranks
                       : wants("exact_match") || wants("perplexity") || wants("diversity") || wants("reward") ||
                             wants("speed");
  if (generate) {
    std::vector<GenerationPrompt> prompts;
    for (const auto& r : records) {
      GenerationPrompt p;
      p.prompt = r.prompt;
      p.task = r.task;
      p.answer = r.reference;
      p.line = r.line;
      prompts.push_back(std::move(p));
    }
    Generator gen(o.model, g);
    std::optional<util::Progress> bar;
    if (o.progress) {
      util::Progress::Options po;
      po.unit = "prompts";
      bar.emplace(fmt::format("eval {} ", g.ar ? "ar" : fmt::format("{} steps", g.steps)),
                  static_cast<int64_t>(prompts.size()), po);
    }
    int64_t span_tokens = 0;
    double t0 = now_s();
    result.generations = gen.generate(prompts, {}, [&](const std::vector<Generation>& batch) {
      for (const auto& x : batch) span_tokens += g.ar ? static_cast<int64_t>(x.tokens.size()) + 1 : g.length;
      if (bar) {
        bar->set_field("tok/s", util::human_count(static_cast<double>(span_tokens) / std::max(now_s() - t0, 1e-9)));
        bar->advance(static_cast<int64_t>(batch.size()));
      }
    });
    double seconds = now_s() - t0;
    if (bar) bar->finish();
    const auto& gens = result.generations;
    if (wants("exact_match")) metrics.update(exact_match_metrics(prompts, gens, o.extraction));
    if (wants("diversity")) {
      std::vector<std::string> texts;
      for (const auto& x : gens) texts.push_back(x.output);
      for (int n = 1; n <= 3; ++n) metrics[fmt::format("dist_{}", n)] = distinct_n(texts, n);
    }
    if (wants("speed")) {
      metrics["seconds"] = seconds;
      metrics["tokens_per_s"] = static_cast<double>(span_tokens) / std::max(seconds, 1e-9);
      int64_t answer_tokens = 0;
      for (const auto& x : gens) answer_tokens += static_cast<int64_t>(x.tokens.size());
      metrics["answer_tokens"] = answer_tokens;  // up to the first EOS: the same count for both decoders
      metrics["answer_tokens_per_s"] = static_cast<double>(answer_tokens) / std::max(seconds, 1e-9);
      if (!g.ar) {
        auto mean = [&](int64_t Generation::*field) {
          double sum = 0;
          for (const auto& x : gens) sum += static_cast<double>(x.*field);
          return sum / static_cast<double>(std::max<size_t>(gens.size(), 1));
        };
        metrics["mean_steps"] = mean(&Generation::steps);  // eval.steps unless sample.adaptive stops earlier
        if (g.stop.freeze) metrics["mean_frozen"] = mean(&Generation::frozen);
        metrics["full_passes"] = gen.passes().full;            // batched model passes over whole sequences
        metrics["span_only_passes"] = gen.passes().span_only;  // between prompt-cache refreshes
      }
    }
    if (wants("perplexity")) {
      metrics.update(perplexity_metric(o.perplexity_model, prompts, gens));
    }
    if (wants("reward")) {
      metrics.update(
          reward_metric(reward_metric_model(o), gen.tokenizer(), prompts, gens, std::max<int64_t>(g.batch_size, 1)));
    }
  }
  if (wants("multiple_choice")) {
    if (!g.ar) settings["choice_samples"] = o.choice_samples;
    metrics.update(multiple_choice_metric(o, records));
  }
  if (task) {
    std::vector<std::string> outputs;
    if (ranks) {  // the chosen choice is the output (and what --samples writes)
      if (!g.ar) settings["choice_samples"] = o.choice_samples;
      auto best = rank_choices(o, records);
      for (size_t i = 0; i < records.size(); ++i) {
        Generation x;
        x.prompt = records[i].prompt.user;
        x.output = records[i].choices[static_cast<size_t>(best[i])];
        x.task = records[i].task;
        x.answer = records[i].reference;
        result.generations.push_back(std::move(x));
      }
    }
    for (const auto& x : result.generations) outputs.push_back(x.output);
    tasks::Judge judge;
    if (task->needs_judge()) judge = reward_judge(reward_metric_model(o), std::max<int64_t>(g.batch_size, 1));
    metrics["task"] = task->score(items, outputs, judge);
  }
  result.report = {{"settings", settings}, {"metrics", metrics}};
  return result;
}

// ---- sweeps, tables and plots ---------------------------------------------------------

Sweep parse_sweep(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos) throw Error(fmt::format("--sweep '{}': expected name=v1,v2,... (e.g. steps=8,16,32)", text));
  Sweep s;
  s.name = text.substr(0, eq);
  static const std::vector<std::string> names = {"steps",        "guidance_scale", "top_p",        "length",
                                                 "stable_steps", "margin",         "cache_refresh"};
  if (std::find(names.begin(), names.end(), s.name) == names.end())
    throw Error(fmt::format("--sweep: cannot sweep '{}' (expected one of: {})", s.name, fmt::join(names, ", ")));
  std::stringstream ss(text.substr(eq + 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      double v = std::stod(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
      s.values.push_back(v);
    } catch (const std::exception&) {
      throw Error(fmt::format("--sweep {}: '{}' is not a number", s.name, item));
    }
  }
  if (s.values.empty()) throw Error(fmt::format("--sweep {}: no values", s.name));
  return s;
}

void apply_sweep_value(EvalOptions& o, const std::string& name, double v) {
  auto whole = [&](const char* what) {
    if (v < 1 || v != std::floor(v)) throw Error(fmt::format("--sweep {}: {} is not a positive integer", what, v));
    return static_cast<int64_t>(v);
  };
  auto adaptive = [&] {
    if (!o.generate.stop.enabled && !o.generate.stop.freeze)
      throw Error(fmt::format("--sweep {} sets adaptive stopping or freezing: add --adaptive or --freeze", name));
  };
  if (name == "steps") o.generate.steps = whole("steps");
  else if (name == "length") o.generate.length = whole("length");
  else if (name == "stable_steps") adaptive(), o.generate.stop.stable_steps = whole("stable_steps");
  else if (name == "margin") adaptive(), o.generate.stop.margin = v;
  else if (name == "cache_refresh") o.generate.cache_refresh = v == 0 ? 0 : whole("cache_refresh");
  else if (name == "guidance_scale") o.generate.guidance_scale = v;
  else if (name == "top_p") o.generate.top_p = v;
  else throw Error(fmt::format("--sweep: cannot sweep '{}'", name));
}

namespace {

std::string cell(const json& v) {
  if (v.is_number_float()) {
    double d = v.get<double>();
    return std::fabs(d) >= 1000 ? fmt::format("{:.0f}", d) : fmt::format("{:.4g}", d);
  }
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

size_t display_width(const std::string& text) {  // code points
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

const std::vector<std::string> kTableMetrics = {"exact_match", "multiple_choice", "dist_1", "dist_2", "dist_3",
                                                "reward",      "perplexity",      "tokens_per_s", "seconds"};

}  // namespace

std::string format_reports(const std::vector<json>& reports, const std::string& label_key) {
  std::vector<std::string> cols;
  for (const auto& m : kTableMetrics)
    for (const auto& r : reports)
      if (r["metrics"].contains(m)) {
        cols.push_back(m);
        break;
      }
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> head = {label_key.empty() ? "model" : label_key};
  head.insert(head.end(), cols.begin(), cols.end());
  rows.push_back(head);
  for (const auto& r : reports) {
    std::vector<std::string> row = {label_key.empty() ? r["settings"]["model"].get<std::string>()
                                                      : cell(r["settings"].value(label_key, json("-")))};
    for (const auto& c : cols) row.push_back(r["metrics"].contains(c) ? cell(r["metrics"][c]) : "-");
    rows.push_back(row);
  }
  // Exact match per task, one column per task.
  std::vector<std::string> tasks;
  for (const auto& r : reports)
    if (r["metrics"].contains("exact_match_by_task"))
      for (const auto& [t, v] : r["metrics"]["exact_match_by_task"].items())
        if (std::find(tasks.begin(), tasks.end(), t) == tasks.end()) tasks.push_back(t);
  auto render = [](const std::vector<std::vector<std::string>>& table) {
    std::vector<size_t> w;
    for (const auto& row : table)
      for (size_t i = 0; i < row.size(); ++i) {
        if (w.size() <= i) w.push_back(0);
        w[i] = std::max(w[i], display_width(row[i]));
      }
    std::string out;
    for (const auto& row : table) {
      for (size_t i = 0; i < row.size(); ++i)
        out += (i ? "  " : "") + row[i] + std::string(w[i] - display_width(row[i]), ' ');
      out.erase(out.find_last_not_of(' ') + 1);
      out += '\n';
    }
    return out;
  };
  std::string out = render(rows);
  if (!tasks.empty() && tasks.size() > 1) {
    std::vector<std::vector<std::string>> per = {{head[0]}};
    for (const auto& t : tasks) per[0].push_back(t);
    for (const auto& r : reports) {
      std::vector<std::string> row = {label_key.empty() ? r["settings"]["model"].get<std::string>()
                                                        : cell(r["settings"].value(label_key, json("-")))};
      for (const auto& t : tasks) {
        const auto& m = r["metrics"];
        row.push_back(m.contains("exact_match_by_task") && m["exact_match_by_task"].contains(t)
                          ? cell(m["exact_match_by_task"][t]["exact_match"])
                          : "-");
      }
      per.push_back(row);
    }
    out += "\nexact match per task\n" + render(per);
  }
  // A benchmark's scores (--task): one column per number of its block.
  std::vector<std::string> task_cols;
  std::string task_name;
  for (const auto& r : reports)
    if (r["metrics"].contains("task")) {
      task_name = r["settings"].value("task", std::string("task"));
      for (const auto& [k, v] : r["metrics"]["task"].items())
        if (v.is_number() && std::find(task_cols.begin(), task_cols.end(), k) == task_cols.end()) task_cols.push_back(k);
    }
  if (!task_cols.empty()) {
    std::vector<std::vector<std::string>> table = {{head[0]}};
    for (const auto& c : task_cols) table[0].push_back(c);
    for (const auto& r : reports) {
      std::vector<std::string> row = {label_key.empty() ? r["settings"]["model"].get<std::string>()
                                                        : cell(r["settings"].value(label_key, json("-")))};
      const auto& t = r["metrics"].value("task", json::object());
      for (const auto& c : task_cols) row.push_back(t.contains(c) ? cell(t[c]) : "-");
      table.push_back(row);
    }
    out += "\n" + task_name + "\n" + render(table);
  }
  return out;
}

std::string sweep_svg(const std::vector<json>& reports, const std::string& setting, const std::string& title) {
  std::vector<std::string> metrics;
  for (const auto& m : kTableMetrics) {
    bool all = !reports.empty();
    for (const auto& r : reports) all = all && r["metrics"].contains(m) && r["metrics"][m].is_number();
    if (all) metrics.push_back(m);
  }
  const int pw = 300, ph = 200, margin = 50, cols = std::max<int>(1, std::min<int>(3, static_cast<int>(metrics.size())));
  int rows_n = static_cast<int>((metrics.size() + cols - 1) / cols);
  int width = cols * (pw + margin) + margin, height = rows_n * (ph + 2 * margin) + 40;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"14\">{}</text>\n",
      width, height, margin, title);
  std::vector<double> xs;
  for (const auto& r : reports) xs.push_back(r["settings"].value(setting, 0.0));
  double x0 = *std::min_element(xs.begin(), xs.end()), x1 = *std::max_element(xs.begin(), xs.end());
  bool logx = setting == "steps" && x0 > 0 && x1 / x0 >= 4;
  auto fx = [&](double x) {
    double a = logx ? std::log(x) : x, lo = logx ? std::log(x0) : x0, hi = logx ? std::log(x1) : x1;
    return hi > lo ? (a - lo) / (hi - lo) : 0.5;
  };
  for (size_t k = 0; k < metrics.size(); ++k) {
    int ox = margin + static_cast<int>(k % cols) * (pw + margin);
    int oy = 40 + static_cast<int>(k / cols) * (ph + 2 * margin);
    std::vector<double> ys;
    for (const auto& r : reports) ys.push_back(r["metrics"][metrics[k]].get<double>());
    double y0 = std::min(0.0, *std::min_element(ys.begin(), ys.end())), y1 = *std::max_element(ys.begin(), ys.end());
    if (y1 <= y0) y1 = y0 + 1;
    s += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>\n", ox, oy + 12, metrics[k]);
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", ox,
                     oy + 20, pw, ph);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", ox - 4, oy + 24, cell(json(y1)));
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", ox - 4, oy + 20 + ph, cell(json(y0)));
    std::string pts;
    for (size_t i = 0; i < ys.size(); ++i) {
      double px = ox + 10 + fx(xs[i]) * (pw - 20), py = oy + 20 + ph - (ys[i] - y0) / (y1 - y0) * ph;
      pts += fmt::format("{:.1f},{:.1f} ", px, py);
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"#1f77b4\"/>\n", px, py);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px, oy + 34 + ph,
                       cell(json(xs[i])));
    }
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n", pts);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", ox + pw / 2, oy + 48 + ph, setting);
  }
  s += "</svg>\n";
  return s;
}

}  // namespace tess::eval
