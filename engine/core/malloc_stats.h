// What the process's allocator says of its memory. The salvo binary links
// jemalloc (engine/BUILD); other programs that link the engine (tests, tools)
// run on glibc's malloc, and get nothing here.
// Any thread.
#ifndef SALVO_ENGINE_CORE_MALLOC_STATS_H_
#define SALVO_ENGINE_CORE_MALLOC_STATS_H_

#include <cstdint>
#include <optional>
#include <string>

namespace salvo::core {

struct MallocStats {
  int64_t allocated = 0;  // bytes the program holds (malloc'd, not freed)
  int64_t active = 0;     // bytes of the pages those allocations occupy
  int64_t resident = 0;   // bytes the allocator keeps resident (metadata too)
  int64_t retained = 0;   // bytes of address space kept for reuse, unmapped
};

// The jemalloc version ("5.3.0-0-g54eaed1d..."), or nullopt when the process
// does not run on jemalloc.
std::optional<std::string> JemallocVersion();

// A fresh snapshot of jemalloc's statistics (it refreshes them first), or
// nullopt when the process does not run on jemalloc.
std::optional<MallocStats> ReadMallocStats();

}  // namespace salvo::core

#endif  // SALVO_ENGINE_CORE_MALLOC_STATS_H_
