#include "train/training.h"

#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/config/config.h"
#include "core/dist/dist.h"
#include "core/util/cpu.h"
#include "core/util/error.h"
#include "train/checkpoint_manager.h"
#include "train/stage.h"
#include "train/train_step.h"
#include "train/weight_update.h"

namespace tess::train {
namespace {

// run.device: auto = CUDA when LibTorch sees a GPU; each process of a node
// takes the GPU of its LOCAL_RANK.
at::Device resolve_device(const config::Config& cfg, int local_rank) {
  const auto& setting = cfg.get_string("run.device");
  bool cuda = torch::cuda::is_available();
  if (setting == "cpu" || (setting == "auto" && !cuda)) return at::kCPU;
  if (!cuda)
    throw Error(fmt::format("{}: run.device is cuda, but LibTorch sees no CUDA device (no GPU, no driver, or "
                            "CUDA_VISIBLE_DEVICES hides them)",
                            cfg.origin("run.device").where));
  auto count = static_cast<int>(torch::cuda::device_count());
  if (local_rank >= count)
    throw Error(fmt::format("LOCAL_RANK is {} but only {} CUDA device(s) are visible: start at most one process "
                            "per GPU",
                            local_rank, count));
  dist::use_cuda_device(local_rank);  // before the model and the first allocation
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
}

}  // namespace

Training::Training() = default;
Training::Training(Training&&) noexcept = default;
Training& Training::operator=(Training&&) noexcept = default;
Training::~Training() = default;

Training Training::build(const config::Config& cfg, dist::Dist& dist) { return build(cfg, dist, make_stage); }

Training Training::build(const config::Config& cfg, dist::Dist& dist, const StageFactory& factory) {
  Training t;
  t.options = TrainOptions::from_config(cfg);
  t.device = resolve_device(cfg, dist.local_rank());
  if (dist.world_size() > 1 && dist.device() != t.device)
    throw Error(fmt::format("run.device resolves to {} but the process group ({}) works on {}: use dist.backend "
                            "nccl with CUDA and gloo on CPU",
                            t.device.str(), dist.backend_name(), dist.device().str()));
  StageContext ctx{dist.rank(), dist.world_size(), t.options.grad_accum,
                   static_cast<uint64_t>(cfg.get_int("run.seed")), t.device.str()};
  t.stage = factory(cfg, ctx);
  t.stage->module().to(t.device);  // parameters keep their identity: the optimizer and hooks see the moved tensors
  t.params = t.stage->parameters();
  for (auto& p : t.params) p.decay = AdamW::default_decay(p.name, t.options.decay_norms_and_embeddings);
  if (t.options.precision != Precision::Fp32 && t.device.is_cpu() && !util::cpu_has_native_bf16())
    spdlog::warn("train.precision {} (set at {}) on a CPU without native bf16 matmuls (no AVX512_BF16 or AMX): "
                 "LibTorch emulates them, typically 10-100x slower than fp32; train.precision fp32 with "
                 "model.dtype float32 is the fast choice here",
                 config::precision_choices().name(t.options.precision), cfg.origin("train.precision").where);
  t.update = std::make_unique<WeightUpdate>(
      t.params, WeightUpdate::Options{t.options.adamw, t.options.master_weights(), t.options.zero}, dist);
  t.step = std::make_unique<TrainStep>(t.options, *t.stage, *t.update, dist, t.device, t.params);
  t.checkpoints = std::make_unique<CheckpointManager>(cfg.get_string("run.dir"),
                                                      CheckpointManager::Options::from_config(cfg), dist, *t.stage,
                                                      *t.update, t.params);
  t.total_steps = t.options.steps(t.stage->samples_per_epoch(), dist.world_size());
  // Every rank starts from rank 0's weights.
  std::vector<at::Tensor> tensors;
  for (auto& p : t.params) tensors.push_back(p.tensor.detach());
  dist.broadcast(tensors, 0, "initial parameter broadcast");
  return t;
}

}  // namespace tess::train
