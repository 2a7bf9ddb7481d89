#include "core/util/tensor_memory.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "core/util/error.h"

namespace tess::util {
namespace {

class CountingAllocator final : public c10::Allocator {
 public:
  // Simple data pointers (data == context), as oneDNN's raw_allocate requires.
  c10::DataPtr allocate(size_t n) override {
    void* p = c10::alloc_cpu(n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[p] = n;
      live_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, live_);
    }
    return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  int64_t live() {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_;
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = live_;
  }
  static CountingAllocator& instance() {
    static auto* a = new CountingAllocator();  // outlives every tensor it allocated
    return *a;
  }
  bool active = false;

 private:
  static void release(void* p) {
    auto& a = instance();
    {
      std::lock_guard<std::mutex> lock(a.mutex_);
      auto it = a.sizes_.find(p);
      a.live_ -= static_cast<int64_t>(it->second);
      a.sizes_.erase(it);
    }
    c10::free_cpu(p);
  }
  std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;
  int64_t live_ = 0, peak_ = 0;
};

constexpr uint8_t kPriority = 255;

}  // namespace

TensorMemoryScope::TensorMemoryScope() : previous_(c10::GetCPUAllocator()) {
  auto& counting = CountingAllocator::instance();
  if (counting.active) throw Error("TensorMemoryScope: scopes do not nest");
  counting.active = true;
  counting.reset_peak();
  c10::SetCPUAllocator(&counting, kPriority);
}

TensorMemoryScope::~TensorMemoryScope() {
  c10::SetCPUAllocator(static_cast<c10::Allocator*>(previous_), kPriority);
  CountingAllocator::instance().active = false;
}

int64_t TensorMemoryScope::live() const { return CountingAllocator::instance().live(); }
int64_t TensorMemoryScope::peak() const { return CountingAllocator::instance().peak(); }
void TensorMemoryScope::reset_peak() { CountingAllocator::instance().reset_peak(); }

}  // namespace tess::util
