#include "core/dist/dist.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TESS_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <fmt/format.h>

#include "core/util/error.h"

namespace tess::dist {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  try {
    return std::stoi(v);
  } catch (const std::exception&) {
    throw Error(fmt::format("environment variable {}='{}' is not an integer", name, v));
  }
}

}  // namespace

void use_cuda_device(int index) {
  if (!c10::impl::hasDeviceGuardImpl(c10::DeviceType::CUDA))
    throw Error("this LibTorch has no CUDA support: cannot select a GPU");
  c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)
      ->setDevice(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index)));
}

DistEnv DistEnv::from_environment() {
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", 1);
  e.rank = env_int("RANK", 0);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", 29500);
  if (e.world_size < 1 || e.rank < 0 || e.rank >= e.world_size)
    throw Error(fmt::format("RANK={} and WORLD_SIZE={} do not describe a valid process group", e.rank, e.world_size));
  return e;
}

Dist::Dist() = default;

Dist::~Dist() {
  if (!heartbeat_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(heartbeat_mutex_);
    heartbeat_stop_ = true;
  }
  heartbeat_stop_cv_.notify_all();
  heartbeat_.join();
}

namespace {
std::string heartbeat_key(int rank) { return fmt::format("tess/heartbeat/{}", rank); }
constexpr std::chrono::milliseconds kHeartbeatPeriod{500};
std::string progress_key(int rank) { return fmt::format("tess/collectives/{}", rank); }
std::string completed_key(int rank) { return fmt::format("tess/completed/{}", rank); }
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
}  // namespace

void Dist::publish_progress(int64_t& published_entered, int64_t& published_completed) {
  int64_t entered = entered_.load(), completed = completed_.load();
  if (entered == published_entered && completed == published_completed) return;
  store_->multiSet({progress_key(env_.rank), completed_key(env_.rank)},
                   {bytes(fmt::format("{} {}", entered, entered_what_.load())), bytes(std::to_string(completed))});
  published_entered = entered;
  published_completed = completed;
}

void Dist::start_heartbeat() {
  heartbeat_ = std::thread([this] {
    int64_t published_entered = -1, published_completed = -1;
    std::unique_lock<std::mutex> lock(heartbeat_mutex_);
    while (!heartbeat_stop_cv_.wait_for(lock, kHeartbeatPeriod, [this] { return heartbeat_stop_; })) {
      try {
        publish_progress(published_entered, published_completed);
        store_->add(heartbeat_key(env_.rank), 1);
      } catch (const std::exception&) {
        // The store is gone (rank 0 ended): the collectives report that.
      }
    }
  });
}

std::shared_ptr<Dist> Dist::create(const DistEnv& env, const std::string& backend, std::chrono::milliseconds timeout,
                                   bool group_of_one) {
  auto d = std::make_shared<Dist>();
  d->env_ = env;
  d->timeout_ = timeout;
  if (env.world_size == 1 && !group_of_one) return d;

  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  // Under torchrun the elastic agent already serves the store at
  // MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True): every rank joins it.
  const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  so.isServer = env.rank == 0 && !(agent_store && std::string(agent_store) == "True");
  so.numWorkers = env.world_size;
  so.waitWorkers = true;
  so.timeout = timeout;
  try {
    d->store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    throw Error(fmt::format("rank {}: cannot reach the rendezvous at {}:{} within {} s: {}", env.rank, env.master_addr,
                            env.master_port, timeout.count() / 1000, without_backtrace(e.what())));
  }
  d->start_heartbeat();
  std::string chosen = backend;
  if (chosen == "auto") chosen = torch::cuda::is_available() ? "nccl" : "gloo";
  if (chosen == "nccl") {
#ifdef TESS_WITH_CUDA
    use_cuda_device(env.local_rank);  // before NCCL creates its communicator and context
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    d->backend_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(d->store_, env.rank, env.world_size, opts);
    d->device_ = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
#else
    throw Error("dist.backend is nccl, but this build of tess has no CUDA/NCCL support");
#endif
  } else {
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    d->backend_ = c10::make_intrusive<c10d::ProcessGroupGloo>(d->store_, env.rank, env.world_size, opts);
  }
  d->backend_name_ = chosen;
  return d;
}

void Dist::mark(const char* what) {
  ++collectives_;
  entered_what_.store(what);
  entered_.store(collectives_);
}

