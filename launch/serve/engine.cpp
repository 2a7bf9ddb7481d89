#include "launch/serve/engine.h"

#include <algorithm>
#include <random>
#include <set>

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/diffusion/continuous_sampler.h"
#include "core/diffusion/diffusion_lm.h"
#include "core/diffusion/guidance.h"
#include "core/model/reward_model.h"
#include "core/util/error.h"
#include "core/util/rng.h"
#include "data/tokenizer.h"
#include "eval/generate.h"

namespace tess::serve {

// ---- Job ---------------------------------------------------------------------------

bool Job::next(StepEvent& event, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !steps_.empty() || finished_; });
  if (steps_.empty()) return false;
  event = std::move(steps_.front());
  steps_.pop_front();
  return true;
}

bool Job::finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_;
}

void Job::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return finished_; });
}

void Job::push(StepEvent event) {
  std::lock_guard<std::mutex> lock(mutex_);
  steps_.push_back(std::move(event));
  cv_.notify_all();
}

void Job::finish(std::string error) {
  std::lock_guard<std::mutex> lock(mutex_);
  choices_ = done_;
  error_ = std::move(error);
  finished_ = true;
  cv_.notify_all();
}

// ---- Engine ------------------------------------------------------------------------

struct Engine::Impl {
  std::unique_ptr<data::Tokenizer> tok;
  diffusion::DiffusionLM lm{nullptr};
  model::RewardModel rm{nullptr};
  c10::Device device{c10::kCPU};
  std::unique_ptr<diffusion::ContinuousSampler> sampler;
  struct RowRef {
    std::shared_ptr<Job> job;
    size_t choice;
  };
  std::map<int64_t, RowRef> rows;

  std::string decode(const std::vector<int64_t>& ids) const { return eval::decode_generated(*tok, ids); }
  std::vector<int64_t> cut(const std::vector<int64_t>& ids) const {
    return eval::cut_at(ids, tok->eos_id(), tok->pad_id());
  }
  // Each token's share of the decoded text (the pieces concatenate to it).
  ChoiceStep view(size_t index, const std::vector<int64_t>& tokens, const std::vector<float>& confidence) const {
    ChoiceStep c;
    c.index = static_cast<int64_t>(index);
    auto ids = cut(tokens);
    c.text = decode(ids);
    std::string before;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto now = decode({ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i + 1)});
      bool extends = now.compare(0, before.size(), before) == 0;
      std::string piece = extends ? now.substr(before.size()) : decode({ids[i]});
      c.pieces.push_back(piece);
      if (i < confidence.size()) c.confidence.push_back(confidence[i]);
      before = extends ? now : before + piece;
    }
    if (before != c.text) c.pieces = {c.text}, c.confidence.resize(std::min<size_t>(1, c.confidence.size()));
    return c;
  }
  Choice choice(const Request& req, const std::vector<int64_t>& answer, int64_t steps) const {
    auto ids = cut(answer);
    bool ended = ids.size() < answer.size();  // it met EOS/PAD
    Choice c;
    c.text = decode(ids);
    c.steps = steps;
    c.tokens = static_cast<int64_t>(ids.size());
    bool stopped = cut_at_stop(c.text, req.stop);
    if (stopped) {  // count the tokens the kept text needs
      int64_t k = 0;
      while (k < static_cast<int64_t>(ids.size()) && decode({ids.begin(), ids.begin() + k}).size() < c.text.size()) ++k;
      c.tokens = k;
    }
    c.finish_reason = ended || stopped ? "stop" : "length";
    return c;
  }
};

