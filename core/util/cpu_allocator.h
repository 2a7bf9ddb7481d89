#pragma once
// A caching allocator for LibTorch's large CPU tensors.
//
// Through glibc malloc, a training step's multi-MB activations are served
// from the heap once glibc's dynamic mmap threshold has risen, and the freed
// heap is kept: resident memory ends well above the bytes the step's tensors
// ever hold at once. Setting a malloc threshold returns that memory but pays
// page faults and zeroing on every allocation. This allocator takes the large requests out of malloc:
// blocks are mmap'd in size classes (8 per power of two) and, once freed,
// kept for the next request that fits them (their class or up to a quarter
// smaller, as span-row counts drift between steps), so each step reuses the
// pages of the previous one. The cache is bounded: mapped bytes (live +
// cached) never grow past the highest live bytes seen so far plus 1/8,
// because a miss first unmaps the least recently freed blocks. Blocks of
// 2 MiB or more are aligned to 2 MiB and advised for transparent huge pages
// (fewer faults and TLB misses). docs/performance.md has the measured effect
// on resident memory and step time. Requests under kMinBytes stay with
// malloc, whose threshold then never rises.
#include <cstdint>

namespace tess::util {

struct CpuCacheStats {
  int64_t live = 0;        // bytes of blocks in use (size-class rounded)
  int64_t cached = 0;      // bytes of freed blocks kept for reuse
  int64_t high_water = 0;  // highest `live` since the outermost scope began
  int64_t hits = 0;        // requests served by a cached block
  int64_t misses = 0;      // requests that mapped a new block
  int64_t released = 0;    // cached blocks unmapped to stay within the bound
};

// While at least one is alive, LibTorch's CPU allocator is the cache (scopes
// may overlap: the first installs it, the last restores the previous
// allocator and unmaps the cached blocks). Tensors may outlive every scope:
// their blocks are then unmapped when freed.
class CachingCpuAllocatorScope {
 public:
  CachingCpuAllocatorScope();
  ~CachingCpuAllocatorScope();
  CachingCpuAllocatorScope(const CachingCpuAllocatorScope&) = delete;
  CachingCpuAllocatorScope& operator=(const CachingCpuAllocatorScope&) = delete;

  static CpuCacheStats stats();
  static constexpr int64_t kMinBytes = int64_t{128} << 10;
  // The mapped size serving a request of `bytes` (>= kMinBytes): rounded up to
  // an eighth of its power of two, and to whole pages.
  static int64_t size_class(int64_t bytes);
};

}  // namespace tess::util
