// The queue store's RocksDB column families and the one map from a key's
// first byte to its family (see queue_store.h for the key space):
//   default       'Q' 'C' 'N' 'X' 'D' 'M' 'I' ...  small and hot
//   events        'E'          recipient events, append-mostly
//   outcomes      'O'          legacy: each recipient's last outcome, as
//                              older Salvo versions wrote it. Nothing new
//                              is written (an outcome is the recipient's
//                              last 'E' event); read as a fallback, aged
//                              out by the event retention
//   blocks        'B' 'P' 'A'  recipient blocks, written once at ingest
//   suppressions  'S'          per-tenant suppression entries: read twice
//                              per delivery, rarely written, so kept apart
//                              from the queue's churn (two point reads into
//                              a small family instead of the queue's
//                              memtables and files)
// Reads and writes both route through FamilyOfKey, so they cannot disagree.
// StateBatch encodes its WriteBatch without a store: Routed*() writes into
// a batch through fixed handles that carry only the family's id (what
// WriteBatch encodes); QueueStore::Open checks that the DB's real families
// have exactly these ids. Pure; any thread.
#ifndef SALVO_STORAGE_COLUMN_FAMILIES_H_
#define SALVO_STORAGE_COLUMN_FAMILIES_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "rocksdb/slice.h"

namespace rocksdb {
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace salvo::storage {

// Values are the RocksDB column family ids (fixed: created in this order).
enum class KeyFamily : uint32_t {
  kDefault = 0,
  kEvents = 1,
  kBlocks = 2,
  kSuppressions = 3,
  kOutcomes = 4,
};
inline constexpr int kNumKeyFamilies = 5;

// "default", "events", "blocks", "suppressions", "outcomes".
const char* KeyFamilyName(KeyFamily f);

// The family of keys starting with the byte `prefix`.
inline KeyFamily FamilyOfPrefix(char prefix) {
  switch (prefix) {
    case 'E':
      return KeyFamily::kEvents;
    case 'O':
      return KeyFamily::kOutcomes;
    case 'B':
    case 'P':
    case 'A':
      return KeyFamily::kBlocks;
    case 'S':
      return KeyFamily::kSuppressions;
    default:
      return KeyFamily::kDefault;
  }
}
inline KeyFamily FamilyOfKey(const rocksdb::Slice& key) {
  return key.empty() ? KeyFamily::kDefault : FamilyOfPrefix(key[0]);
}

// A handle for encoding WriteBatch entries only (id and bytewise
// comparator); never to be passed to a DB.
rocksdb::ColumnFamilyHandle* BatchHandle(KeyFamily f);

// Writes into `batch` under the family of `key`.
void RoutedPut(rocksdb::WriteBatch* batch, const rocksdb::Slice& key,
               const rocksdb::Slice& value);
void RoutedDelete(rocksdb::WriteBatch* batch, const rocksdb::Slice& key);
// Removes a key that was Put exactly once since it last did not exist (a
// queue entry 'Q', a block 'B' 'P'): RocksDB's SingleDelete, which meets
// its Put at flush or compaction and drops both, where a Delete would leave
// a tombstone until the last level. Never for a key that is overwritten or
// merged.
void RoutedSingleDelete(rocksdb::WriteBatch* batch, const rocksdb::Slice& key);
void RoutedMerge(rocksdb::WriteBatch* batch, const rocksdb::Slice& key,
                 const rocksdb::Slice& value);

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_COLUMN_FAMILIES_H_