Engine::Engine(EngineOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.device = eval::generation_device(options_.device);
  m.tok = data::load_tokenizer(options_.model);
  m.lm = eval::load_sampling_lm(options_.model, m.device);
  const auto& config = m.lm->decoder->config();
  max_positions_ = config.max_position_embeddings;
  eval::check_tokenizer_fits(*m.tok, config, options_.model);
  if (options_.max_batch < 1) throw Error(fmt::format("--max-batch must be >= 1, got {}", options_.max_batch));
  if (options_.max_queue < 0) throw Error(fmt::format("--max-queue must be >= 0, got {}", options_.max_queue));
  diffusion::ContinuousSampler::Guidance guidance;
  if (!options_.reward_model.empty()) {
    m.rm = eval::load_guidance_model(*m.tok, options_.model, config.vocab_size, options_.reward_model, m.device);
    int64_t eos = m.tok->eos_id();
    guidance = [this, eos](const torch::Tensor& logits, const diffusion::SampleBatch& row,
                           const diffusion::SpanIndex& span, double scale) {
      diffusion::RewardGuidance g(*impl_->rm, scale, eos, diffusion::RewardRead::Last);
      return g.hook(row)(0, logits, span);
    };
  }
  diffusion::ContinuousSampler::Options so;
  so.simplex_value = m.lm->noise.simplex_value;
  so.schedule = diffusion::parse_schedule(m.lm->noise.schedule);
  so.pad_id = m.tok->pad_id() >= 0 ? m.tok->pad_id() : m.tok->eos_id();
  so.allowed_vocab = m.tok->vocab_size();
  so.device = m.device;
  m.sampler = std::make_unique<diffusion::ContinuousSampler>(*m.lm, so, guidance);
  id_nonce_ = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ static_cast<uint64_t>(std::random_device{}()) ^
              static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

const data::Tokenizer& Engine::tokenizer() const { return *impl_->tok; }

Limits Engine::limits(int64_t steps, int64_t max_tokens, double top_p) const {
  Limits l;
  l.steps = steps;
  l.max_tokens = max_tokens;
  l.top_p = top_p;
  l.max_n = options_.max_batch;
  l.guidance = static_cast<bool>(impl_->rm);
  return l;
}

std::shared_ptr<Job> Engine::submit(Request request, const std::string& model_id) {
  if (draining_) throw ApiError(503, "the server is shutting down and accepts no new requests");
  auto job = std::make_shared<Job>();
  const auto& tok = *impl_->tok;
  std::vector<int32_t> ids;
  if (request.endpoint == Endpoint::Chat) {
    ids = data::encode_prompt(tok, request.chat);
  } else {
    if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    auto text = tok.encode(request.text);
    ids.insert(ids.end(), text.begin(), text.end());
  }
  auto total = static_cast<int64_t>(ids.size()) + request.max_tokens;
  if (total > max_positions_)
    throw ApiError(400,
                   fmt::format("the prompt has {} tokens: with max_tokens {} that is {} positions, more than the "
                               "model's context of {}",
                               ids.size(), request.max_tokens, total, max_positions_),
                   request.endpoint == Endpoint::Chat ? "messages" : "prompt", "context_length_exceeded");
  job->prompt.assign(ids.begin(), ids.end());
  job->submitted = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  // Queued jobs that fit the batch's free rows join it at the next step
  // (admit() takes them in order and stops at the first that does not fit);
  // the rest wait, and at most --max-queue may.
  int64_t free_rows = 0, waiting = waiting_locked(&free_rows);
  bool waits = waiting > 0 || request.n > free_rows;
  if (waits && waiting >= options_.max_queue)
    throw ApiError(429,
                   fmt::format("the server is busy: {} requests are waiting (--max-queue {}); retry shortly",
                               waiting, options_.max_queue),
                   "", "rate_limit_exceeded");
  int64_t k = requests_seen_++;
  job->head.seed = request.seed ? *request.seed : util::derive_seed(options_.seed, fmt::format("request.{}", k));
  job->head.id = fmt::format("{}-{:016x}", request.endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl",
                             util::derive_seed(id_nonce_, fmt::format("id.{}", k)));
  job->head.model = model_id;
  job->head.created = static_cast<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count());
  job->head.prompt_tokens = static_cast<int64_t>(ids.size());
  job->request = std::move(request);
  queue_.push_back(job);
  cv_.notify_all();
  return job;
}

void Engine::drain() {
  draining_ = true;
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.notify_all();
  idle_.wait(lock, [&] { return queue_.empty() && rows_running_ == 0; });
}

int64_t Engine::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return rows_running_;
}

int64_t Engine::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_locked(nullptr);
}

int64_t Engine::waiting_locked(int64_t* free_rows) const {
  int64_t free = options_.max_batch - rows_running_, waiting = 0;
  for (const auto& j : queue_) {
    if (waiting == 0 && j->request.n <= free)
      free -= j->request.n;
    else
      ++waiting;
  }
  if (free_rows) *free_rows = free;
  return waiting;
}

