// Suppression list on the queue's RocksDB (see suppression_store.h for the
// key layout). Writes ride QueueStore::Commit in a StateBatch whose
// underlying WriteBatch (StateBatch::Finish(), which only flushes pending
// counter merges: none here) takes the 'S' puts and deletes, routed to the
// suppressions column family. Reads any thread.
#include "storage/suppression_store.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/write_batch.h"
#include "storage/column_families.h"

namespace salvo::storage {
namespace {

constexpr char kPrefix = 'S';
constexpr uint8_t kValueVersion = 1;
constexpr size_t kMaxEntry = 320;
constexpr size_t kValueHeader = 1 + 1 + 8;

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  return absl::UnavailableError(msg);
}

absl::Status CheckTenant(absl::string_view tenant) {
  if (tenant.empty() || tenant.size() > 255) {
    return absl::InvalidArgumentError("tenant must be 1..255 octets");
  }
  return absl::OkStatus();
}

// Appends 'S' tenant_len tenant to *key.
void AppendTenantPrefix(absl::string_view tenant, std::string* key) {
  key->push_back(kPrefix);
  key->push_back(static_cast<char>(tenant.size()));
  key->append(tenant.data(), tenant.size());
}

void AppendFolded(absl::string_view s, std::string* key) {
  const size_t start = key->size();
  key->append(s.data(), s.size());
  for (size_t i = start; i < key->size(); ++i) {
    (*key)[i] = absl::ascii_tolower(static_cast<unsigned char>((*key)[i]));
  }
}

void EncodeValue(SuppressionReason reason, int64_t created_ms,
                 absl::string_view entry, std::string* value) {
  value->clear();
  value->push_back(static_cast<char>(kValueVersion));
  value->push_back(static_cast<char>(reason));
  uint64_t t = static_cast<uint64_t>(created_ms);
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(t);
    t >>= 8;
  }
  value->append(buf, 8);
  value->append(entry.data(), entry.size());
}

bool DecodeValue(absl::string_view v, SuppressionEntry* e) {
  if (v.size() <= kValueHeader || static_cast<uint8_t>(v[0]) != kValueVersion) {
    return false;
  }
  const uint8_t r = static_cast<uint8_t>(v[1]);
  if (r < 1 || r > 4) return false;
  e->reason = static_cast<SuppressionReason>(r);
  uint64_t t = 0;
  for (int i = 2; i < 10; ++i) t = (t << 8) | static_cast<unsigned char>(v[i]);
  e->created_ms = static_cast<int64_t>(t);
  e->entry.assign(v.data() + kValueHeader, v.size() - kValueHeader);
  return true;
}

std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last != 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return prefix;
}

// Looks up one key; true and *match filled when present.
absl::StatusOr<bool> GetEntry(QueueStore* store, const std::string& key,
                              SuppressionEntry* match) {
  thread_local std::string value;
  rocksdb::Status s =
      store->db()->Get(rocksdb::ReadOptions(),
                       store->family(KeyFamily::kSuppressions), key, &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s, "suppression lookup");
  if (match != nullptr && !DecodeValue(value, match)) {
    return absl::DataLossError("malformed suppression entry");
  }
  return true;
}

}  // namespace

absl::string_view SuppressionReasonName(SuppressionReason reason) {
  switch (reason) {
    case SuppressionReason::kApi:
      return "api";
    case SuppressionReason::kUnsubscribe:
      return "unsubscribe";
    case SuppressionReason::kBounce:
      return "bounce";
    case SuppressionReason::kComplaint:
      return "complaint";
  }
  return "unknown";
}

