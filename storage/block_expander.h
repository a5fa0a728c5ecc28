// Recipient blocks -> run entries (one queue key per shard's slice of a
// block; StateBatch::ExpandBlock), a bounded window at a time.
//
// A campaign upload is spooled as blocks (StateBatch::PutBlock, one per
// chunk); only while the queue depth (the 'D' counters: recipients expanded
// and not final) minus the entries waiting for a retry (DeferredTotal: a
// destination that defers everything must not stop the others) is below
// Options::window are due blocks expanded, in key order
// per bulk lane and round robin over the lanes, one WriteBatch per block
// (WriteUnsynced; atomic: after a crash either the block or its entries
// exist). Blocks of a paused content stay; blocks of a cancelled content
// become cancelled recipients. The blocks are the state: nothing in RAM
// survives or needs to.
// In: a QueueStore. Out: 'Q' run entries, and on_expanded(shard, lane, due_ms,
// after_id) for every shard a block touched (after the write).
// Threads: any; calls are serialized by an internal mutex (the engine runs
// them on its expander thread; never on the committer thread, since a
// refused direct write falls back to a blocking commit).
#ifndef SALVO_STORAGE_BLOCK_EXPANDER_H_
#define SALVO_STORAGE_BLOCK_EXPANDER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/queue_store.h"
#include "storage/reschedule.h"

namespace salvo::storage {

class BlockExpander {
 public:
  struct Options {
    int64_t window = 200000;  // expand while depth - deferred is below
    int64_t horizon_ms = 1000;  // blocks due this soon count as due
    // Blocks of cancelled contents a pass turns into cancelled recipients
    // (the rest are skipped, left to CancelContent or later passes), so a
    // big cancel never holds up expansion for long.
    int max_cancels_per_pass = 4;
  };
  using OnExpanded = std::function<void(uint16_t shard, Lane lane,
                                        int64_t due_ms, uint64_t after_id)>;
  BlockExpander(QueueStore* store, const Options& options,
                OnExpanded on_expanded);

  // One pass at now_ms. Returns the recipients expanded into queue entries.
  absl::StatusOr<int64_t> Pass(int64_t now_ms);
  // Blocks of the content (at most max_blocks; 0: all) end as cancelled
  // recipients (outcome, CANCELLED event, counter). Returns the recipients
  // cancelled; *more (if given) tells whether blocks remain.
  absl::StatusOr<int64_t> CancelContent(uint64_t content_id, int64_t now_ms,
                                        size_t max_blocks = 0,
                                        bool* more = nullptr);
  // Every block of the content becomes due at r.due_ms with r's expiry.
  // Returns the recipients moved.
  absl::StatusOr<int64_t> RescheduleContent(uint64_t content_id,
                                            const Reschedule& r);

 private:
  [[nodiscard]] absl::Status Write(StateBatch& batch);
  [[nodiscard]] absl::Status CancelBlock(const BlockKey& key, int64_t now_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  QueueStore* const store_;
  const Options options_;
  const OnExpanded on_expanded_;
  absl::Mutex mu_;
  std::vector<bool> shard_used_ ABSL_GUARDED_BY(mu_);
  std::string payload_ ABSL_GUARDED_BY(mu_);  // reused: keeps its capacity
};

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_BLOCK_EXPANDER_H_
