#include "engine/core/malloc_stats.h"

#include <cstddef>

// jemalloc's control interface. Weak: a program that does not link jemalloc
// resolves it to null instead of failing to link.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp,
                       void* newp, size_t newlen) __attribute__((weak));

namespace salvo::core {
namespace {

bool ReadSize(const char* name, int64_t* out) {
  size_t value = 0;
  size_t len = sizeof(value);
  if (mallctl(name, &value, &len, nullptr, 0) != 0) return false;
  *out = static_cast<int64_t>(value);
  return true;
}

}  // namespace

std::optional<std::string> JemallocVersion() {
  if (mallctl == nullptr) return std::nullopt;
  const char* version = nullptr;
  size_t len = sizeof(version);
  if (mallctl("version", &version, &len, nullptr, 0) != 0 ||
      version == nullptr) {
    return std::nullopt;
  }
  return std::string(version);
}

std::optional<MallocStats> ReadMallocStats() {
  if (mallctl == nullptr) return std::nullopt;
  // Statistics are a snapshot taken when the epoch advances.
  uint64_t epoch = 1;
  size_t len = sizeof(epoch);
  if (mallctl("epoch", &epoch, &len, &epoch, len) != 0) return std::nullopt;
  MallocStats s;
  if (!ReadSize("stats.allocated", &s.allocated) ||
      !ReadSize("stats.active", &s.active) ||
      !ReadSize("stats.resident", &s.resident) ||
      !ReadSize("stats.retained", &s.retained)) {
    return std::nullopt;
  }
  return s;
}

}  // namespace salvo::core
