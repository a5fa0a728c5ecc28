// Campaign contents, loaded from storage once and compiled once, shared by all
// loops as immutable snapshots. At most `capacity` entries stay cached (least
// recently used goes first); an evicted entry lives on while its holders keep
// their shared_ptr, and a later Get reloads it. Any thread.
#ifndef SALVO_ENGINE_DELIVERY_CONTENT_CACHE_H_
#define SALVO_ENGINE_DELIVERY_CONTENT_CACHE_H_

#include <atomic>
#include <cstddef>
#include <list>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/render/template.h"
#include "storage/queue_store.h"

namespace salvo::delivery {

struct CachedContent {
  storage::Content content;
  std::shared_ptr<const render::CompiledContent> compiled;
  // Operator control (pause/cancel); changed in place by SetState.
  mutable std::atomic<uint8_t> state{0};
  storage::ContentState State() const {
    return static_cast<storage::ContentState>(state.load());
  }
};

class ContentCache {
 public:
  static constexpr size_t kDefaultCapacity = 10000;
  explicit ContentCache(storage::QueueStore* store,
                        size_t capacity = kDefaultCapacity)
      : store_(store), capacity_(capacity > 0 ? capacity : 1) {}

  // Reads and compiles on a miss (a RocksDB point read on the caller's
  // thread). NotFound if the content does not exist.
  absl::StatusOr<std::shared_ptr<const CachedContent>> Get(uint64_t id);
  // After the state record was committed: cached entries see it at once.
  void SetState(uint64_t id, storage::ContentState state);

  size_t size() const;
  size_t capacity() const { return capacity_; }
  // Reads that went to storage (misses), for tests and metrics.
  int64_t loads() const { return loads_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    std::shared_ptr<const CachedContent> entry;
    std::list<uint64_t>::iterator lru;  // position in lru_
  };
  storage::QueueStore* const store_;
  const size_t capacity_;
  std::atomic<int64_t> loads_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Slot> map_ ABSL_GUARDED_BY(mu_);
  std::list<uint64_t> lru_ ABSL_GUARDED_BY(mu_);  // most recent first
};

// Recipients of each content leased into memory, for progress counts.
class InFlightTable {
 public:
  void Add(uint64_t content_id, int64_t delta);
  int64_t Get(uint64_t content_id) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, int64_t> map_ ABSL_GUARDED_BY(mu_);
};

}  // namespace salvo::delivery

#endif  // SALVO_ENGINE_DELIVERY_CONTENT_CACHE_H_