void Dist::publish(const std::string& key, const std::string& value) {
  if (!store_) return;
  store_->set("tess/msg/" + key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::optional<std::string> Dist::lookup(const std::string& key) {
  if (!store_ || !store_->check({"tess/msg/" + key})) return std::nullopt;
  auto raw = store_->get("tess/msg/" + key);
  return std::string(raw.begin(), raw.end());
}

std::string Dist::missing_ranks() const {
  if (!store_) return "";
  std::vector<std::string> silent, late, inside;
  try {
    store_->setTimeout(std::chrono::milliseconds(2000));
    // A rank whose heartbeat stands still for three periods is dead or frozen,
    // whatever collective it last entered.
    std::vector<int64_t> beats(static_cast<size_t>(env_.world_size));
    for (int r = 0; r < env_.world_size; ++r)
      if (r != env_.rank) beats[static_cast<size_t>(r)] = store_->add(heartbeat_key(r), 0);
    std::this_thread::sleep_for(3 * kHeartbeatPeriod);
    for (int r = 0; r < env_.world_size; ++r) {
      if (r == env_.rank) continue;
      if (store_->add(heartbeat_key(r), 0) == beats[static_cast<size_t>(r)]) {
        silent.push_back(fmt::format("rank {}", r));
        continue;
      }
      if (!store_->check({progress_key(r)})) {
        late.push_back(fmt::format("rank {} (never entered a collective)", r));
        continue;
      }
      auto raw = store_->get(progress_key(r));
      std::string v(raw.begin(), raw.end());
      int64_t n = std::stoll(v.substr(0, v.find(' ')));
      if (n < collectives_) {
        late.push_back(fmt::format("rank {} (last entered #{} '{}')", r, n, v.substr(v.find(' ') + 1)));
        continue;
      }
      // It entered this collective too: did it get out (then it waits for us
      // elsewhere) or is it stuck inside?
      int64_t done = 0;
      if (store_->check({completed_key(r)})) {
        auto c = store_->get(completed_key(r));
        done = std::stoll(std::string(c.begin(), c.end()));
      }
      if (done < collectives_) inside.push_back(fmt::format("rank {}", r));
    }
  } catch (const std::exception& e) {
    return fmt::format("; the rendezvous store on rank 0 ({}:{}) does not answer either, so rank 0 died or hung ({})",
                       env_.master_addr, env_.master_port, without_backtrace(e.what()));
  }
  auto join = [](const std::vector<std::string>& items) {
    std::string list;
    for (const auto& l : items) list += (list.empty() ? "" : ", ") + l;
    return list;
  };
  std::string out;
  if (!silent.empty())
    out += fmt::format("; no sign of life from {} for {:.1f} s (the process died or is frozen)", join(silent),
                       3 * kHeartbeatPeriod.count() / 1000.0);
  if (!late.empty()) out += fmt::format("; not arrived: {}", join(late));
  else if (!inside.empty()) out += fmt::format("; every rank arrived, stuck inside it: {}", join(inside));
  return out;
}

void Dist::fail(const char* what, const std::string& message, int64_t number) const {
  throw Error(fmt::format("rank {}: collective #{} '{}' failed or timed out after {} s{}: {}", env_.rank, number, what,
                          timeout_.count() / 1000, missing_ranks(), without_backtrace(message)));
}

void Dist::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what, int64_t number) {
  try {
    work->wait(timeout_);
  } catch (const std::exception& e) {
    fail(what, e.what(), number);
  }
  completed_.store(number);
}

namespace {

// c10d collectives take one tensor per device; several tensors of one
// process travel as one flat buffer (one message, whatever their sizes).
template <typename Collective>
void coalesced(std::vector<at::Tensor>& tensors, Collective&& run) {
  if (tensors.size() == 1 && tensors[0].is_contiguous()) {
    std::vector<at::Tensor> one{tensors[0]};
    run(one);
    return;
  }
  std::vector<at::Tensor> flat;
  for (auto& t : tensors) flat.push_back(t.reshape(-1));
  std::vector<at::Tensor> buffer{torch::cat(flat)};
  run(buffer);
  int64_t offset = 0;
  for (auto& t : tensors) {
    t.view(-1).copy_(buffer[0].narrow(0, offset, t.numel()));
    offset += t.numel();
  }
}

}  // namespace

void Dist::all_reduce_sum(std::vector<at::Tensor>& tensors, const char* what) {
  if (!backend_ || tensors.empty()) return;
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  coalesced(tensors, [&](std::vector<at::Tensor>& b) { run(what, [&] { return backend_->allreduce(b, o); }); });
}

void Dist::all_reduce_max(std::vector<at::Tensor>& tensors, const char* what) {
  if (!backend_ || tensors.empty()) return;
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  coalesced(tensors, [&](std::vector<at::Tensor>& b) { run(what, [&] { return backend_->allreduce(b, o); }); });
}

void Dist::broadcast(std::vector<at::Tensor>& tensors, int root, const char* what) {
  if (!backend_ || tensors.empty()) return;
  c10d::BroadcastOptions o;
  o.rootRank = root;
  coalesced(tensors, [&](std::vector<at::Tensor>& b) { run(what, [&] { return backend_->broadcast(b, o); }); });
}

void Dist::all_reduce_sum_start(const at::Tensor& flat, const char* what) {
  if (!backend_) return;
  if (!flat.is_contiguous()) throw Error(fmt::format("{}: an overlapped all-reduce needs a contiguous tensor", what));
  mark(what);
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  Pending p{{}, collectives_, what, {flat}};
  try {
    p.work = backend_->allreduce(p.tensors, o);
  } catch (const std::exception& e) {
    fail(what, e.what());
  }
  pending_.push_back(std::move(p));
}

void Dist::finish_pending() {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& p : pending) wait(p.work, p.what, p.number);
}

void Dist::barrier(const char* what) {
  if (!backend_) return;
  std::vector<at::Tensor> t{torch::zeros({1}, torch::TensorOptions().device(device_))};
  all_reduce_sum(t, what);
}

double Dist::sum(double value, const char* what) { return sum(std::vector<double>{value}, what)[0]; }

std::vector<double> Dist::sum(const std::vector<double>& values, const char* what) {
  if (!backend_) return values;
  std::vector<at::Tensor> t{torch::tensor(values, torch::kFloat64).to(device_)};
  all_reduce_sum(t, what);
  auto host = t[0].cpu();
  return {host.data_ptr<double>(), host.data_ptr<double>() + host.numel()};
}

}  // namespace tess::dist
