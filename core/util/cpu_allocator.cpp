#include "core/util/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace tess::util {
namespace {

constexpr uint8_t kPriority = 255;
constexpr size_t kPage = 4096, kHugePage = size_t{2} << 20;  // x86-64's; other page sizes skip the alignment

class CachingCpuAllocator final : public c10::Allocator {
 public:
  static CachingCpuAllocator& instance() {
    static auto* a = new CachingCpuAllocator();  // outlives every tensor it allocated
    return *a;
  }

  // Simple data pointers (data == context), as oneDNN's raw_allocate requires.
  // Small blocks (and all blocks while inactive: left installed under a
  // TensorMemoryScope that outlived the last cache scope) are malloc's and
  // carry its deleter, so their frees skip the cache's lock; release() still
  // takes them when they come back through raw_deleter().
  c10::DataPtr allocate(size_t n) override {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (static_cast<int64_t>(n) < CachingCpuAllocatorScope::kMinBytes || scopes_.load() == 0) {
      void* p = c10::alloc_cpu(n);
      return {p, p, &c10::free_cpu, cpu};
    }
    void* p = take(n);
    return {p, p, &release, cpu};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  void enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (scopes_++ > 0) return;
    previous_ = c10::GetCPUAllocator();
    c10::SetCPUAllocator(this, kPriority);
  }
  void leave() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--scopes_ > 0) return;
    // Another allocator installed over this one (a TensorMemoryScope) keeps
    // its place and delegates here until it restores us.
    if (c10::GetCPUAllocator() == this) c10::SetCPUAllocator(previous_, kPriority);
    while (!lru_.empty()) evict_oldest();
    stats_.high_water = stats_.live;  // the next scope bounds its cache by its own peak
  }
  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  struct Block {
    void* p;
    int64_t bytes;
  };
  using Lru = std::list<Block>;

  void* take(size_t n) {
    int64_t bytes = CachingCpuAllocatorScope::size_class(static_cast<int64_t>(n));
    std::lock_guard<std::mutex> lock(mutex_);
    void* p = nullptr;
    // The smallest cached block that fits, up to a quarter larger (two
    // classes): requests whose size drifts between steps, as span-row counts
    // do, still find the previous step's block.
    if (auto it = free_.lower_bound(bytes); it != free_.end() && it->first <= bytes + bytes / 4) {
      auto block = it->second.back();  // the most recently freed: its pages are the likeliest in cache
      bytes = it->first;
      p = block->p;
      lru_.erase(block);
      it->second.pop_back();
      if (it->second.empty()) free_.erase(it);
      stats_.cached -= bytes;
      ++stats_.hits;
    } else {
      const int64_t bound = stats_.high_water + stats_.high_water / 8;
      while (!lru_.empty() && stats_.live + stats_.cached + bytes > bound) evict_oldest();
      p = map(bytes);
      ++stats_.misses;
    }
    live_.emplace(p, bytes);
    stats_.live += bytes;
    stats_.high_water = std::max(stats_.high_water, stats_.live);
    return p;
  }

  static void release(void* p) {
    if (p == nullptr) return;
    auto& a = instance();
    {
      std::lock_guard<std::mutex> lock(a.mutex_);
      auto it = a.live_.find(p);
      if (it != a.live_.end()) {
        const int64_t bytes = it->second;
        a.live_.erase(it);
        a.stats_.live -= bytes;
        if (a.scopes_ > 0) {
          a.free_[bytes].push_back(a.lru_.insert(a.lru_.end(), Block{p, bytes}));
          a.stats_.cached += bytes;
        } else {
          munmap(p, static_cast<size_t>(bytes));
        }
        return;
      }
    }
    c10::free_cpu(p);  // a small block, from malloc
  }

  void* map(int64_t bytes) {
    void* p = map_pages(static_cast<size_t>(bytes));
    if (p == nullptr) {
      while (!lru_.empty()) evict_oldest();
      p = map_pages(static_cast<size_t>(bytes));
    }
    TORCH_CHECK(p != nullptr, "CPU allocator: cannot map ", bytes, " bytes for a tensor (", std::strerror(errno),
                "); ", stats_.live, " bytes are in use");
    return p;
  }

  // Blocks of a huge page or more start on a huge-page boundary and are
  // advised for transparent huge pages: 512x fewer page faults and TLB
  // entries for the activations the matmuls stream through.
  static void* map_pages(size_t bytes) {
    static const bool huge_pages = static_cast<size_t>(sysconf(_SC_PAGESIZE)) == kPage;
    const bool huge = huge_pages && bytes >= kHugePage;
    const size_t length = huge ? bytes + kHugePage - kPage : bytes;
    void* raw = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    if (!huge) return raw;
    const auto start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1), end = aligned + bytes;
    if (aligned > start) munmap(raw, aligned - start);
    if (start + length > end) munmap(reinterpret_cast<void*>(end), start + length - end);
    madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // advice: a kernel without THP ignores it
    return reinterpret_cast<void*>(aligned);
  }

  void evict_oldest() {
    Block b = lru_.front();
    auto same = free_.find(b.bytes);
    auto& blocks = same->second;
    blocks.erase(std::find_if(blocks.begin(), blocks.end(), [&](const Lru::iterator& i) { return i->p == b.p; }));
    if (blocks.empty()) free_.erase(same);
    lru_.pop_front();
    munmap(b.p, static_cast<size_t>(b.bytes));
    stats_.cached -= b.bytes;
    ++stats_.released;
  }

  std::mutex mutex_;
  std::atomic<int> scopes_{0};
  c10::Allocator* previous_ = nullptr;
  Lru lru_;                                                 // cached blocks, least recently freed first
  std::map<int64_t, std::vector<Lru::iterator>> free_;  // cached blocks by size class, none empty
  std::unordered_map<void*, int64_t> live_;                 // mapped blocks in use
  CpuCacheStats stats_;
};

}  // namespace

CachingCpuAllocatorScope::CachingCpuAllocatorScope() { CachingCpuAllocator::instance().enter(); }
CachingCpuAllocatorScope::~CachingCpuAllocatorScope() { CachingCpuAllocator::instance().leave(); }
CpuCacheStats CachingCpuAllocatorScope::stats() { return CachingCpuAllocator::instance().stats(); }

int64_t CachingCpuAllocatorScope::size_class(int64_t bytes) {
  const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(std::max<int64_t>(bytes, 1)));
  const int64_t granule = int64_t{1} << std::max(msb - 3, 12);
  return (bytes + granule - 1) / granule * granule;
}

}  // namespace tess::util
