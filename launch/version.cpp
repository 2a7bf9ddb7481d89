#include <torch/cuda.h>
#include <torch/version.h>

#include <fmt/format.h>

#include "launch/cli.h"

namespace tess {
extern const char* const kGitCommit;
}

namespace tess::cli {

#ifndef TESS_VERSION
#define TESS_VERSION "0.1.0"
#endif

std::string version_text() {
#ifdef TESS_WITH_CUDA
  std::string cuda = torch::cuda::is_available()
                         ? fmt::format("CUDA available ({} device(s))", torch::cuda::device_count())
                         : std::string("built with CUDA/NCCL, no GPU available");
#else
  std::string cuda = "CPU-only build";
#endif
  return fmt::format("tess {} (git {})\nLibTorch {}, {}\n", TESS_VERSION, kGitCommit, TORCH_VERSION, cuda);
}

}  // namespace tess::cli
