// Idempotency records of submissions, in the queue's RocksDB under 'I':
//   'I' tenant_len:u8 tenant idempotency_key
//     -> v1:u8 status:u16BE created_ms:u64BE body_hash:32 response_body
// A record is written into the SAME StateBatch as the submission it answers
// (Put), so a crash keeps both or neither. Get() ignores a record older than
// the window (it is overwritten by the next submission under that key).
//
// Reads: any thread (straight to RocksDB). Put only appends to a batch.
#ifndef SALVO_STORAGE_IDEMPOTENCY_STORE_H_
#define SALVO_STORAGE_IDEMPOTENCY_STORE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/queue_store.h"

namespace salvo::storage {

struct IdempotencyRecord {
  std::string body_hash;  // 32 bytes: SHA-256 of method, path and body
  int status = 0;         // HTTP status of the original answer
  std::string response;   // its body
  int64_t created_ms = 0;
};

class IdempotencyStore {
 public:
  static constexpr size_t kHashSize = 32;
  static constexpr size_t kMaxKeySize = 255;

  // `store` must outlive this object.
  explicit IdempotencyStore(QueueStore* store) : store_(store) {}

  // InvalidArgument unless tenant is 1..255 octets and key 1..kMaxKeySize
  // printable ASCII (0x21..0x7e).
  static absl::Status CheckKey(absl::string_view tenant, absl::string_view key);

  // Any thread. The record, or nullopt when absent or created at or before
  // now_ms - window_ms. DataLoss for a malformed record.
  absl::StatusOr<std::optional<IdempotencyRecord>> Get(
      absl::string_view tenant, absl::string_view key, int64_t now_ms,
      int64_t window_ms) const;

  // Adds the record's Put to `batch` (overwrites an older record). The
  // caller has passed CheckKey; body_hash must be kHashSize bytes.
  static void Put(absl::string_view tenant, absl::string_view key,
                  const IdempotencyRecord& record, StateBatch* batch);

 private:
  QueueStore* store_;
};

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_IDEMPOTENCY_STORE_H_
