// Recipient blocks -> queue entries within a window (see block_expander.h).
#include "storage/block_expander.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace salvo::storage {

BlockExpander::BlockExpander(QueueStore* store, const Options& options,
                             OnExpanded on_expanded)
    : store_(store), options_(options), on_expanded_(std::move(on_expanded)) {}

absl::Status BlockExpander::Write(StateBatch& batch) {
  absl::Status s = store_->WriteUnsynced(batch);
  if (absl::IsUnavailable(s)) {
    // Sync or recovery under way, or a write stall: the committer writes it.
    s = store_->CommitNow(std::move(batch), /*durable=*/false);
  }
  return s;
}

absl::Status BlockExpander::CancelBlock(const BlockKey& key, int64_t now_ms) {
  absl::StatusOr<RecipientBlock> block = store_->GetBlock(key);
  if (absl::IsNotFound(block.status())) return absl::OkStatus();
  if (!block.ok()) return block.status();
  StateBatch batch;
  batch.CancelBlock(key, *block, now_ms);
  return Write(batch);
}

absl::StatusOr<int64_t> BlockExpander::Pass(int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  // The depth read merges every counter operand not yet compacted: only
  // pay for it when some block is due.
  bool any_due = false;
  std::vector<BlockKey> probe;
  for (int lane = 1; lane < kNumLanes && !any_due; ++lane) {
    std::string cursor;
    if (absl::Status s = store_->ScanBlocks(static_cast<Lane>(lane),
                                            now_ms + options_.horizon_ms, 1,
                                            &cursor, &probe);
        !s.ok()) {
      return s;
    }
    any_due = !probe.empty();
  }
  if (!any_due) return int64_t{0};
  absl::StatusOr<int64_t> depth = store_->TotalDepth();
  if (!depth.ok()) return depth.status();
  // Entries waiting for a retry are due later: they leave room for others.
  int64_t queued = std::max<int64_t>(0, *depth - store_->DeferredTotal());
  int64_t expanded = 0;
  absl::flat_hash_map<uint64_t, ContentState> states;
  int cancels = 0;
  // Index keys are read in small batches per lane (skipping a paused
  // campaign's blocks costs no seek each).
  constexpr size_t kScanBatch = 32;
  std::string cursors[kNumLanes];
  std::vector<BlockKey> keys[kNumLanes];
  size_t next[kNumLanes] = {};
  bool done[kNumLanes] = {};
  done[static_cast<int>(Lane::kTransactional)] = true;
  bool any = true;
  while (any && queued < options_.window) {
    any = false;
    for (int lane = 1; lane < kNumLanes && queued < options_.window; ++lane) {
      if (done[lane]) continue;
      // The first block of this lane that can be expanded now.
      for (;;) {
        if (next[lane] == keys[lane].size()) {
          next[lane] = 0;
          if (absl::Status s = store_->ScanBlocks(
                  static_cast<Lane>(lane), now_ms + options_.horizon_ms,
                  kScanBatch, &cursors[lane], &keys[lane]);
              !s.ok()) {
            return s;
          }
          if (keys[lane].empty()) {
            done[lane] = true;
            break;
          }
        }
        const BlockKey key = keys[lane][next[lane]++];
        auto it = states.find(key.content_id);
        if (it == states.end()) {
          absl::StatusOr<ContentState> st =
              store_->GetContentState(key.content_id);
          if (!st.ok()) return st.status();
          it = states.emplace(key.content_id, *st).first;
        }
        if (it->second == ContentState::kPaused) continue;
        if (it->second == ContentState::kCancelled) {
          if (cancels++ < options_.max_cancels_per_pass) {
            if (absl::Status s = CancelBlock(key, now_ms); !s.ok()) return s;
          }
          continue;
        }
        absl::Status got = store_->GetBlockPayload(key, &payload_);
        if (absl::IsNotFound(got)) continue;  // cancelled meanwhile
        if (!got.ok()) return got;
        StateBatch batch;
        shard_used_.assign(store_->num_shards(), false);
        if (absl::Status s =
                batch.ExpandBlock(key, payload_, *store_, &shard_used_);
            !s.ok()) {
          return s;
        }
        if (absl::Status s = Write(batch); !s.ok()) return s;
        queued += key.count;
        expanded += key.count;
        any = true;
        if (on_expanded_) {
          for (size_t shard = 0; shard < shard_used_.size(); ++shard) {
            if (!shard_used_[shard]) continue;
            on_expanded_(static_cast<uint16_t>(shard), key.lane, key.due_ms,
                         key.first_id - 1);
          }
        }
        break;
      }
    }
  }
  return expanded;
}

absl::StatusOr<int64_t> BlockExpander::CancelContent(uint64_t content_id,
                                                     int64_t now_ms,
                                                     size_t max_blocks,
                                                     bool* more) {
  absl::MutexLock lock(&mu_);
  std::vector<BlockKey> keys;
  if (absl::Status s = store_->ContentBlocks(content_id, &keys); !s.ok()) {
    return s;
  }
  const size_t n_blocks =
      max_blocks == 0 ? keys.size() : std::min(max_blocks, keys.size());
  if (more != nullptr) *more = n_blocks < keys.size();
  int64_t n = 0;
  for (size_t i = 0; i < n_blocks; ++i) {
    if (absl::Status s = CancelBlock(keys[i], now_ms); !s.ok()) return s;
    n += keys[i].count;
  }
  return n;
}

absl::StatusOr<int64_t> BlockExpander::RescheduleContent(uint64_t content_id,
                                                         const Reschedule& r) {
  absl::MutexLock lock(&mu_);
  std::vector<BlockKey> keys;
  if (absl::Status s = store_->ContentBlocks(content_id, &keys); !s.ok()) {
    return s;
  }
  int64_t n = 0;
  constexpr size_t kBlocksPerBatch = 64;  // index keys only: small batches
  StateBatch batch;
  for (size_t i = 0; i < keys.size(); ++i) {
    const BlockKey& key = keys[i];
    const int64_t expires = r.expires_at_ms != 0 ? r.expires_at_ms
                            : r.expires_after_ms > 0
                                ? r.due_ms + r.expires_after_ms
                                : key.expires_ms;
    batch.MoveBlock(key, r.due_ms, expires);
    n += key.count;
    if (batch.size() >= kBlocksPerBatch || i + 1 == keys.size()) {
      if (absl::Status s = store_->CommitNow(std::move(batch), true); !s.ok()) {
        return s;
      }
      batch = StateBatch();
    }
  }
  return n;
}

}  // namespace salvo::storage
