#include "core/util/tensor_memory.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

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
    void* p = underlying->raw_allocate(n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks_[p] = {n, underlying->raw_deleter()};
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
  c10::Allocator* underlying = nullptr;  // the allocator this scope found installed

 private:
  struct Block {
    size_t bytes;
    c10::DeleterFnPtr deleter;
  };
  static void release(void* p) {
    auto& a = instance();
    Block b;
    {
      std::lock_guard<std::mutex> lock(a.mutex_);
      auto it = a.blocks_.find(p);
      b = it->second;
      a.live_ -= static_cast<int64_t>(b.bytes);
      a.blocks_.erase(it);
    }
    b.deleter(p);
  }
  std::mutex mutex_;
  std::unordered_map<void*, Block> blocks_;
  int64_t live_ = 0, peak_ = 0;
};

constexpr uint8_t kPriority = 255;

}  // namespace

TensorMemoryScope::TensorMemoryScope() : previous_(c10::GetCPUAllocator()) {
  auto& counting = CountingAllocator::instance();
  if (counting.active) throw Error("TensorMemoryScope: scopes do not nest");
  counting.active = true;
  counting.underlying = static_cast<c10::Allocator*>(previous_);
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
