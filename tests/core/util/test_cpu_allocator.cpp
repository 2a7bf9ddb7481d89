#include <catch2/catch.hpp>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "core/util/cpu_allocator.h"
#include "core/util/rng.h"
#include "core/util/tensor_memory.h"

using tess::util::CachingCpuAllocatorScope;

namespace {

// A float tensor whose storage takes `bytes` (rounded down to floats).
torch::Tensor tensor_of(int64_t bytes) { return torch::empty({bytes / 4}, torch::kFloat32); }

}  // namespace

TEST_CASE("cpu allocator: size classes are eighths of a power of two, in whole pages", "[unit][util]") {
  constexpr int64_t K = 1024;
  CHECK(CachingCpuAllocatorScope::size_class(128 * K) == 128 * K);
  CHECK(CachingCpuAllocatorScope::size_class(128 * K + 1) == 144 * K);
  CHECK(CachingCpuAllocatorScope::size_class(1024 * K + 1) == 1152 * K);
  CHECK(CachingCpuAllocatorScope::size_class(4 * K * K - 1) == 4 * K * K);
  CHECK(CachingCpuAllocatorScope::size_class(7 * K * K + 5) == 7 * K * K + 512 * K);
  CHECK(CachingCpuAllocatorScope::size_class(5000) == 8 * K);  // under 32 KiB: whole pages
  for (int64_t n = 100 * K; n < 40 * K * K; n = n * 9 / 7 + 13) {
    int64_t c = CachingCpuAllocatorScope::size_class(n);
    CHECK(c >= n);
    CHECK(c % 4096 == 0);
    CHECK(c - n < n / 8 + 4096);  // at most an eighth wasted
  }
}

TEST_CASE("cpu allocator: a freed large tensor's block serves the next request of its size class", "[unit][util]") {
  c10::Allocator* system = c10::GetCPUAllocator();
  {
    CachingCpuAllocatorScope scope;
    CHECK(c10::GetCPUAllocator() != system);
    auto before = CachingCpuAllocatorScope::stats();
    void* first = nullptr;
    {
      auto t = tensor_of(3 << 20);
      t.fill_(1.5f);
      first = t.data_ptr();
      CHECK(CachingCpuAllocatorScope::stats().live == before.live + (3 << 20));
    }
    auto freed = CachingCpuAllocatorScope::stats();
    CHECK(freed.live == before.live);
    CHECK(freed.cached >= before.cached + (3 << 20));
    // 3 MiB - 100 KiB rounds up to the same class (granule 256 KiB).
    auto again = tensor_of((3 << 20) - 100 * 1024);
    CHECK(again.data_ptr() == first);
    CHECK(CachingCpuAllocatorScope::stats().hits == freed.hits + 1);
    again.fill_(2.0f);  // the memory is usable and arithmetic on it is ordinary
    CHECK(again.sum().item<double>() == Approx(2.0 * again.numel()));
    // Small tensors stay with malloc: the cache does not see them.
    auto small = tensor_of(64 * 1024);
    CHECK(CachingCpuAllocatorScope::stats().live == before.live + (3 << 20));
    auto empty = torch::empty({0});
    CHECK(empty.numel() == 0);
  }
  // The last scope restores LibTorch's allocator and unmaps the cache.
  CHECK(c10::GetCPUAllocator() == system);
  CHECK(CachingCpuAllocatorScope::stats().cached == 0);
}

TEST_CASE("cpu allocator: blocks of 2 MiB or more start on a huge-page boundary", "[unit][util]") {
  CachingCpuAllocatorScope scope;
  std::vector<torch::Tensor> kept;
  for (int64_t bytes : {int64_t{2} << 20, (int64_t{5} << 20) + 12345, int64_t{33} << 20}) {
    kept.push_back(tensor_of(bytes).fill_(1.0f));
    CHECK(reinterpret_cast<uintptr_t>(kept.back().data_ptr()) % (2 << 20) == 0);
    CHECK(kept.back().sum().item<double>() == static_cast<double>(kept.back().numel()));
  }
  auto small = tensor_of(512 << 10);  // under a huge page: page-aligned only, at least LibTorch's 64 bytes
  CHECK(reinterpret_cast<uintptr_t>(small.data_ptr()) % 4096 == 0);
}