bool ParseSuppressionReason(absl::string_view name, SuppressionReason* reason) {
  for (SuppressionReason r :
       {SuppressionReason::kApi, SuppressionReason::kUnsubscribe,
        SuppressionReason::kBounce, SuppressionReason::kComplaint}) {
    if (name == SuppressionReasonName(r)) {
      *reason = r;
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> NormalizeSuppressionEntry(absl::string_view entry) {
  if (entry.empty() || entry.size() > kMaxEntry) {
    return absl::InvalidArgumentError("entry must be 1..320 octets");
  }
  for (char c : entry) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= ' ' || u >= 0x7f) {
      return absl::InvalidArgumentError(
          "entry must be printable ASCII without spaces");
    }
  }
  const size_t at = entry.rfind('@');
  std::string out;
  if (at == absl::string_view::npos) {
    out = absl::StrCat("@", absl::AsciiStrToLower(entry));
  } else {
    const absl::string_view domain = entry.substr(at + 1);
    if (domain.empty()) return absl::InvalidArgumentError("empty domain");
    out = absl::StrCat(entry.substr(0, at), "@", absl::AsciiStrToLower(domain));
  }
  if (out.size() > kMaxEntry) {
    return absl::InvalidArgumentError("entry must be 1..320 octets");
  }
  return out;
}

absl::Status SuppressionStore::Add(
    absl::string_view tenant, absl::Span<const std::string> entries,
    SuppressionReason reason, int64_t now_ms,
    std::function<void(absl::StatusOr<int>)> done) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  std::vector<std::string> normalized;
  normalized.reserve(entries.size());
  for (const std::string& e : entries) {
    absl::StatusOr<std::string> n = NormalizeSuppressionEntry(e);
    if (!n.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", absl::CHexEscape(e.substr(0, 80)),
                       "\": ", n.status().message()));
    }
    normalized.push_back(*std::move(n));
  }
  StateBatch batch;
  rocksdb::WriteBatch* wb = batch.Finish();
  absl::flat_hash_set<std::string> seen;
  int added = 0;
  std::string key, value;
  for (const std::string& e : normalized) {
    key.clear();
    AppendTenantPrefix(tenant, &key);
    AppendFolded(e, &key);
    if (!seen.insert(key).second) continue;
    absl::StatusOr<bool> present = GetEntry(store_, key, nullptr);
    if (!present.ok()) return present.status();
    if (!*present) ++added;
    EncodeValue(reason, now_ms, e, &value);
    RoutedPut(wb, key, value);
  }
  store_->Commit(std::move(batch), /*durable=*/true,
                 [added, done = std::move(done)](absl::Status s) {
                   if (!s.ok()) {
                     done(s);
                   } else {
                     done(added);
                   }
                 });
  return absl::OkStatus();
}

namespace {

// Waits for a callback run on the committer thread.
template <typename T>
class Waiter {
 public:
  std::function<void(T)> Callback() {
    return [this](T v) {
      std::lock_guard<std::mutex> lock(mu_);
      value_.emplace(std::move(v));
      cv_.notify_one();
    };
  }
  T Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return value_.has_value(); });
    return *std::move(value_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<T> value_;
};

}  // namespace

absl::StatusOr<int> SuppressionStore::AddNow(
    absl::string_view tenant, absl::Span<const std::string> entries,
    SuppressionReason reason, int64_t now_ms) {
  Waiter<absl::StatusOr<int>> w;
  if (absl::Status s = Add(tenant, entries, reason, now_ms, w.Callback());
      !s.ok()) {
    return s;
  }
  return w.Wait();
}

absl::Status SuppressionStore::Remove(absl::string_view tenant,
                                      absl::string_view entry,
                                      std::function<void(absl::Status)> done) {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  absl::StatusOr<std::string> n = NormalizeSuppressionEntry(entry);
  if (!n.ok()) return n.status();
  std::string key;
  AppendTenantPrefix(tenant, &key);
  AppendFolded(*n, &key);
  absl::StatusOr<bool> present = GetEntry(store_, key, nullptr);
  if (!present.ok()) return present.status();
  if (!*present) return absl::NotFoundError("no such suppression entry");
  StateBatch batch;
  RoutedDelete(batch.Finish(), key);
  store_->Commit(std::move(batch), /*durable=*/true, std::move(done));
  return absl::OkStatus();
}

absl::Status SuppressionStore::RemoveNow(absl::string_view tenant,
                                         absl::string_view entry) {
  Waiter<absl::Status> w;
  if (absl::Status s = Remove(tenant, entry, w.Callback()); !s.ok()) return s;
  return w.Wait();
}

