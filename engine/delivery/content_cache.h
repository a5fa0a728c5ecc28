// Campaign contents, loaded from storage once and compiled once, shared by all
// loops as immutable snapshots. Any thread.
#ifndef SALVO_ENGINE_DELIVERY_CONTENT_CACHE_H_
#define SALVO_ENGINE_DELIVERY_CONTENT_CACHE_H_

#include <atomic>
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
  explicit ContentCache(storage::QueueStore* store) : store_(store) {}

  // Reads and compiles on a miss (a RocksDB point read on the caller's
  // thread). NotFound if the content does not exist.
  absl::StatusOr<std::shared_ptr<const CachedContent>> Get(uint64_t id);
  // After the state record was committed: cached entries see it at once.
  void SetState(uint64_t id, storage::ContentState state);

 private:
  storage::QueueStore* const store_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const CachedContent>> map_
      ABSL_GUARDED_BY(mu_);
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
