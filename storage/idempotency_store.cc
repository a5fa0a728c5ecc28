// IdempotencyStore (see idempotency_store.h). The Put rides the caller's
// StateBatch through its underlying WriteBatch (StateBatch::Finish() only
// flushes pending counter merges; later Enqueues still count). Any thread.
#include "storage/idempotency_store.h"

#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace salvo::storage {
namespace {

constexpr char kPrefix = 'I';
constexpr uint8_t kValueVersion = 1;
constexpr size_t kValueHeader = 1 + 2 + 8 + IdempotencyStore::kHashSize;

std::string RecordKey(absl::string_view tenant, absl::string_view key) {
  std::string k;
  k.reserve(2 + tenant.size() + key.size());
  k.push_back(kPrefix);
  k.push_back(static_cast<char>(tenant.size()));
  k.append(tenant.data(), tenant.size());
  k.append(key.data(), key.size());
  return k;
}

}  // namespace

absl::Status IdempotencyStore::CheckKey(absl::string_view tenant,
                                        absl::string_view key) {
  if (tenant.empty() || tenant.size() > 255) {
    return absl::InvalidArgumentError("tenant must be 1..255 octets");
  }
  if (key.empty() || key.size() > kMaxKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be 1..", kMaxKeySize, " characters"));
  }
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError("must be printable ASCII, no spaces");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<IdempotencyRecord>> IdempotencyStore::Get(
    absl::string_view tenant, absl::string_view key, int64_t now_ms,
    int64_t window_ms) const {
  std::string value;
  rocksdb::Status s =
      store_->db()->Get(rocksdb::ReadOptions(), RecordKey(tenant, key), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("idempotency lookup: ", s.ToString()));
  }
  if (value.size() < kValueHeader ||
      static_cast<uint8_t>(value[0]) != kValueVersion) {
    return absl::DataLossError("malformed idempotency record");
  }
  IdempotencyRecord r;
  r.status = (static_cast<unsigned char>(value[1]) << 8) |
             static_cast<unsigned char>(value[2]);
  uint64_t t = 0;
  for (int i = 3; i < 11; ++i) t = (t << 8) | static_cast<unsigned char>(value[i]);
  r.created_ms = static_cast<int64_t>(t);
  if (r.created_ms <= now_ms - window_ms) return std::nullopt;  // expired
  r.body_hash.assign(value.data() + 11, kHashSize);
  r.response.assign(value.data() + kValueHeader, value.size() - kValueHeader);
  return r;
}

void IdempotencyStore::Put(absl::string_view tenant, absl::string_view key,
                           const IdempotencyRecord& record, StateBatch* batch) {
  std::string value;
  value.reserve(kValueHeader + record.response.size());
  value.push_back(static_cast<char>(kValueVersion));
  value.push_back(static_cast<char>((record.status >> 8) & 0xff));
  value.push_back(static_cast<char>(record.status & 0xff));
  uint64_t t = static_cast<uint64_t>(record.created_ms);
  for (int i = 7; i >= 0; --i) value.push_back(static_cast<char>(t >> (8 * i)));
  std::string hash = record.body_hash;
  hash.resize(kHashSize);
  value += hash;
  value += record.response;
  batch->Finish()->Put(RecordKey(tenant, key), value);
}

}  // namespace salvo::storage