absl::StatusOr<SuppressionPage> SuppressionStore::List(
    absl::string_view tenant, absl::string_view cursor, int limit) const {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (limit < 1 || limit > kMaxListLimit) {
    return absl::InvalidArgumentError("limit must be 1..1000");
  }
  std::string after;
  if (!cursor.empty() && (cursor.size() % 2 != 0 ||
                          !absl::c_all_of(cursor, [](char c) {
                            return absl::ascii_isxdigit(
                                static_cast<unsigned char>(c));
                          }))) {
    return absl::InvalidArgumentError("malformed cursor");
  }
  after = absl::HexStringToBytes(cursor);
  std::string prefix;
  AppendTenantPrefix(tenant, &prefix);
  const std::string end = PrefixEnd(prefix);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(store_->db()->NewIterator(
        ro, store_->family(KeyFamily::kSuppressions)));
  const std::string start = prefix + after;
  it->Seek(start);
  if (!after.empty() && it->Valid() && it->key() == rocksdb::Slice(start)) {
    it->Next();
  }
  SuppressionPage page;
  std::string last;
  for (; it->Valid(); it->Next()) {
    if (page.entries.size() == static_cast<size_t>(limit)) {
      page.next_cursor = absl::BytesToHexString(last);
      break;
    }
    SuppressionEntry& e = page.entries.emplace_back();
    const rocksdb::Slice v = it->value();
    if (!DecodeValue(absl::string_view(v.data(), v.size()), &e)) {
      return absl::DataLossError("malformed suppression entry");
    }
    last.assign(it->key().data() + prefix.size(),
                it->key().size() - prefix.size());
  }
  if (!it->status().ok()) return FromRocks(it->status(), "suppression list");
  return page;
}

absl::StatusOr<bool> SuppressionStore::IsSuppressed(
    absl::string_view tenant, absl::string_view address,
    SuppressionEntry* match) const {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  thread_local std::string key;  // reused: no allocation once grown
  key.clear();
  AppendTenantPrefix(tenant, &key);
  const size_t base = key.size();
  const size_t at = address.rfind('@');
  if (at != absl::string_view::npos && at > 0) {
    AppendFolded(address, &key);
    absl::StatusOr<bool> hit = GetEntry(store_, key, match);
    if (!hit.ok() || *hit) return hit;
  }
  key.resize(base);
  AppendFolded(at == absl::string_view::npos ? absl::StrCat("@", address)
                                             : address.substr(at),
               &key);
  return GetEntry(store_, key, match);
}

absl::Status SuppressionStore::CheckMany(
    absl::string_view tenant, absl::Span<const absl::string_view> addresses,
    std::vector<std::pair<size_t, std::string>>* hits) const {
  if (absl::Status s = CheckTenant(tenant); !s.ok()) return s;
  if (addresses.empty()) return absl::OkStatus();
  {
    std::string prefix;
    AppendTenantPrefix(tenant, &prefix);
    const std::string end = PrefixEnd(prefix);
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(store_->db()->NewIterator(
        ro, store_->family(KeyFamily::kSuppressions)));
    it->Seek(prefix);
    if (!it->status().ok()) return FromRocks(it->status(), "suppression seek");
    if (!it->Valid()) return absl::OkStatus();  // the tenant has no entries
  }
  // Domain verdicts, looked up once each ("" = not suppressed).
  absl::flat_hash_map<std::string, std::string> domains;
  std::string key, folded_domain;
  SuppressionEntry match;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const absl::string_view a = addresses[i];
    const size_t at = a.rfind('@');
    if (at == absl::string_view::npos) continue;
    key.clear();
    AppendTenantPrefix(tenant, &key);
    AppendFolded(a, &key);
    absl::StatusOr<bool> hit = GetEntry(store_, key, &match);
    if (!hit.ok()) return hit.status();
    if (*hit) {
      hits->emplace_back(i, match.entry);
      continue;
    }
    folded_domain.clear();
    AppendFolded(a.substr(at), &folded_domain);
    auto [it, inserted] = domains.try_emplace(folded_domain);
    if (inserted) {
      key.clear();
      AppendTenantPrefix(tenant, &key);
      key.append(folded_domain);
      hit = GetEntry(store_, key, &match);
      if (!hit.ok()) return hit.status();
      if (*hit) it->second = match.entry;
    }
    if (!it->second.empty()) hits->emplace_back(i, it->second);
  }
  return absl::OkStatus();
}

}  // namespace salvo::storage
