// Per-tenant suppression list: addresses and whole domains that must not be
// mailed. Lives in the queue's RocksDB (QueueStore::db()) under 'S':
//   'S' tenant_len:u8 tenant folded_entry -> v1:u8 reason:u8 created_ms:u64BE
//                                           entry
// folded_entry is the ASCII-lowercased entry: "local@domain" for an address,
// "@domain" for a domain. The stored `entry` keeps the local part as given
// (the domain is lowercased), for display.
//
// Matching: IsSuppressed looks up the address, then its domain (an exact
// domain: "@example.com" does not cover "sub.example.com"); both compare
// ASCII case-insensitively.
//
// Writes are one StateBatch each, committed durably through
// QueueStore::Commit (the committer thread runs `done`). Reads go straight to
// RocksDB and may be called from any thread, loops included (IsSuppressed
// reuses thread-local buffers: no allocation once they have grown).
#ifndef SALVO_STORAGE_SUPPRESSION_STORE_H_
#define SALVO_STORAGE_SUPPRESSION_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/queue_store.h"

namespace salvo::storage {

enum class SuppressionReason : uint8_t {
  kApi = 1,
  kUnsubscribe = 2,
  kBounce = 3,
  kComplaint = 4,
};

// "api", "unsubscribe", "bounce", "complaint".
absl::string_view SuppressionReasonName(SuppressionReason reason);
bool ParseSuppressionReason(absl::string_view name, SuppressionReason* reason);

struct SuppressionEntry {
  std::string entry;  // "Local@domain.example" or "@domain.example"
  SuppressionReason reason = SuppressionReason::kApi;
  int64_t created_ms = 0;
};

// "a@B.Example" -> "a@b.example"; "@B.Example" and "B.Example" ->
// "@b.example". InvalidArgument for empty parts, spaces, controls, non-ASCII,
// or more than 320 octets. (Full RFC 5321 syntax is the API's job.)
absl::StatusOr<std::string> NormalizeSuppressionEntry(absl::string_view entry);

struct SuppressionPage {
  std::vector<SuppressionEntry> entries;  // in folded-entry order
  std::string next_cursor;                // empty: no more
};

class SuppressionStore {
 public:
  // `store` must outlive this object.
  explicit SuppressionStore(QueueStore* store) : store_(store) {}

  static constexpr int kMaxListLimit = 1000;

  // Any thread. Normalizes every entry (InvalidArgument, nothing written and
  // `done` not called, if one is bad), then writes them all in one durable
  // batch; an existing entry gets the new reason and time. `done` runs on the
  // committer thread with the number of entries that were not present.
  [[nodiscard]] absl::Status Add(absl::string_view tenant,
                                 absl::Span<const std::string> entries,
                                 SuppressionReason reason, int64_t now_ms,
                                 std::function<void(absl::StatusOr<int>)> done);
  // Blocking Add for tools and tests (not from a commit callback).
  absl::StatusOr<int> AddNow(absl::string_view tenant,
                             absl::Span<const std::string> entries,
                             SuppressionReason reason, int64_t now_ms);

  // Any thread. NotFound (done not called) when the entry is absent;
  // otherwise one durable delete, `done` on the committer thread.
  [[nodiscard]] absl::Status Remove(absl::string_view tenant,
                                    absl::string_view entry,
                                    std::function<void(absl::Status)> done);
  [[nodiscard]] absl::Status RemoveNow(absl::string_view tenant,
                                       absl::string_view entry);

  // Any thread. Entries after `cursor` (empty: from the start; otherwise a
  // next_cursor from an earlier page), at most `limit` (1..kMaxListLimit).
  absl::StatusOr<SuppressionPage> List(absl::string_view tenant,
                                       absl::string_view cursor,
                                       int limit) const;

  // Any thread. true and *match (when non-null) if the address, or else its
  // domain, is on the tenant's list.
  absl::StatusOr<bool> IsSuppressed(absl::string_view tenant,
                                    absl::string_view address,
                                    SuppressionEntry* match = nullptr) const;

  // Any thread; for submissions. Appends (index into addresses, matched
  // entry) for every suppressed address to *hits. One seek answers a tenant
  // with an empty list; domains are looked up once each.
  [[nodiscard]] absl::Status CheckMany(
      absl::string_view tenant, absl::Span<const absl::string_view> addresses,
      std::vector<std::pair<size_t, std::string>>* hits) const;

 private:
  QueueStore* store_;
};

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_SUPPRESSION_STORE_H_