TEST_CASE("cpu allocator: mapped bytes never exceed the highest live bytes plus an eighth", "[unit][util]") {
  CachingCpuAllocatorScope scope;
  tess::util::Rng rng(7, "test.cpu_allocator");
  std::vector<torch::Tensor> live;
  auto start = CachingCpuAllocatorScope::stats();
  for (int i = 0; i < 400; ++i) {
    // Steps of a "training loop" whose request sizes drift, as span counts do.
    int64_t bytes = (256 << 10) + static_cast<int64_t>(rng.uniform() * (6 << 20));
    live.push_back(tensor_of(bytes));
    if (live.size() > 12 || rng.uniform() < 0.4) live.erase(live.begin() + static_cast<int64_t>(rng.uniform() * live.size()));
    auto s = CachingCpuAllocatorScope::stats();
    INFO("request " << i << ": live " << s.live << ", cached " << s.cached << ", high water " << s.high_water);
    REQUIRE(s.live + s.cached <= s.high_water + s.high_water / 8);
  }
  auto end = CachingCpuAllocatorScope::stats();
  CHECK(end.hits > start.hits);
  CHECK(end.released > start.released);  // the bound was reached and old blocks unmapped
}

TEST_CASE("cpu allocator: a request up to a quarter smaller than a cached block reuses it", "[unit][util]") {
  CachingCpuAllocatorScope scope;
  void* block = nullptr;
  { auto t = tensor_of(8 << 20); block = t.data_ptr(); }
  // 6.5 MiB: a class of its own, 8/6.5 = 1.23x: the 8 MiB block serves it.
  { auto t = tensor_of(int64_t{13} << 19); CHECK(t.data_ptr() == block); }
  // 6 MiB: 8/6 = 1.33x would waste a third: a new block.
  auto t = tensor_of(6 << 20);
  CHECK(t.data_ptr() != block);
}

TEST_CASE("cpu allocator: at the bound, the least recently freed blocks are unmapped first", "[unit][util]") {
  CachingCpuAllocatorScope scope;  // the outermost scope: the high-water mark starts from what is live now
  auto start = CachingCpuAllocatorScope::stats();
  REQUIRE(start.cached == 0);
  REQUIRE(start.live == 0);
  auto x = tensor_of(8 << 20), y = tensor_of(8 << 20);  // high water + 16 MiB: the bound allows 2 more
  void* y_block = y.data_ptr();
  x = torch::Tensor();  // freed first
  y = torch::Tensor();
  auto z = tensor_of(3 << 20);  // fits neither (8/3 > 1.25): 16 + 3 cached and live > 16 + 2
  auto s = CachingCpuAllocatorScope::stats();
  CHECK(s.released == start.released + 1);
  CHECK(s.cached == 8 << 20);
  CHECK(tensor_of(8 << 20).data_ptr() == y_block);  // y's block was kept
}

TEST_CASE("cpu allocator: tensors outliving every scope are unmapped when freed", "[unit][util]") {
  torch::Tensor survivor;
  {
    CachingCpuAllocatorScope scope;
    survivor = tensor_of(2 << 20).fill_(3.0f);
  }
  auto s = CachingCpuAllocatorScope::stats();
  CHECK(survivor.sum().item<double>() == Approx(3.0 * survivor.numel()));
  survivor = torch::Tensor();
  auto after = CachingCpuAllocatorScope::stats();
  CHECK(after.live == s.live - (2 << 20));
  CHECK(after.cached == 0);
}

TEST_CASE("cpu allocator: a TensorMemoryScope over it counts requested bytes and frees into the cache", "[unit][util]") {
  CachingCpuAllocatorScope scope;
  int64_t hits = 0;
  {
    tess::util::TensorMemoryScope counting;
    auto before = CachingCpuAllocatorScope::stats();
    { auto t = tensor_of(1000 * 1024); CHECK(counting.live() == 1000 * 1024); }
    CHECK(counting.live() == 0);
    CHECK(CachingCpuAllocatorScope::stats().cached >= before.cached + 1024 * 1024);
    auto again = tensor_of(1000 * 1024);
    hits = CachingCpuAllocatorScope::stats().hits - before.hits;
  }
  CHECK(hits == 1);
}

TEST_CASE("cpu allocator: running out of address space is an error naming the request, not a crash", "[unit][util]") {
  // In a child process whose address space is capped 256 MiB above what it
  // maps now, a 1 GiB tensor cannot be mapped.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    rlimit cap{};
    cap.rlim_cur = cap.rlim_max = static_cast<rlim_t>(pages) * 4096 + (rlim_t{256} << 20);
    if (setrlimit(RLIMIT_AS, &cap) != 0) _exit(3);
    CachingCpuAllocatorScope scope;
    try {
      auto t = torch::empty({int64_t{1} << 28}, torch::kFloat32);  // 1 GiB
      _exit(1);
    } catch (const c10::Error& e) {
      std::string what = e.what();
      _exit(what.find("CPU allocator: cannot map 1073741824 bytes for a tensor") != std::string::npos ? 0 : 2);
    }
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // 1: mapped anyway, 2: another message, 3: no rlimit
}
