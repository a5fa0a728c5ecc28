// Counts heap allocations of the whole process: replaces the global
// operator new/delete. Include it from exactly one .cc of a benchmark or test
// binary; read Allocations() before and after the code measured.
#ifndef SALVO_BENCH_ALLOC_COUNTER_H_
#define SALVO_BENCH_ALLOC_COUNTER_H_

#include <atomic>
#include <cstdlib>
#include <new>

namespace salvo::bench {
inline std::atomic<long> g_allocations{0};
inline long Allocations() {
  return g_allocations.load(std::memory_order_relaxed);
}
}  // namespace salvo::bench

void* operator new(size_t n) {
  salvo::bench::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

#endif  // SALVO_BENCH_ALLOC_COUNTER_H_
