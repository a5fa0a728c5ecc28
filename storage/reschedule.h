// A new schedule for the queued recipients of one content (campaign or
// transactional message): when they become due and when they expire, and
// the StateBatch step that moves one entry there (StateBatch::Requeue: no
// attempt counted, no counter touched). Pure: no I/O. Any thread.
#ifndef SALVO_STORAGE_RESCHEDULE_H_
#define SALVO_STORAGE_RESCHEDULE_H_

#include <cstdint>

#include "storage/key_codec.h"
#include "storage/queue_store.h"
#include "storage/records.pb.h"

namespace salvo::storage {

struct Reschedule {
  int64_t due_ms = 0;            // every moved entry becomes due then
  int64_t expires_at_ms = 0;     // absolute expiry; 0: expires_after_ms
  int64_t expires_after_ms = 0;  // expiry = due_ms + this; both 0: keep

  // The expiry of `rec` after the move.
  int64_t ExpiresFor(const Recipient& rec) const {
    if (expires_at_ms != 0) return expires_at_ms;
    if (expires_after_ms > 0) return due_ms + expires_after_ms;
    return rec.expires_ms();
  }
};

// Adds the move of `entry` to `batch`: its expiry is updated in place in
// entry->rec, its key becomes the returned key (due_ms = r.due_ms).
inline QueueKey AddReschedule(const Reschedule& r, QueueEntry* entry,
                              StateBatch* batch) {
  entry->rec.set_expires_ms(r.ExpiresFor(entry->rec));
  return batch->Requeue(entry->key, entry->rec, r.due_ms);
}

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_RESCHEDULE_H_
