// Pure: queue keys <-> ordered key bytes (see queue_store.h for the layout).
// Any thread.
#ifndef SALVO_STORAGE_KEY_CODEC_H_
#define SALVO_STORAGE_KEY_CODEC_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

namespace salvo::storage {

// The lane byte of a queue key is a class: 0 is transactional (always served
// first), 1..kBulkClasses are bulk buckets chosen by a stable hash of the
// tenant, so tenants sharing a destination get separate cursors and ready
// queues (tenants that collide share a bucket). kBulk (1) is the first bucket,
// which keeps keys written before buckets existed readable.
enum class Lane : uint8_t { kTransactional = 0, kBulk = 1 };
inline constexpr int kBulkClasses = 8;
inline constexpr int kNumLanes = 1 + kBulkClasses;
inline bool IsBulk(Lane lane) { return lane != Lane::kTransactional; }
// The bulk bucket of a tenant: 1 + fnv1a(tenant) % kBulkClasses. Stable
// across versions and restarts (it is part of stored keys).
Lane BulkLaneFor(absl::string_view tenant);

struct QueueKey {
  uint16_t shard = 0;
  Lane lane = Lane::kBulk;
  int64_t due_ms = 0;
  uint64_t id = 0;
  bool operator==(const QueueKey& o) const {
    return shard == o.shard && lane == o.lane && due_ms == o.due_ms &&
           id == o.id;
  }
};

inline constexpr size_t kQueueKeySize = 1 + 2 + 1 + 8 + 8;

// Appends the 20-byte key to *out. due_ms must be >= 0 to sort by time.
void EncodeQueueKey(const QueueKey& key, std::string* out);
std::string EncodeQueueKey(const QueueKey& key);
// False if `bytes` is not a queue key.
[[nodiscard]] bool DecodeQueueKey(absl::string_view bytes, QueueKey* key);
// The 4-byte prefix of (shard, lane): every key of the lane starts with it and
// sorts after it; the lane ends before the prefix with its last byte + 1.
std::string QueueLanePrefix(uint16_t shard, Lane lane);

std::string ContentKey(uint64_t content_id);
std::string CounterKey(uint64_t content_id, uint8_t counter);
std::string OutcomeKey(uint64_t content_id, uint64_t id);
std::string ContentStateKey(uint64_t content_id);

// Recipient events: 'E' content_id recipient_id seq (seq = attempt << 8 |
// state, so a recipient's events sort in the order they happened).
inline constexpr size_t kEventKeySize = 1 + 8 + 8 + 4;
inline uint32_t EventSeq(uint32_t attempt, int state) {
  return (attempt << 8) | (static_cast<uint32_t>(state) & 0xff);
}
// Writes the 21-byte key into buf; returns it as a view of buf.
absl::string_view EventKey(uint64_t content_id, uint64_t recipient_id,
                           uint32_t seq, char buf[kEventKeySize]);
std::string EventKey(uint64_t content_id, uint64_t recipient_id, uint32_t seq);
// False if `bytes` is not an event key.
[[nodiscard]] bool DecodeEventKey(absl::string_view bytes,
                                  uint64_t* content_id, uint64_t* recipient_id,
                                  uint32_t* seq);

// Ids are shown to users as 16 lowercase hex digits; HexToId wants exactly 16
// (either case).
std::string IdToHex(uint64_t id);
// Appends the 16 hex digits to *out (no allocation beyond *out's growth).
void AppendIdHex(uint64_t id, std::string* out);
[[nodiscard]] bool HexToId(absl::string_view hex, uint64_t* id);

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_KEY_CODEC_H_