void Engine::admit() {
  auto& m = *impl_;
  // Waiting jobs whose client went away leave the queue (and stop counting against --max-queue).
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->cancelled()) {
      (*it)->finish("cancelled");
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  while (!queue_.empty()) {
    auto job = queue_.front();
    if (rows_running_ + job->request.n > options_.max_batch) break;
    queue_.pop_front();
    const auto& r = job->request;
    job->done_.assign(static_cast<size_t>(r.n), Choice{});
    job->rows_left_ = r.n;
    for (int64_t i = 0; i < r.n; ++i) {
      diffusion::RowSpec spec;
      spec.prompt = job->prompt;
      spec.span_length = r.max_tokens;
      spec.steps = r.steps;
      spec.top_p = r.sampler_top_p();
      spec.temperature = r.sampler_temperature();
      spec.stop.enabled = r.adaptive;
      spec.stop.freeze = r.freeze;
      spec.stop.stable_steps = r.stable_steps;
      spec.stop.margin = r.margin;
      spec.stop.end_id = m.tok->eos_id();
      spec.stop.pad_id = m.tok->pad_id() >= 0 ? m.tok->pad_id() : m.tok->eos_id();
      spec.guidance_scale = r.guidance_scale;
      spec.seed = job->head.seed;
      // Choice 0 draws what `tess generate --seed S` draws.
      spec.stream = i == 0 ? "generate" : fmt::format("generate.choice.{}", i);
      m.rows[m.sampler->add(std::move(spec))] = {job, static_cast<size_t>(i)};
      ++rows_running_;
    }
  }
}

void Engine::run_step() {
  auto& m = *impl_;
  // Rows of cancelled jobs leave first.
  for (auto it = m.rows.begin(); it != m.rows.end();) {
    if (it->second.job->cancelled()) {
      m.sampler->remove(it->first);
      auto job = it->second.job;
      it = m.rows.erase(it);
      if (--job->rows_left_ == 0) job->finish("cancelled");
    } else {
      ++it;
    }
  }
  if (m.sampler->empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    rows_running_ = 0;
    idle_.notify_all();
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto rows = static_cast<int64_t>(m.sampler->size());
  std::vector<diffusion::RowUpdate> updates;
  try {
    updates = m.sampler->step([&](int64_t id) { return m.rows.at(id).job->request.stream_steps; });
  } catch (const std::exception& e) {  // fail every job in the batch, keep serving
    spdlog::error("tess serve: a denoising step failed: {}", e.what());
    std::set<Job*> failed;
    for (auto& [id, ref] : m.rows) {
      m.sampler->remove(id);
      if (failed.insert(ref.job.get()).second) ref.job->finish(fmt::format("the denoising step failed: {}", e.what()));
    }
    m.rows.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    rows_running_ = 0;
    idle_.notify_all();
    return;
  }
  metrics_.step(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), rows);
  std::map<Job*, StepEvent> step_events;  // this step's, per job that streams steps
  std::vector<std::shared_ptr<Job>> streaming, done;
  for (const auto& u : updates) {
    auto ref = m.rows.at(u.id);
    auto& job = *ref.job;
    if (job.request.stream_steps) {
      auto& e = step_events[&job];
      if (e.choices.empty()) streaming.push_back(ref.job);
      e.step = u.step;
      e.steps = u.steps;
      e.t = u.t;
      e.choices.push_back(m.view(ref.choice, u.prediction, u.confidence));
    }
    if (u.finished) {
      job.done_[ref.choice] = m.choice(job.request, u.answer, u.step);
      if (job.request.freeze) job.done_[ref.choice].frozen = u.frozen;
      m.rows.erase(u.id);
      if (--job.rows_left_ == 0) done.push_back(ref.job);
    }
  }
  for (auto& job : streaming) job->push(std::move(step_events[job.get()]));
  for (auto& job : done) {
    int64_t steps = 0, tokens = 0;
    for (const auto& c : job->done_) steps += c.steps, tokens += c.tokens;
    metrics_.finished(std::chrono::duration<double>(std::chrono::steady_clock::now() - job->submitted).count(), steps,
                      tokens);
    job->finish();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  rows_running_ = static_cast<int64_t>(m.rows.size());
  idle_.notify_all();
}

void Engine::loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || rows_running_ > 0; });
      if (stop_) break;
      admit();
    }
    run_step();
  }
  // Stopped: whatever is left is refused (drain() finishes it first when asked).
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& job : queue_) job->finish("the server stopped");
  for (auto& [id, ref] : impl_->rows)
    if (!ref.job->finished()) ref.job->finish("the server stopped");
}

}  // namespace tess::serve
