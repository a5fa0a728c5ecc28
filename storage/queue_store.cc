// The sharded durable queue on RocksDB (see queue_store.h for the key space).
// StateBatch is pure and single-threaded; QueueStore reads may run on any
// thread; writes go through one committer thread that syncs the WAL once per
// group of pending batches.
#include "storage/queue_store.h"

#include <pthread.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/iterator.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "rocksdb/cache.h"
#include "rocksdb/compaction_filter.h"
#include "rocksdb/utilities/table_properties_collectors.h"
#include "rocksdb/write_batch.h"
#include "rocksdb/write_buffer_manager.h"
#include "storage/column_families.h"

namespace salvo::storage {
namespace {

constexpr char kMetaNumShardsKey[] = "Mnum_shards";
// Time of the last recovery from a write failure (int64 LE ms).
constexpr char kMetaRecoveredKey[] = "Mrecovered_ms";
// Present once the 'D' depth counters cover every queue entry.
constexpr char kMetaDepthKey[] = "Mdepth_counters";
// int64 LE, merge-added: the sum of every content's kDeferred gauge
// (QueueStore::DeferredTotal). Absent in stores written before it.
constexpr char kMetaDeferredKey[] = "Mdeferred_total";
// int64 LE: the number of the last Open (QueueStore::epoch).
constexpr char kMetaEpochKey[] = "Mepoch";
// Present once every key lives in its column family (column_families.h).
constexpr char kMetaLayoutKey[] = "Mcf_layout";
// Its value: "1" = default/events/blocks; "2" = also suppressions; "3" =
// also outcomes ('O' out of events).
constexpr char kLayoutVersion[] = "3";
constexpr size_t kDepthKeySize = 4;

// 'D' shard:u16 lane:u8: the depth counter of a lane.
rocksdb::Slice DepthKeySlice(uint16_t shard, uint8_t lane,
                             char buf[kDepthKeySize]) {
  buf[0] = 'D';
  buf[1] = static_cast<char>(shard >> 8);
  buf[2] = static_cast<char>(shard);
  buf[3] = static_cast<char>(lane);
  return rocksdb::Slice(buf, kDepthKeySize);
}

// Key of the lane after (shard, lane): the exclusive end of a lane scan.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char last = static_cast<unsigned char>(prefix.back());
    if (last != 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return prefix;  // Unreachable for our prefixes, which start with 'Q'.
}

int64_t DecodeInt64Le(const rocksdb::Slice& s) {
  if (s.size() != 8) return 0;
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(s.data()[i]);
  }
  return static_cast<int64_t>(v);
}

void EncodeInt64Le(int64_t value, char out[8]) {
  uint64_t v = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(v);
    v >>= 8;
  }
}

// int64 little-endian add; the operator behind the 'N' counters.
class Int64AddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    int64_t sum = (existing ? DecodeInt64Le(*existing) : 0) +
                  DecodeInt64Le(value);
    char buf[8];
    EncodeInt64Le(sum, buf);
    new_value->assign(buf, 8);
    return true;
  }
  const char* Name() const override { return "salvo.Int64Add"; }
};

absl::Status ToAbsl(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsIncomplete()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

// RocksDB's info LOG, written with stdio. RocksDB's own file logger aborts the
// process (Debian's librocksdb keeps its assertions) on the second message
// after a failed write, i.e. on any disk-full error that lands in the LOG;
// this one drops lines the disk cannot take. Any thread.
class PlainFileLogger final : public rocksdb::Logger {
 public:
  static std::shared_ptr<rocksdb::Logger> Open(const std::string& dir) {
    ::mkdir(dir.c_str(), 0755);  // RocksDB creates the DB directory later
    const std::string path = dir + "/LOG";
    ::rename(path.c_str(), (path + ".old").c_str());
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr) return nullptr;  // RocksDB's default logger
    return std::make_shared<PlainFileLogger>(file);
  }
  explicit PlainFileLogger(FILE* file)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL), file_(file) {}
  ~PlainFileLogger() override { std::fclose(file_); }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char line[1024];
    const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    int n = std::snprintf(line, sizeof(line), "%lld.%06lld ",
                          static_cast<long long>(us / 1000000),
                          static_cast<long long>(us % 1000000));
    const int m = std::vsnprintf(line + n, sizeof(line) - n - 1, format, ap);
    n = std::min<int>(n + std::max(m, 0), sizeof(line) - 2);
    line[n++] = '\n';
    std::lock_guard<std::mutex> lock(mu_);
    std::fwrite(line, 1, static_cast<size_t>(n), file_);  // errors dropped
    std::fflush(file_);
  }

 private:
  std::mutex mu_;
  FILE* const file_;
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Drops recipient events ('E', blocks' packed 'A') and legacy outcomes ('O')
// whose recipient id was minted (ids are ms << 20 + counter) before now -
// retention. Compaction threads.
class EventRetentionFilter final : public rocksdb::CompactionFilter {
 public:
  explicit EventRetentionFilter(int64_t retention_ms)
      : retention_ms_(retention_ms) {}
  bool Filter(int /*level*/, const rocksdb::Slice& key,
              const rocksdb::Slice& /*value*/, std::string* /*new_value*/,
              bool* /*value_changed*/) const override {
    uint64_t content_id, recipient_id;
    uint32_t seq;
    if (key.size() == 17 && (key[0] == 'A' || key[0] == 'O')) {
      // 'A': packed ACCEPTED events of a block (first id); 'O': a legacy
      // outcome (recipient id).
      uint64_t id = 0;
      for (int i = 9; i < 17; ++i) {
        id = (id << 8) | static_cast<unsigned char>(key[i]);
      }
      return static_cast<int64_t>(id >> 20) < NowMs() - retention_ms_;
    }
    if (key.size() != kEventKeySize || key[0] != 'E' ||
        !DecodeEventKey(absl::string_view(key.data(), key.size()),
                        &content_id, &recipient_id, &seq)) {
      return false;
    }
    const int64_t now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count();
    return static_cast<int64_t>(recipient_id >> 20) < now_ms - retention_ms_;
  }
  const char* Name() const override { return "salvo.EventRetention"; }

 private:
  const int64_t retention_ms_;
};

class EventRetentionFilterFactory final
    : public rocksdb::CompactionFilterFactory {
 public:
  explicit EventRetentionFilterFactory(int64_t retention_ms)
      : retention_ms_(retention_ms) {}
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context& /*context*/) override {
    return std::make_unique<EventRetentionFilter>(retention_ms_);
  }
  const char* Name() const override { return "salvo.EventRetentionFactory"; }

 private:
  const int64_t retention_ms_;
};

// Encodes a queue key into a fixed buffer (no allocation on the hot path).
rocksdb::Slice QueueKeySlice(const QueueKey& key, char buf[kQueueKeySize]) {
  buf[0] = 'Q';
  buf[1] = static_cast<char>(key.shard >> 8);
  buf[2] = static_cast<char>(key.shard);
  buf[3] = static_cast<char>(key.lane);
  uint64_t due = static_cast<uint64_t>(key.due_ms);
  uint64_t id = key.id;
  for (int i = 7; i >= 0; --i) {
    buf[4 + i] = static_cast<char>(due);
    buf[12 + i] = static_cast<char>(id);
    due >>= 8;
    id >>= 8;
  }
  return rocksdb::Slice(buf, kQueueKeySize);
}

rocksdb::Slice OutcomeKeySlice(uint64_t content_id, uint64_t id,
                               char buf[17]) {
  buf[0] = 'O';
  for (int i = 7; i >= 0; --i) {
    buf[1 + i] = static_cast<char>(content_id);
    buf[9 + i] = static_cast<char>(id);
    content_id >>= 8;
    id >>= 8;
  }
  return rocksdb::Slice(buf, 17);
}

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Serialization scratch reused per thread: WriteBatch copies what it is given.
std::string& Scratch() {
  thread_local std::string scratch;
  return scratch;
}

}  // namespace

// ---------------------------------------------------------------- StateBatch

StateBatch::StateBatch() : batch_(std::make_unique<rocksdb::WriteBatch>()) {}
StateBatch::~StateBatch() = default;
StateBatch::StateBatch(StateBatch&&) noexcept = default;
StateBatch& StateBatch::operator=(StateBatch&&) noexcept = default;

void StateBatch::Clear() {
  batch_->Clear();
  deltas_.clear();
  depth_deltas_.clear();
  finished_depth_.clear();
  finished_deferred_ = 0;
  events_.clear();
  ops_ = 0;
}

void StateBatch::Count(uint64_t content_id, Counter c, int64_t delta) {
  deltas_[{content_id, static_cast<uint8_t>(c)}] += delta;
}

void StateBatch::CountDepth(const QueueKey& key, int64_t delta) {
  depth_deltas_[(static_cast<uint32_t>(key.shard) << 8) |
                static_cast<uint32_t>(key.lane)] += delta;
}

void StateBatch::PutContent(const Content& content) {
  std::string& value = Scratch();
  content.SerializeToString(&value);
  RoutedPut(batch_.get(), ContentKey(content.id()), value);
  ++ops_;
}

void StateBatch::Enqueue(const QueueKey& key, const Recipient& rec) {
  char kbuf[kQueueKeySize];
  std::string& value = Scratch();
  rec.SerializeToString(&value);
  RoutedPut(batch_.get(), QueueKeySlice(key, kbuf), value);
  Count(rec.content_id(), Counter::kAccepted, 1);
  CountDepth(key, 1);
  // The ACCEPTED event: address and time only (the ingest path), encoded
  // by hand in Event's wire format (fields 1, 2, 6) into the reused scratch.
  event_value_.clear();
  event_value_.push_back(0x08);  // state
  event_value_.push_back(static_cast<char>(Event::ACCEPTED));
  event_value_.push_back(0x10);  // at_ms
  AppendVarint(static_cast<uint64_t>(rec.accepted_ms()), &event_value_);
  event_value_.push_back(0x32);  // address
  AppendVarint(rec.address().size(), &event_value_);
  event_value_.append(rec.address());
  char ekey[kEventKeySize];
  const absl::string_view k =
      EventKey(rec.content_id(), key.id, EventSeq(0, Event::ACCEPTED), ekey);
  RoutedPut(batch_.get(), rocksdb::Slice(k.data(), k.size()), event_value_);
  if (collect_events_) {
    BatchEvent& e = events_.emplace_back();
    e.content_id = rec.content_id();
    e.recipient_id = key.id;
    e.event.set_state(Event::ACCEPTED);
    e.event.set_at_ms(rec.accepted_ms());
    e.event.set_address(rec.address());
  }
  ++ops_;
}

void StateBatch::PutEvent(uint64_t content_id, uint64_t recipient_id,
                          const Event& event) {
  event.SerializeToString(&event_value_);
  char kbuf[kEventKeySize];
  const absl::string_view k = EventKey(
      content_id, recipient_id,
      EventSeq(event.attempt(), static_cast<int>(event.state())), kbuf);
  RoutedPut(batch_.get(), rocksdb::Slice(k.data(), k.size()), event_value_);
  if (collect_events_) events_.push_back({content_id, recipient_id, event});
}

void StateBatch::PutOutcomeEvent(const QueueKey& key, const Recipient& rec,
                                 const Outcome& o, Event::State state) {
  thread_local Event e;  // reused: keeps its strings' capacity
  e.Clear();
  e.set_state(state);
  e.set_at_ms(o.at_ms());
  e.set_attempt(o.attempts());
  e.set_remote_host(o.remote_host());
  e.set_reply(o.reply());
  e.set_address(o.address().empty() ? rec.address() : o.address());
  e.set_tls(o.tls());
  PutEvent(rec.content_id(), key.id, e);
}

void StateBatch::SuppressedAtAccept(uint64_t content_id, uint64_t recipient_id,
                                    absl::string_view address, int64_t at_ms,
                                    absl::string_view reply) {
  thread_local Event e;
  e.Clear();
  e.set_state(Event::SUPPRESSED);
  e.set_at_ms(at_ms);
  e.set_address(address.data(), address.size());
  e.set_reply(reply.data(), reply.size());
  PutEvent(content_id, recipient_id, e);
  ++ops_;
}

void StateBatch::Final(const QueueKey& key, const Recipient& rec,
                       const Outcome& o, Counter counter, Event::State event,
                       Entry entry) {
  if (entry == Entry::kOwn) {
    char kbuf[kQueueKeySize];
    RoutedSingleDelete(batch_.get(), QueueKeySlice(key, kbuf));
  }
  PutOutcomeEvent(key, rec, o, event);
  Count(rec.content_id(), counter, 1);
  CountDepth(key, -1);
  if (rec.deferred()) Count(rec.content_id(), Counter::kDeferred, -1);
  ++ops_;
}

void StateBatch::Delivered(const QueueKey& key, const Recipient& rec,
                           const Outcome& o, Entry entry) {
  Final(key, rec, o, Counter::kDelivered, Event::DELIVERED, entry);
}

void StateBatch::Bounced(const QueueKey& key, const Recipient& rec,
                         const Outcome& o, Entry entry) {
  Final(key, rec, o, Counter::kBounced, Event::BOUNCED, entry);
}

void StateBatch::Expired(const QueueKey& key, const Recipient& rec,
                         const Outcome& o, Entry entry) {
  Final(key, rec, o, Counter::kExpired, Event::EXPIRED, entry);
}

void StateBatch::Cancelled(const QueueKey& key, const Recipient& rec,
                           const Outcome& o, Entry entry) {
  Final(key, rec, o, Counter::kCancelled, Event::CANCELLED, entry);
}

void StateBatch::SuppressedBounce(const QueueKey& key, const Recipient& rec,
                                  const Outcome& o, Entry entry) {
  Final(key, rec, o, Counter::kBounced, Event::SUPPRESSED, entry);
}

void StateBatch::SetContentState(uint64_t content_id, ContentState state) {
  char value = static_cast<char>(state);
  RoutedPut(batch_.get(), ContentStateKey(content_id),
            rocksdb::Slice(&value, 1));
  ++ops_;
}

const char* ContentStateName(ContentState s) {
  switch (s) {
    case ContentState::kActive: return "active";
    case ContentState::kPaused: return "paused";
    case ContentState::kCancelled: return "cancelled";
  }
  return "?";
}

QueueKey StateBatch::Defer(const QueueKey& key, const Recipient& rec,
                           int64_t new_due_ms, const Outcome& o, Entry entry) {
  QueueKey next = key;
  next.due_ms = new_due_ms;
  thread_local Recipient moved;  // reused: CopyFrom keeps capacity
  moved.CopyFrom(rec);
  moved.set_attempts(rec.attempts() + 1);
  moved.set_last_reply(o.reply());
  moved.set_last_host(o.remote_host());
  moved.set_deferred(true);
  if (!rec.deferred()) Count(rec.content_id(), Counter::kDeferred, 1);

  char kbuf[kQueueKeySize];
  if (entry == Entry::kOwn) {
    RoutedSingleDelete(batch_.get(), QueueKeySlice(key, kbuf));
  }
  std::string& value = Scratch();
  moved.SerializeToString(&value);
  RoutedPut(batch_.get(), QueueKeySlice(next, kbuf), value);
  PutOutcomeEvent(key, rec, o, Event::DEFERRED);
  ++ops_;
  return next;
}

QueueKey StateBatch::Requeue(const QueueKey& key, const Recipient& rec,
                             int64_t new_due_ms, Entry entry) {
  QueueKey next = key;
  next.due_ms = new_due_ms;
  char kbuf[kQueueKeySize];
  if (entry == Entry::kOwn) {
    RoutedSingleDelete(batch_.get(), QueueKeySlice(key, kbuf));
  }
  std::string& value = Scratch();
  rec.SerializeToString(&value);
  RoutedPut(batch_.get(), QueueKeySlice(next, kbuf), value);
  ++ops_;
  return next;
}

void StateBatch::RemoveRun(const QueueKey& key) {
  char kbuf[kQueueKeySize];
  RoutedSingleDelete(batch_.get(), QueueKeySlice(key, kbuf));
  ++ops_;
}

rocksdb::WriteBatch* StateBatch::Finish() {
  int64_t deferred = 0;
  for (const auto& [k, delta] : deltas_) {
    if (delta == 0) continue;
    char buf[8];
    EncodeInt64Le(delta, buf);
    RoutedMerge(batch_.get(), CounterKey(k.first, k.second),
                rocksdb::Slice(buf, 8));
    finished_counts_.emplace_back(k, delta);
    if (k.second == static_cast<uint8_t>(Counter::kDeferred)) {
      deferred += delta;
    }
  }
  deltas_.clear();
  if (deferred != 0) {
    char buf[8];
    EncodeInt64Le(deferred, buf);
    RoutedMerge(batch_.get(), kMetaDeferredKey, rocksdb::Slice(buf, 8));
    finished_deferred_ += deferred;
  }
  for (const auto& [k, delta] : depth_deltas_) {
    if (delta == 0) continue;
    char buf[8];
    EncodeInt64Le(delta, buf);
    char kbuf[kDepthKeySize];
    RoutedMerge(batch_.get(),
                DepthKeySlice(static_cast<uint16_t>(k >> 8),
                              static_cast<uint8_t>(k & 0xff), kbuf),
                rocksdb::Slice(buf, 8));
    finished_depth_.emplace_back(static_cast<uint16_t>(k >> 8), delta);
  }
  depth_deltas_.clear();
  return batch_.get();
}

// ----------------------------------------------------------------- Committer

struct QueueStore::Committer {
  struct Pending {
    StateBatch batch;
    bool durable;
    std::function<void(absl::Status)> done;
    bool sync_only = false;  // SyncThen: nothing to write, durable
  };

  Committer(rocksdb::DB* db,
            std::vector<rocksdb::ColumnFamilyHandle*> families, bool sync,
            std::string path, uint64_t min_free_bytes, int unsynced_sync_ms,
            DepthMirror* depth, CountsMirror* counts)
      : depth(depth),
        counts(counts),
        db(db),
        families(std::move(families)),
        sync(sync),
        path(std::move(path)),
        min_free_bytes(min_free_bytes),
        unsynced_sync_ms(sync ? unsynced_sync_ms : 0) {
    thread = std::thread([this] { Run(); });
  }

  ~Committer() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_one();
    thread.join();
  }

  void Submit(Pending p) {
    {
      std::lock_guard<std::mutex> lock(mu);
      pending.push_back(std::move(p));
    }
    cv.notify_one();
  }

  void Run() {
    pthread_setname_np(pthread_self(), "salvo-committer");
    std::vector<Pending> group;
    std::vector<absl::Status> results;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        auto ready = [this] { return stop || !pending.empty(); };
        // Unsynced writes: wake up when their sync is due.
        const bool sync_due_later = unsynced_sync_ms > 0 && db_ok &&
                                    unsynced.load(std::memory_order_acquire);
        if (healthy.load(std::memory_order_relaxed) && min_free_bytes == 0 &&
            !sync_due_later) {
          cv.wait(lock, [&] {
            return ready() || (unsynced_sync_ms > 0 &&
                               unsynced.load(std::memory_order_acquire));
          });
        } else {
          // Wake up to re-check space and retry recovery even when nobody
          // submits, so healthy() stays current for ingress.
          auto wake = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(kRecoveryIntervalMs);
          if (sync_due_later) wake = std::min(wake, next_unsynced_sync);
          cv.wait_until(lock, wake, ready);
        }
        if (stop && pending.empty()) {  // stop requested and drained
          lock.unlock();
          if (db_ok && unsynced_sync_ms > 0 &&
              unsynced.load(std::memory_order_acquire)) {
            SyncGated().PermitUncheckedError();
          }
          return;
        }
        group.swap(pending);
      }
      TakeDirectFailure();
      CheckSpace();
      if (!db_ok) MaybeRecover();
      healthy.store(db_ok && space_ok, std::memory_order_release);
      results.clear();
      if (!db_ok || !space_ok) {
        const absl::Status shed = absl::UnavailableError(absl::StrCat(
            "queue store unhealthy, writes refused until it recovers: ",
            space_ok ? last_error : space_error));
        results.assign(group.size(), shed);
      } else {
        WriteGroup(group, &results);
      }
      MaybeSyncUnsynced();
      commits.fetch_add(static_cast<int64_t>(group.size()),
                        std::memory_order_relaxed);
      for (size_t i = 0; i < group.size(); ++i) {
        if (group[i].done) group[i].done(results[i]);
      }
      group.clear();
    }
  }

  void WriteGroup(std::vector<Pending>& group,
                  std::vector<absl::Status>* results) {
    rocksdb::WriteOptions wo;
    wo.sync = false;
    bool need_sync = false;
    rocksdb::Status failed;
    for (Pending& p : group) {
      if (!failed.ok()) {
        // The DB is in a background-error state: do not touch it again.
        results->push_back(ToAbsl(failed, "queue write"));
        continue;
      }
      if (p.sync_only) {
        results->push_back(absl::OkStatus());
        if (sync) need_sync = true;
        continue;
      }
      absl::ReaderMutexLock counted(&counts->writes);
      rocksdb::Status s = db->Write(wo, p.batch.Finish());
      if (!s.ok()) {
        MarkUnhealthy(s);
        failed = s;
      } else {
        depth->Apply(p.batch);
        counts->Apply(p.batch);
      }
      results->push_back(ToAbsl(s, "queue write"));
      if (s.ok() && p.durable && sync) need_sync = true;
      if (s.ok() && !p.durable) MarkUnsynced();
    }
    if (!need_sync) return;
    // After a failed WAL append RocksDB must not be asked to sync that WAL
    // (Debian's librocksdb asserts in WritableFileWriter::SyncWithoutFlush):
    // the batches written before the failure are then not durable.
    rocksdb::Status rs = failed;
    if (rs.ok()) rs = SyncGated();
    if (rs.ok()) return;
    // A failed fsync may have dropped dirty WAL pages: nothing written after
    // it may be acknowledged until recovery has flushed the memtable and
    // switched to a fresh WAL.
    MarkUnhealthy(rs);
    const absl::Status not_synced = ToAbsl(rs, "WAL sync");
    for (size_t i = 0; i < group.size(); ++i) {
      if (group[i].durable && (*results)[i].ok()) (*results)[i] = not_synced;
    }
  }

  // Committer thread. Syncs the WAL, unless an unsynced write has failed.
  // With room on the disk, loop writes go on during the fsync (RocksDB's
  // SyncWAL runs alongside appends): an outcome that waited for the fsync
  // would be lost to a kill -9 in that time, and be sent again. Close to
  // full, the sync excludes them: a loop write that fails on the WAL while
  // it is synced trips an assertion in Debian's librocksdb (SyncWithoutFlush
  // after a failed append), and ENOSPC is the failure to expect there.
  // Loop writes refused meanwhile go through Commit().
  rocksdb::Status SyncGated() {
    if (space_roomy) {
      absl::ReaderMutexLock g(&gate);
      return SyncLocked();
    }
    absl::MutexLock g(&gate);
    return SyncLocked();
  }

  rocksdb::Status SyncLocked() ABSL_SHARED_LOCKS_REQUIRED(gate) {
    if (direct_failed.load(std::memory_order_acquire)) {
      return rocksdb::Status::IOError("an unsynced write failed");
    }
    // Writes from now on are after this sync.
    unsynced.store(false, std::memory_order_release);
    next_unsynced_sync = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(unsynced_sync_ms);
    rocksdb::Status s = db->SyncWAL();
    syncs.fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  // Committer thread: the interval's sync of unsynced writes, when due.
  void MaybeSyncUnsynced() {
    if (unsynced_sync_ms <= 0 || !db_ok ||
        !unsynced.load(std::memory_order_acquire) ||
        std::chrono::steady_clock::now() < next_unsynced_sync) {
      return;
    }
    rocksdb::Status rs = SyncGated();
    if (!rs.ok()) MarkUnhealthy(rs);
  }

  // Any thread, after a successful non-durable write.
  void MarkUnsynced() {
    if (unsynced_sync_ms <= 0 ||
        unsynced.exchange(true, std::memory_order_acq_rel)) {
      return;
    }
    std::lock_guard<std::mutex> lock(mu);  // no lost wake-up
    cv.notify_one();
  }

  // Loop threads (QueueStore::WriteUnsynced).
  absl::Status WriteDirect(StateBatch& batch) {
    if (!gate.ReaderTryLock()) {
      unsynced_refused.fetch_add(1, std::memory_order_relaxed);
      return absl::UnavailableError("queue store busy (sync or recovery)");
    }
    absl::Status result;
    if (!healthy.load(std::memory_order_acquire) ||
        direct_failed.load(std::memory_order_acquire)) {
      result = absl::UnavailableError("queue store unhealthy");
    } else {
      rocksdb::WriteOptions wo;
      wo.sync = false;
      wo.no_slowdown = true;  // never stall a loop: Incomplete instead
      absl::ReaderMutexLock counted(&counts->writes);
      rocksdb::Status s = db->Write(wo, batch.Finish());
      if (s.ok()) {
        depth->Apply(batch);
        counts->Apply(batch);
        unsynced_writes.fetch_add(1, std::memory_order_relaxed);
      } else if (s.IsIncomplete()) {
        unsynced_refused.fetch_add(1, std::memory_order_relaxed);
        result = absl::UnavailableError("queue write would stall");
      } else {
        {
          std::lock_guard<std::mutex> lock(mu);
          direct_error = s.ToString();
        }
        direct_failed.store(true, std::memory_order_release);
        healthy.store(false, std::memory_order_release);
        result = ToAbsl(s, "queue write");
      }
    }
    gate.ReaderUnlock();
    if (result.ok()) {
      MarkUnsynced();
    } else if (!absl::IsUnavailable(result)) {
      cv.notify_one();  // the committer takes over recovery
    }
    return result;
  }

  // Committer thread: a failed WriteUnsynced latches like a failed commit.
  void TakeDirectFailure() {
    if (!direct_failed.load(std::memory_order_acquire)) return;
    std::string error;
    {
      std::lock_guard<std::mutex> lock(mu);
      error.swap(direct_error);
    }
    direct_failed.store(false, std::memory_order_release);
    MarkUnhealthy(rocksdb::Status::IOError(error));
  }

  void MarkUnhealthy(const rocksdb::Status& s) {
    if (db_ok) last_error = s.ToString();
    db_ok = false;
    healthy.store(false, std::memory_order_release);
    next_recovery = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(kRecoveryIntervalMs);
  }

  // Committer thread: statvfs of the store's directory, at most every
  // kRecoveryIntervalMs.
  void CheckSpace() {
    if (min_free_bytes == 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_space_check) return;
    next_space_check = now + std::chrono::milliseconds(kRecoveryIntervalMs);
    struct statvfs v;
    if (::statvfs(path.c_str(), &v) != 0) return;  // keep the last verdict
    const uint64_t free_bytes =
        static_cast<uint64_t>(v.f_bavail) * static_cast<uint64_t>(v.f_frsize);
    space_ok = free_bytes >= min_free_bytes;
    // Far enough from the bound that no write fails before the next check.
    space_roomy = free_bytes / kRoomyFactor >= min_free_bytes;
    if (!space_ok) {
      space_error = absl::StrCat("disk full: ", free_bytes, " bytes free under ",
                                 path, ", writes need ", min_free_bytes);
    }
  }

  // Committer thread. Resume() clears RocksDB's background error (it is
  // read-only after ENOSPC). The WAL writer that failed stays poisoned (the
  // next append to it aborts the process in Debian's librocksdb, and fails
  // in a release build), so before any logged write: put a marker without
  // WAL, which makes the memtable non-empty, and flush, which moves every
  // written entry into a synced SST and switches to a fresh WAL. All of this
  // fails fast while the disk is still full. Only the committer writes, so
  // no write can reach the old WAL in between.
  void MaybeRecover() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_recovery) return;
    next_recovery = now + std::chrono::milliseconds(kRecoveryIntervalMs);
    absl::MutexLock g(&gate);  // no WriteUnsynced until the fresh WAL
    rocksdb::Status s = db->Resume();
    if (s.ok()) {
      rocksdb::WriteOptions no_wal;
      no_wal.disableWAL = true;
      char buf[8];
      EncodeInt64Le(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count(),
                    buf);
      s = db->Put(no_wal, kMetaRecoveredKey, rocksdb::Slice(buf, 8));
    }
    // Every family: none may keep data that only the damaged WAL holds.
    if (s.ok()) s = db->Flush(rocksdb::FlushOptions(), families);
    if (!s.ok()) {
      last_error = s.ToString();
      return;
    }
    recoveries.fetch_add(1, std::memory_order_relaxed);
    db_ok = true;
  }

  DepthMirror* const depth;  // the store's; outlives the committer
  CountsMirror* const counts;  // likewise
  rocksdb::DB* const db;
  const std::vector<rocksdb::ColumnFamilyHandle*> families;
  const bool sync;
  const std::string path;
  const uint64_t min_free_bytes;
  const int unsynced_sync_ms;  // 0: no interval syncs
  // WriteUnsynced holds it shared (try-lock only); the committer holds it
  // exclusively while it syncs the WAL or recovers.
  absl::Mutex gate;
  std::atomic<bool> unsynced{false};  // non-durable writes since the sync
  std::atomic<bool> direct_failed{false};
  std::atomic<int64_t> unsynced_writes{0};
  std::atomic<int64_t> unsynced_refused{0};
  std::string direct_error;  // guarded by mu
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Pending> pending;  // guarded by mu
  bool stop = false;             // guarded by mu
  std::atomic<int64_t> syncs{0};
  std::atomic<int64_t> commits{0};
  std::atomic<int64_t> recoveries{0};
  std::atomic<bool> healthy{true};
  // Committer thread only.
  bool db_ok = true;     // no failed write since the last recovery
  bool space_ok = true;  // free space >= min_free_bytes at the last check
  // Free space >= kRoomyFactor * min_free_bytes at the last check: syncs let
  // loop writes through (SyncGated). Unknown (min_free_bytes 0): false.
  static constexpr uint64_t kRoomyFactor = 4;
  bool space_roomy = false;
  std::string last_error;
  std::string space_error;
  std::chrono::steady_clock::time_point next_recovery;
  std::chrono::steady_clock::time_point next_space_check;
  std::chrono::steady_clock::time_point next_unsynced_sync;
  std::thread thread;
};

// ---------------------------------------------------------------- QueueStore

namespace {

// A store written before the 'D' counters existed: count its queue once
// (O(entries), only on the first open by this version) and set the counters
// and the marker in one synced batch. New stores get the marker at once.
absl::Status InitDepthCounters(rocksdb::DB* db) {
  std::string marker;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kMetaDepthKey, &marker);
  if (s.ok()) return absl::OkStatus();
  if (!s.IsNotFound()) return ToAbsl(s, "read depth marker");
  absl::flat_hash_map<uint32_t, int64_t> depth;
  const std::string start = "Q";
  const std::string end = "R";
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek(start); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() != kQueueKeySize) continue;
    const uint32_t lane_id =
        (static_cast<uint32_t>(static_cast<unsigned char>(k[1])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(k[2])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(k[3])));
    ++depth[lane_id];
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "count queue");
  rocksdb::WriteBatch batch;
  for (const auto& [lane_id, n] : depth) {
    char kbuf[kDepthKeySize];
    char vbuf[8];
    EncodeInt64Le(n, vbuf);
    batch.Put(DepthKeySlice(static_cast<uint16_t>(lane_id >> 8),
                            static_cast<uint8_t>(lane_id & 0xff), kbuf),
              rocksdb::Slice(vbuf, 8));
  }
  batch.Put(kMetaDepthKey, "1");
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return ToAbsl(db->Write(wo, &batch), "write depth counters");
}

// The stored sum of the kDeferred gauges; a store written before it has
// none: sum the gauges once (O(contents), on the first open by this
// version) and Put it (synced), so that later merges add to it.
absl::StatusOr<int64_t> InitDeferredTotal(rocksdb::DB* db) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kMetaDeferredKey, &value);
  if (s.ok()) {
    if (value.size() != 8) {
      return absl::DataLossError(absl::StrCat(
          "meta key ", kMetaDeferredKey, " holds ", value.size(),
          " bytes, expected 8"));
    }
    return DecodeInt64Le(value);
  }
  if (!s.IsNotFound()) return ToAbsl(s, "read deferred total");
  int64_t total = 0;
  const std::string end = "O";
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek("N"); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    // CounterKey: 'N' content_id:u64 counter:u8.
    constexpr size_t kCounterKeySize = 1 + 8 + 1;
    if (k.size() != kCounterKeySize || it->value().size() != 8 ||
        static_cast<uint8_t>(k[kCounterKeySize - 1]) !=
            static_cast<uint8_t>(Counter::kDeferred)) {
      continue;
    }
    total += DecodeInt64Le(it->value());
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "sum deferred gauges");
  char vbuf[8];
  EncodeInt64Le(total, vbuf);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = db->Put(wo, kMetaDeferredKey, rocksdb::Slice(vbuf, 8));
  if (!s.ok()) return ToAbsl(s, "write deferred total");
  return total;
}

// A store written before column families holds every key in `default`,
// and one of an older layout some keys in the family they had then ('S' in
// `default`, 'O' in `events`): move every key that is not in its family
// (column_families.h) to it, in batches that each Put into the family and
// Delete from the old one (atomic), then set kMetaLayoutKey to
// kLayoutVersion (synced). Interrupted, the next Open moves what is left.
// New stores find nothing to move and get the marker at once.
absl::Status UpgradeLayout(rocksdb::DB* db,
                           rocksdb::ColumnFamilyHandle* const families[],
                           const QueueStore::Options& o,
                           const rocksdb::DBOptions& db_options) {
  rocksdb::ColumnFamilyHandle* const dflt =
      families[static_cast<uint32_t>(KeyFamily::kDefault)];
  std::string marker;
  rocksdb::Status s =
      db->Get(rocksdb::ReadOptions(), dflt, kMetaLayoutKey, &marker);
  if (s.ok() && marker == kLayoutVersion) return absl::OkStatus();
  if (!s.ok() && !s.IsNotFound()) return ToAbsl(s, "read layout marker");
  constexpr size_t kMaxBatchBytes = 16 << 20;
  const size_t max_keys =
      static_cast<size_t>(std::max(1, o.upgrade_batch_keys));
  int64_t moved = 0;
  int batches = 0;
  rocksdb::WriteBatch batch;
  size_t batch_keys = 0;
  auto write_batch = [&]() -> absl::Status {
    if (batch_keys == 0) return absl::OkStatus();
    if (o.upgrade_max_batches >= 0 && batches >= o.upgrade_max_batches) {
      return absl::AbortedError(absl::StrCat(
          "layout upgrade stopped after ", batches, " batches (test hook)"));
    }
    rocksdb::Status ws = db->Write(rocksdb::WriteOptions(), &batch);
    if (!ws.ok()) return ToAbsl(ws, "layout upgrade");
    moved += static_cast<int64_t>(batch_keys);
    ++batches;
    batch.Clear();
    batch_keys = 0;
    return absl::OkStatus();
  };
  for (int from_id = 0; from_id < kNumKeyFamilies; ++from_id) {
    rocksdb::ColumnFamilyHandle* const from = families[from_id];
    for (char prefix = 'A'; prefix <= 'Z'; ++prefix) {
      const KeyFamily f = FamilyOfPrefix(prefix);
      if (static_cast<int>(f) == from_id) continue;
      rocksdb::ColumnFamilyHandle* const to =
          families[static_cast<uint32_t>(f)];
      const std::string start(1, prefix);
      const std::string end(1, static_cast<char>(prefix + 1));
      rocksdb::Slice upper(end);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper;
      ro.fill_cache = false;
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, from));
      for (it->Seek(start); it->Valid(); it->Next()) {
        s = batch.Put(to, it->key(), it->value());
        if (s.ok()) s = batch.Delete(from, it->key());
        if (!s.ok()) return ToAbsl(s, "layout upgrade batch");
        ++batch_keys;
        if (batch_keys >= max_keys || batch.GetDataSize() >= kMaxBatchBytes) {
          if (absl::Status ws = write_batch(); !ws.ok()) return ws;
        }
      }
      if (!it->status().ok()) {
        return ToAbsl(it->status(), "layout upgrade scan");
      }
    }
  }
  if (absl::Status ws = write_batch(); !ws.ok()) return ws;
  rocksdb::WriteOptions wo;
  wo.sync = true;  // also makes every batch above durable
  s = db->Put(wo, dflt, kMetaLayoutKey, kLayoutVersion);
  if (!s.ok()) return ToAbsl(s, "write layout marker");
  if (moved > 0) {
    rocksdb::Log(rocksdb::InfoLogLevel::WARN_LEVEL, db_options.info_log,
                 "salvo: layout upgrade moved %lld keys to their column "
                 "families in %d batches",
                 static_cast<long long>(moved), batches);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<QueueStore>> QueueStore::Open(
    const Options& o) {
  if (o.num_shards < 1 || o.num_shards > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_shards must be in [1, 65536], got ", o.num_shards));
  }
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  if (o.env != nullptr) options.env = o.env;
  options.info_log = PlainFileLogger::Open(o.path);
  // A WAL file stays until every family with data in it has flushed: past
  // this bound RocksDB flushes the families that pin the oldest WAL (a quiet
  // `blocks` family would otherwise keep every WAL and fill the disk).
  options.max_total_wal_size =
      o.max_total_wal_bytes > 0
          ? o.max_total_wal_bytes
          : std::max<uint64_t>(4 * static_cast<uint64_t>(o.write_buffer_bytes),
                               64ull << 20);
  options.allow_concurrent_memtable_write = true;
  // One memory budget: memtables of every family are charged to the block
  // cache, and index and filter blocks live in it (pinned for L0) instead of
  // growing with the number of keys outside any limit.
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(o.block_cache_bytes);
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  options.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(
      o.memtable_budget_bytes, table.block_cache);

  rocksdb::ColumnFamilyOptions base;
  base.write_buffer_size = o.write_buffer_bytes;
  base.max_write_buffer_number = 3;
  // No block compression: with 10M queued the loops' scans spent ~40% of
  // their CPU in LZ4_decompress (block cache misses), and the delivery rate
  // at 10M rose from 0.11-0.20 to ~0.5 of the 100k-queue rate without it
  // (bench/scale_bench.py). Costs disk: 1.9 GB instead of ~1.4 GB at 10M.
  base.compression = rocksdb::kNoCompression;
  // A state batch alternates between key families ('Q' lane, 'O' outcomes of
  // a content): keep one memtable insert hint per 4-byte prefix so that each
  // family's mostly sequential inserts stay cheap. Hints serve a write
  // group with one writer; when the committer and loop threads (ingest
  // chunks, outcomes via WriteUnsynced) write at once, their memtable inserts
  // run in parallel instead (the skiplist's concurrent insert).
  base.memtable_insert_with_hint_prefix_extractor.reset(
      rocksdb::NewFixedPrefixTransform(4));
  base.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  // default: queue entries and the counters ('N', 'D': merge-add).
  rocksdb::ColumnFamilyOptions hot = base;
  hot.merge_operator = std::make_shared<Int64AddOperator>();
  // A queue deletes from its front: compact files dense with tombstones so
  // that scans from the start of a lane do not wade through them.
  hot.table_properties_collector_factories.emplace_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(/*sliding_window=*/32768,
                                                    /*deletion_trigger=*/8192));
  // events ('E', 'O') and blocks (whose packed ACCEPTED events 'A' age out
  // like 'E'): the retention filter.
  rocksdb::ColumnFamilyOptions events = base;
  rocksdb::ColumnFamilyOptions blocks = base;
  if (o.event_retention_ms > 0) {
    auto retention =
        std::make_shared<EventRetentionFilterFactory>(o.event_retention_ms);
    events.compaction_filter_factory = retention;
    blocks.compaction_filter_factory = retention;
  }
  // suppressions: point reads (two per delivery), mostly misses: a bloom
  // filter per file answers those without a data block.
  rocksdb::ColumnFamilyOptions suppressions = base;
  {
    rocksdb::BlockBasedTableOptions filtered = table;
    filtered.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    suppressions.table_factory.reset(
        rocksdb::NewBlockBasedTableFactory(filtered));
    suppressions.memtable_whole_key_filtering = true;
    suppressions.memtable_prefix_bloom_size_ratio = 0.05;
  }
  // outcomes: the legacy 'O' records of older spools (nothing new is
  // written there), aged out by the same retention filter.
  rocksdb::ColumnFamilyOptions outcomes = events;
  // In KeyFamily order: a new DB gets the families' ids 0..4 (a store of an
  // older layout gets each missing family as the next id).
  const std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {KeyFamilyName(KeyFamily::kDefault), hot},
      {KeyFamilyName(KeyFamily::kEvents), events},
      {KeyFamilyName(KeyFamily::kBlocks), blocks},
      {KeyFamilyName(KeyFamily::kSuppressions), suppressions},
      {KeyFamilyName(KeyFamily::kOutcomes), outcomes},
  };

  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s =
      rocksdb::DB::Open(options, o.path, descriptors, &handles, &raw);
  if (!s.ok()) return ToAbsl(s, absl::StrCat("open ", o.path));
  // From here the store owns the DB and the handles (its destructor closes
  // them in order on every error path).
  std::unique_ptr<QueueStore> store(new QueueStore());
  store->db_.reset(raw);
  rocksdb::DB* const db = raw;
  for (int i = 0; i < kNumKeyFamilies; ++i) {
    store->families_[i] = handles[i];
  }
  for (int i = 0; i < kNumKeyFamilies; ++i) {
    const uint32_t id = store->families_[i]->GetID();
    if (id != static_cast<uint32_t>(i)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "queue store at ", o.path, ": column family '", descriptors[i].name,
          "' has id ", id, ", expected ", i,
          " (families must be created in the order default, events, blocks, "
          "suppressions, outcomes)"));
    }
  }
  absl::Status upgraded = UpgradeLayout(db, store->families_, o, options);
  if (!upgraded.ok()) return upgraded;

  std::string stored;
  s = db->Get(rocksdb::ReadOptions(), kMetaNumShardsKey, &stored);
  if (s.IsNotFound()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db->Put(wo, kMetaNumShardsKey, std::to_string(o.num_shards));
    if (!s.ok()) return ToAbsl(s, "write num_shards");
  } else if (!s.ok()) {
    return ToAbsl(s, "read num_shards");
  } else if (stored != std::to_string(o.num_shards)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "queue store at ", o.path, " was created with ", stored,
        " shards; Open asked for ", o.num_shards,
        " (the shard count is fixed at creation)"));
  }

  {
    // This Open's epoch, stored before any run can carry it.
    std::string value;
    s = db->Get(rocksdb::ReadOptions(), kMetaEpochKey, &value);
    if (!s.ok() && !s.IsNotFound()) return ToAbsl(s, "read epoch");
    store->epoch_ =
        static_cast<uint64_t>(s.ok() ? DecodeInt64Le(value) : 0) + 1;
    char buf[8];
    EncodeInt64Le(static_cast<int64_t>(store->epoch_), buf);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db->Put(wo, kMetaEpochKey, rocksdb::Slice(buf, 8));
    if (!s.ok()) return ToAbsl(s, "write epoch");
  }
  absl::Status depth = InitDepthCounters(db);
  if (!depth.ok()) return depth;
  absl::StatusOr<int64_t> deferred = InitDeferredTotal(db);
  if (!deferred.ok()) return deferred.status();
  store->depth_.deferred.store(*deferred);
  // The in-memory mirror of the counters, read once (nothing writes yet).
  store->depth_.shard =
      std::make_unique<std::atomic<int64_t>[]>(o.num_shards);
  for (int i = 0; i < o.num_shards; ++i) store->depth_.shard[i].store(0);
  {
    const rocksdb::Slice upper("E");
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(ro, store->families_[0]));
    int64_t total = 0;
    for (it->Seek("D"); it->Valid(); it->Next()) {
      rocksdb::Slice k = it->key();
      if (k.size() != kDepthKeySize || it->value().size() != 8) continue;
      const int shard = (static_cast<uint8_t>(k[1]) << 8) |
                        static_cast<uint8_t>(k[2]);
      if (shard >= o.num_shards) continue;
      const int64_t v = DecodeInt64Le(it->value());
      store->depth_.shard[shard].fetch_add(v);
      total += v;
    }
    if (!it->status().ok()) return ToAbsl(it->status(), "read depth counters");
    store->depth_.total.store(total);
  }

  store->num_shards_ = o.num_shards;
  store->counts_.max_contents = std::max<size_t>(1, o.counts_mirror_contents);
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  store->last_id_.store(static_cast<uint64_t>(now_ms) << 20);
  store->committer_ = std::make_unique<Committer>(
      db, std::vector<rocksdb::ColumnFamilyHandle*>(
              store->families_, store->families_ + kNumKeyFamilies),
      o.sync, o.path, o.min_free_bytes, o.unsynced_sync_ms, &store->depth_,
      &store->counts_);
  return store;
}

void QueueStore::DepthMirror::Apply(StateBatch& batch) {
  for (const auto& [shard_id, delta] : batch.finished_depth_) {
    shard[shard_id].fetch_add(delta, std::memory_order_relaxed);
    total.fetch_add(delta, std::memory_order_relaxed);
  }
  batch.finished_depth_.clear();
  if (batch.finished_deferred_ != 0) {
    deferred.fetch_add(batch.finished_deferred_, std::memory_order_relaxed);
    batch.finished_deferred_ = 0;
  }
}

QueueStore::~QueueStore() {
  committer_.reset();  // drains and joins before the DB closes
  if (!db_) return;
  for (rocksdb::ColumnFamilyHandle*& h : families_) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    h = nullptr;
  }
  db_->Close().PermitUncheckedError();
}

uint16_t QueueStore::ShardForDomain(absl::string_view domain) const {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 over the lowercase name
  for (char c : domain) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 'A' && u <= 'Z') u = static_cast<unsigned char>(u - 'A' + 'a');
    h ^= u;
    h *= 1099511628211ull;
  }
  return static_cast<uint16_t>(h % static_cast<uint64_t>(num_shards_));
}

uint64_t QueueStore::NextId() {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const uint64_t floor = static_cast<uint64_t>(now_ms) << 20;
  uint64_t last = last_id_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = last + 1 > floor ? last + 1 : floor;
  } while (!last_id_.compare_exchange_weak(last, next,
                                           std::memory_order_relaxed));
  return next;
}

void QueueStore::Commit(StateBatch batch, bool durable,
                        std::function<void(absl::Status)> done) {
  committer_->Submit({std::move(batch), durable, std::move(done)});
}

void QueueStore::SyncThen(std::function<void(absl::Status)> done) {
  Committer::Pending p{StateBatch(), /*durable=*/true, std::move(done)};
  p.sync_only = true;
  committer_->Submit(std::move(p));
}

absl::Status QueueStore::WriteUnsynced(StateBatch& batch) {
  return committer_->WriteDirect(batch);
}

int64_t QueueStore::unsynced_writes() const {
  return committer_->unsynced_writes.load(std::memory_order_relaxed);
}

int64_t QueueStore::unsynced_refused() const {
  return committer_->unsynced_refused.load(std::memory_order_relaxed);
}

absl::Status QueueStore::CommitNow(StateBatch batch, bool durable) {
  if (std::this_thread::get_id() == committer_->thread.get_id()) {
    // It would wait for itself; callbacks must use Commit().
    return absl::FailedPreconditionError(
        "CommitNow called from a commit callback; use Commit()");
  }
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  absl::Status result;
  Commit(std::move(batch), durable, [&](absl::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(s);
    finished = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished; });
  return result;
}

absl::Status QueueStore::ScanDue(uint16_t shard, Lane lane, int64_t now_ms,
                                 size_t max, std::string* cursor,
                                 std::vector<QueueEntry>* out,
                                 int64_t* next_due_ms, size_t max_recipients,
                                 bool* limited) {
  if (next_due_ms != nullptr) *next_due_ms = -1;
  if (limited != nullptr) *limited = false;
  const std::string start = QueueLanePrefix(shard, lane);
  const std::string end = PrefixEnd(start);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('Q')));

  const bool resume = !cursor->empty() && *cursor >= start;
  it->Seek(resume ? rocksdb::Slice(*cursor) : rocksdb::Slice(start));
  if (resume && it->Valid() && it->key() == rocksdb::Slice(*cursor)) it->Next();

  size_t n = 0;
  size_t recipients = 0;
  for (; it->Valid(); it->Next()) {
    if (n >= max || recipients >= max_recipients) {
      if (limited != nullptr) *limited = true;
      break;
    }
    const rocksdb::Slice k = it->key();
    QueueKey key;
    if (!DecodeQueueKey(absl::string_view(k.data(), k.size()), &key)) {
      return absl::DataLossError(
          absl::StrCat("malformed queue key in shard ", shard));
    }
    if (key.due_ms > now_ms) {  // ordered by due: nothing later is due
      if (next_due_ms != nullptr) *next_due_ms = key.due_ms;
      break;
    }
    if (n == out->size()) out->emplace_back();
    QueueEntry& e = (*out)[n];
    e.key = key;
    const rocksdb::Slice v = it->value();
    if (!e.rec.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
      return absl::DataLossError(
          absl::StrCat("unparsable recipient ", IdToHex(key.id)));
    }
    recipients += IsRun(e.rec) ? e.rec.members_size() : 1;
    ++n;
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "scan due");
  out->resize(n);
  if (n > 0) {
    cursor->clear();
    EncodeQueueKey((*out)[n - 1].key, cursor);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int64_t>> QueueStore::NextDue(
    uint16_t shard, Lane lane, const std::string& cursor) {
  const std::string start = QueueLanePrefix(shard, lane);
  const std::string end = PrefixEnd(start);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('Q')));
  const bool resume = !cursor.empty() && cursor >= start;
  it->Seek(resume ? rocksdb::Slice(cursor) : rocksdb::Slice(start));
  if (resume && it->Valid() && it->key() == rocksdb::Slice(cursor)) it->Next();
  if (!it->Valid()) {
    if (!it->status().ok()) return ToAbsl(it->status(), "next due");
    return std::optional<int64_t>();
  }
  QueueKey key;
  const rocksdb::Slice k = it->key();
  if (!DecodeQueueKey(absl::string_view(k.data(), k.size()), &key)) {
    return absl::DataLossError("malformed queue key");
  }
  return std::optional<int64_t>(key.due_ms);
}

absl::StatusOr<Content> QueueStore::GetContent(uint64_t content_id) {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), HandleFor('C'), ContentKey(content_id),
               &value);
  if (!s.ok()) return ToAbsl(s, absl::StrCat("content ", IdToHex(content_id)));
  Content content;
  if (!content.ParseFromString(value)) {
    return absl::DataLossError(
        absl::StrCat("unparsable content ", IdToHex(content_id)));
  }
  return content;
}

absl::StatusOr<ContentState> QueueStore::GetContentState(uint64_t content_id) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), HandleFor('X'),
                               ContentStateKey(content_id), &value);
  if (s.IsNotFound()) return ContentState::kActive;
  if (!s.ok()) return ToAbsl(s, absl::StrCat("state ", IdToHex(content_id)));
  if (value.size() != 1 || static_cast<uint8_t>(value[0]) > 2) {
    return absl::DataLossError(
        absl::StrCat("bad state record of ", IdToHex(content_id)));
  }
  return static_cast<ContentState>(value[0]);
}

namespace {

Counts ToCounts(const std::array<int64_t, kNumCounters>& values) {
  Counts counts;
  counts.accepted = values[static_cast<int>(Counter::kAccepted)];
  counts.delivered = values[static_cast<int>(Counter::kDelivered)];
  counts.bounced = values[static_cast<int>(Counter::kBounced)];
  counts.expired = values[static_cast<int>(Counter::kExpired)];
  counts.deferred = values[static_cast<int>(Counter::kDeferred)];
  counts.cancelled = values[static_cast<int>(Counter::kCancelled)];
  return counts;
}

}  // namespace

bool QueueStore::CountsMirror::Find(uint64_t content_id, Values* out) {
  if (!any.load(std::memory_order_acquire)) return false;
  absl::MutexLock lock(&mu);
  auto it = values.find(content_id);
  if (it == values.end()) return false;
  *out = it->second;
  return true;
}

void QueueStore::CountsMirror::Insert(uint64_t content_id, const Values& v) {
  absl::MutexLock lock(&mu);
  if (values.size() >= max_contents && !values.contains(content_id)) {
    values.erase(values.begin());  // any one: it is loaded again if read
  }
  values[content_id] = v;
  any.store(true, std::memory_order_release);
}

void QueueStore::CountsMirror::Apply(StateBatch& batch) {
  if (!batch.finished_counts_.empty() &&
      any.load(std::memory_order_acquire)) {
    absl::MutexLock lock(&mu);
    for (const auto& [key, delta] : batch.finished_counts_) {
      auto it = values.find(key.first);
      if (it != values.end() && key.second < kNumCounters) {
        it->second[key.second] += delta;
      }
    }
  }
  batch.finished_counts_.clear();
}

absl::StatusOr<Counts> QueueStore::GetCounts(uint64_t content_id) {
  CountsMirror::Values v;
  if (counts_.Find(content_id, &v)) return ToCounts(v);
  // Load: no write may land between the read and the insert. Never wait
  // for the writers (one may be in a write stall, and the caller is often
  // a loop): while any of them writes, read without keeping the result.
  if (!counts_.writes.TryLock()) return StoredCounts(content_id);
  if (absl::Status s = ReadCounterValues(content_id, &v); !s.ok()) {
    counts_.writes.Unlock();
    return s;
  }
  counts_.Insert(content_id, v);
  counts_.loads.fetch_add(1, std::memory_order_relaxed);
  counts_.writes.Unlock();
  return ToCounts(v);
}

absl::StatusOr<Counts> QueueStore::StoredCounts(uint64_t content_id) {
  CountsMirror::Values v;
  if (absl::Status s = ReadCounterValues(content_id, &v); !s.ok()) return s;
  return ToCounts(v);
}

absl::Status QueueStore::ReadCounterValues(uint64_t content_id,
                                           CountsMirror::Values* values) {
  const std::string start = CounterKey(content_id, 0);
  const std::string end = PrefixEnd(start.substr(0, 9));
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('N')));
  values->fill(0);
  for (it->Seek(start); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() != 10) continue;
    const uint8_t c = static_cast<uint8_t>(k.data()[9]);
    if (c < kNumCounters) (*values)[c] = DecodeInt64Le(it->value());
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "counts");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Outcome>> QueueStore::GetOutcome(
    uint64_t content_id, uint64_t id) {
  // The recipient's events sort in the order they happened (seq = attempt
  // << 8 | state): the last one that is not ACCEPTED is the outcome.
  char kbuf[kEventKeySize];
  const absl::string_view first = EventKey(content_id, id, 0, kbuf);
  const std::string start(first.data(), first.size() - 4);  // 'E' c r
  const std::string end = PrefixEnd(start);
  rocksdb::Slice upper(end);
  rocksdb::Slice lower(start);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  ro.iterate_lower_bound = &lower;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('E')));
  for (it->SeekToLast(); it->Valid(); it->Prev()) {
    Event e;
    if (!e.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError(
          absl::StrCat("unparsable event of ", IdToHex(id)));
    }
    Outcome o;
    switch (e.state()) {
      case Event::DELIVERED: o.set_state(Outcome::DELIVERED); break;
      case Event::DEFERRED: o.set_state(Outcome::DEFERRED); break;
      case Event::BOUNCED:
      case Event::SUPPRESSED: o.set_state(Outcome::BOUNCED); break;
      case Event::EXPIRED: o.set_state(Outcome::EXPIRED); break;
      case Event::CANCELLED: o.set_state(Outcome::CANCELLED); break;
      default: continue;  // ACCEPTED: not an outcome
    }
    o.set_at_ms(e.at_ms());
    o.set_attempts(e.attempt());
    o.set_remote_host(e.remote_host());
    o.set_reply(e.reply());
    o.set_address(e.address());
    o.set_content_id(content_id);
    o.set_tls(e.tls());
    return std::optional<Outcome>(std::move(o));
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "events");
  // Spools written before outcomes became events keep 'O' records.
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), HandleFor('O'),
               OutcomeKey(content_id, id), &value);
  if (s.IsNotFound()) return std::optional<Outcome>();
  if (!s.ok()) return ToAbsl(s, "outcome");
  Outcome o;
  if (!o.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("unparsable outcome ", IdToHex(id)));
  }
  return std::optional<Outcome>(std::move(o));
}

absl::Status QueueStore::ScanEvents(
    uint64_t content_id, uint64_t recipient_id, absl::string_view after,
    size_t max, size_t max_examined,
    const std::function<bool(const EventEntry&)>& keep,
    std::vector<EventEntry>* out, std::string* last, bool* more) {
  std::string start(1, 'E');
  for (int i = 7; i >= 0; --i) start.push_back(static_cast<char>(content_id >> (8 * i)));
  if (recipient_id != 0) {
    for (int i = 7; i >= 0; --i) {
      start.push_back(static_cast<char>(recipient_id >> (8 * i)));
    }
  }
  const std::string end = PrefixEnd(start);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('E')));
  if (after.empty() || after < absl::string_view(start)) {
    it->Seek(start);
  } else {
    it->Seek(rocksdb::Slice(after.data(), after.size()));
    if (it->Valid() && it->key() == rocksdb::Slice(after.data(), after.size())) {
      it->Next();
    }
  }
  // Packed ACCEPTED events of blocks ('A' content_id first_id) are merged
  // in: recipient `pos` of the loaded block lists as if it were stored under
  // EventKey(content_id, pos, EventSeq(0, ACCEPTED)).
  const uint32_t kAcceptedSeq = EventSeq(0, Event::ACCEPTED);
  uint64_t from_id = recipient_id;
  if (!after.empty() && !(after < absl::string_view(start))) {
    uint64_t ac = 0, ar = 0;
    uint32_t as = 0;
    if (DecodeEventKey(after, &ac, &ar, &as) && ac == content_id) {
      from_id = std::max(from_id, as >= kAcceptedSeq ? ar + 1 : ar);
    }
  }
  std::string astart(1, 'A');
  for (int i = 7; i >= 0; --i) {
    astart.push_back(static_cast<char>(content_id >> (8 * i)));
  }
  const std::string aend = PrefixEnd(astart);
  rocksdb::Slice aupper(aend);
  rocksdb::ReadOptions aro;
  aro.iterate_upper_bound = &aupper;
  std::unique_ptr<rocksdb::Iterator> ait(
      db_->NewIterator(aro, HandleFor('A')));
  {
    char akey[17];
    akey[0] = 'A';
    for (int i = 7; i >= 0; --i) {
      akey[1 + 7 - i] = static_cast<char>(content_id >> (8 * i));
      akey[9 + 7 - i] = static_cast<char>(from_id >> (8 * i));
    }
    ait->SeekForPrev(rocksdb::Slice(akey, 17));
    if (!ait->Valid() || !ait->key().starts_with(astart)) ait->Seek(astart);
  }
  RecipientBlock packed;
  bool have_packed = false;
  uint64_t pos = 0, pend = 0;  // ids [pos, pend) of `packed` still to list
  auto next_packed = [&]() -> absl::Status {
    while (!have_packed || pos >= pend) {
      have_packed = false;
      if (!ait->Valid()) return ToAbsl(ait->status(), "scan packed events");
      if (!packed.ParseFromArray(ait->value().data(),
                                 static_cast<int>(ait->value().size()))) {
        return absl::DataLossError("unparsable packed events");
      }
      ait->Next();
      const uint64_t first = packed.first_id();
      if (recipient_id != 0 && first > recipient_id) return absl::OkStatus();
      pos = std::max(first, from_id);
      pend = first + static_cast<uint64_t>(packed.recipients_size());
      if (recipient_id != 0) pend = std::min(pend, recipient_id + 1);
      have_packed = true;
    }
    return absl::OkStatus();
  };
  if (absl::Status s = next_packed(); !s.ok()) return s;

  *more = false;
  size_t examined = 0;
  EventEntry entry;
  for (;;) {
    uint64_t e_content = 0, e_rid = 0;
    uint32_t e_seq = 0;
    bool e_decoded = false;
    if (it->Valid()) {
      const rocksdb::Slice k = it->key();
      e_decoded = DecodeEventKey(absl::string_view(k.data(), k.size()),
                                 &e_content, &e_rid, &e_seq);
    }
    if (!it->Valid() && !have_packed) break;
    if (out->size() >= max || examined >= max_examined) {
      *more = true;
      break;
    }
    ++examined;
    const bool use_packed =
        have_packed &&
        (!it->Valid() || (e_decoded && (pos < e_rid || (pos == e_rid &&
                                                        kAcceptedSeq < e_seq))));
    if (use_packed) {
      entry.content_id = content_id;
      entry.recipient_id = pos;
      entry.seq = kAcceptedSeq;
      entry.event.Clear();
      entry.event.set_state(Event::ACCEPTED);
      entry.event.set_at_ms(packed.accepted_ms());
      entry.event.set_address(
          packed.recipients(static_cast<int>(pos - packed.first_id()))
              .address());
      char kbuf[kEventKeySize];
      const absl::string_view k = EventKey(content_id, pos, kAcceptedSeq, kbuf);
      last->assign(k.data(), k.size());
      ++pos;
      if (absl::Status s = next_packed(); !s.ok()) return s;
      if (keep && !keep(entry)) continue;
      out->push_back(entry);
      continue;
    }
    const rocksdb::Slice k = it->key();
    last->assign(k.data(), k.size());
    if (!e_decoded) {
      it->Next();
      continue;
    }
    entry.content_id = e_content;
    entry.recipient_id = e_rid;
    entry.seq = e_seq;
    if (!entry.event.ParseFromArray(it->value().data(),
                                    static_cast<int>(it->value().size()))) {
      return absl::DataLossError(
          absl::StrCat("unparsable event of ", IdToHex(entry.recipient_id)));
    }
    it->Next();
    if (keep && !keep(entry)) continue;
    out->push_back(entry);
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "scan events");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> QueueStore::CountQueued(uint16_t shard) {
  const std::string start = QueueLanePrefix(shard, Lane::kTransactional)
                                .substr(0, 3);
  const std::string end = PrefixEnd(start);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('Q')));
  int64_t n = 0;
  Recipient rec;
  for (it->Seek(start); it->Valid(); it->Next()) {
    const rocksdb::Slice v = it->value();
    if (!rec.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
      return absl::DataLossError("unparsable queue entry");
    }
    n += IsRun(rec) ? rec.members_size() : 1;
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "count queued");
  return n;
}

absl::Status QueueStore::MembersWithEvents(uint64_t content_id,
                                           const std::vector<uint64_t>& ids,
                                           std::vector<bool>* has) {
  has->assign(ids.size(), false);
  if (ids.empty()) return absl::OkStatus();
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), HandleFor('E')));
  // A recipient's events share the key's first 17 bytes ('E' content id).
  constexpr size_t kRecipientPrefix = 1 + 8 + 8;
  for (size_t i = 0; i < ids.size(); ++i) {
    char buf[kEventKeySize];
    const absl::string_view k = EventKey(content_id, ids[i], 0, buf);
    it->Seek(rocksdb::Slice(k.data(), k.size()));
    if (!it->Valid()) {
      if (!it->status().ok()) return ToAbsl(it->status(), "member events");
      continue;
    }
    const rocksdb::Slice found = it->key();
    (*has)[i] = found.size() >= kRecipientPrefix &&
                std::memcmp(found.data(), k.data(), kRecipientPrefix) == 0;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> QueueStore::QueueDepth(uint16_t shard) {
  if (shard >= num_shards_) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  return depth_.shard[shard].load(std::memory_order_relaxed);
}

absl::StatusOr<int64_t> QueueStore::StoredQueueDepth(uint16_t shard) {
  int64_t total = 0;
  for (uint8_t lane = 0; lane < kNumLanes; ++lane) {
    char kbuf[kDepthKeySize];
    std::string value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), HandleFor('D'),
                 DepthKeySlice(shard, lane, kbuf), &value);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return ToAbsl(s, "queue depth");
    total += DecodeInt64Le(value);
  }
  return total;
}

int64_t QueueStore::syncs() const {
  return committer_->syncs.load(std::memory_order_relaxed);
}

int64_t QueueStore::commits() const {
  return committer_->commits.load(std::memory_order_relaxed);
}

QueueStore::MemoryUsage QueueStore::Memory() const {
  MemoryUsage m;
  uint64_t v = 0;
  if (db_->GetIntProperty(rocksdb::DB::Properties::kBlockCacheUsage, &v)) {
    m.block_cache = static_cast<int64_t>(v);
  }
  if (db_->GetAggregatedIntProperty(
          rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
    m.memtables = static_cast<int64_t>(v);
  }
  if (db_->GetAggregatedIntProperty(
          rocksdb::DB::Properties::kEstimateTableReadersMem, &v)) {
    m.table_readers = static_cast<int64_t>(v);
  }
  return m;
}

bool QueueStore::healthy() const {
  return committer_->healthy.load(std::memory_order_acquire);
}

int64_t QueueStore::recoveries() const {
  return committer_->recoveries.load(std::memory_order_relaxed);
}

}  // namespace salvo::storage

// ------------------------------------------------------- recipient blocks

namespace salvo::storage {
namespace {

constexpr size_t kBlockKeySize = 1 + 1 + 8 + 8 + 8;
constexpr size_t kPayloadKeySize = 1 + 8;
constexpr size_t kPackedKeySize = 1 + 8 + 8;

void PutU64(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v);
    v >>= 8;
  }
}

uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

rocksdb::Slice BlockKeySlice(const BlockKey& key, char buf[kBlockKeySize]) {
  buf[0] = 'B';
  buf[1] = static_cast<char>(key.lane);
  PutU64(static_cast<uint64_t>(key.due_ms), buf + 2);
  PutU64(key.first_id, buf + 10);
  PutU64(key.content_id, buf + 18);
  return rocksdb::Slice(buf, kBlockKeySize);
}

bool DecodeBlockKey(const rocksdb::Slice& k, const rocksdb::Slice& v,
                    BlockKey* key) {
  if (k.size() != kBlockKeySize || k[0] != 'B' || v.size() != 12) return false;
  key->lane = static_cast<Lane>(k[1]);
  key->due_ms = static_cast<int64_t>(GetU64(k.data() + 2));
  key->first_id = GetU64(k.data() + 10);
  key->content_id = GetU64(k.data() + 18);
  key->expires_ms = DecodeInt64Le(rocksdb::Slice(v.data(), 8));
  uint32_t count = 0;
  for (int i = 3; i >= 0; --i) {
    count = (count << 8) | static_cast<unsigned char>(v.data()[8 + i]);
  }
  key->count = count;
  return true;
}

void BlockIndexValue(int64_t expires_ms, uint32_t count, char buf[12]) {
  EncodeInt64Le(expires_ms, buf);
  for (int i = 0; i < 4; ++i) buf[8 + i] = static_cast<char>(count >> (8 * i));
}

rocksdb::Slice PayloadKeySlice(uint64_t first_id, char buf[kPayloadKeySize]) {
  buf[0] = 'P';
  PutU64(first_id, buf + 1);
  return rocksdb::Slice(buf, kPayloadKeySize);
}

rocksdb::Slice PackedKeySlice(uint64_t content_id, uint64_t first_id,
                              char buf[kPackedKeySize]) {
  buf[0] = 'A';
  PutU64(content_id, buf + 1);
  PutU64(first_id, buf + 9);
  return rocksdb::Slice(buf, kPackedKeySize);
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// RecipientBlock fields 1..3 in wire format.
void AppendBlockHeader(uint64_t content_id, uint64_t first_id,
                       int64_t accepted_ms, std::string* out) {
  out->push_back(0x08);
  AppendVarint(content_id, out);
  out->push_back(0x10);
  AppendVarint(first_id, out);
  out->push_back(0x18);
  AppendVarint(static_cast<uint64_t>(accepted_ms), out);
}

}  // namespace

void StateBatch::PutBlock(Lane lane, int64_t due_ms, uint64_t content_id,
                          uint64_t first_id, int64_t accepted_ms,
                          int64_t expires_ms,
                          const std::vector<const Recipient*>& recs) {
  if (recs.empty()) return;
  const uint32_t count = static_cast<uint32_t>(recs.size());
  // Payload, in RecipientBlock's wire format without building one.
  std::string& value = Scratch();
  value.clear();
  AppendBlockHeader(content_id, first_id, accepted_ms, &value);
  // Packed ACCEPTED events: the same with addresses only.
  event_value_.clear();
  AppendBlockHeader(content_id, first_id, accepted_ms, &event_value_);
  for (const Recipient* r : recs) {
    const size_t len = r->ByteSizeLong();
    value.push_back(0x22);
    AppendVarint(len, &value);
    const size_t at = value.size();
    value.resize(at + len);
    r->SerializeWithCachedSizesToArray(
        reinterpret_cast<uint8_t*>(&value[at]));
    const std::string& address = r->address();
    event_value_.push_back(0x22);
    AppendVarint(1 + VarintSize(address.size()) + address.size(),
                 &event_value_);
    event_value_.push_back(0x12);
    AppendVarint(address.size(), &event_value_);
    event_value_.append(address);
  }
  char pkey[kPayloadKeySize];
  RoutedPut(batch_.get(), PayloadKeySlice(first_id, pkey), value);
  BlockKey key;
  key.lane = lane;
  key.due_ms = due_ms;
  key.first_id = first_id;
  key.content_id = content_id;
  char bkey[kBlockKeySize];
  char bval[12];
  BlockIndexValue(expires_ms, count, bval);
  RoutedPut(batch_.get(), BlockKeySlice(key, bkey), rocksdb::Slice(bval, 12));
  char akey[kPackedKeySize];
  RoutedPut(batch_.get(), PackedKeySlice(content_id, first_id, akey),
            event_value_);
  Count(content_id, Counter::kAccepted, count);
  if (collect_events_) {
    BatchEvent& e = events_.emplace_back();
    e.content_id = content_id;
    e.recipient_id = first_id;
    e.event.set_state(Event::ACCEPTED);
    e.event.set_at_ms(accepted_ms);
    e.packed = std::make_shared<const std::string>(event_value_);
  }
  ++ops_;
}

namespace {

using ::google::protobuf::internal::WireFormatLite;

// Reads the length-delimited field at `in` (its tag already read) as a view
// into `bytes`.
bool ReadBytesView(google::protobuf::io::CodedInputStream& in,
                   absl::string_view bytes, absl::string_view* out) {
  uint32_t len = 0;
  if (!in.ReadVarint32(&len)) return false;
  const int at = in.CurrentPosition();
  if (len > bytes.size() - static_cast<size_t>(at)) return false;
  *out = bytes.substr(static_cast<size_t>(at), len);
  return in.Skip(static_cast<int>(len));
}

// The address (field 2) of a serialized Recipient.
bool RecipientAddress(absl::string_view rec, absl::string_view* address) {
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(rec.data()), static_cast<int>(rec.size()));
  *address = absl::string_view();
  while (const uint32_t tag = in.ReadTag()) {
    if (tag == WireFormatLite::MakeTag(
                   2, WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
      if (!ReadBytesView(in, rec, address)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

}  // namespace

absl::Status StateBatch::ExpandBlock(const BlockKey& key,
                                     absl::string_view payload,
                                     QueueStore& store,
                                     std::vector<bool>* shard_used) {
  // The payload is a serialized RecipientBlock; each recipient (field 4) is
  // copied as it is stored (address, fields) with its id appended in wire
  // format (Recipient field 11) into the run of its shard: no message is
  // parsed or built (10k recipients a block). The first pass checks the
  // whole payload and finds every recipient's shard, so a damaged payload
  // adds nothing.
  const auto bad = [&] {
    return absl::DataLossError(
        absl::StrCat("unparsable block ", IdToHex(key.first_id)));
  };
  struct Member {
    absl::string_view rec;
    uint16_t shard;
  };
  thread_local std::vector<Member> members;  // reused: 10k per block
  members.clear();
  uint64_t content_id = 0, accepted_ms = 0;
  {
    google::protobuf::io::CodedInputStream in(
        reinterpret_cast<const uint8_t*>(payload.data()),
        static_cast<int>(payload.size()));
    while (const uint32_t tag = in.ReadTag()) {
      const int field = WireFormatLite::GetTagFieldNumber(tag);
      if (field == 1 && WireFormatLite::GetTagWireType(tag) ==
                            WireFormatLite::WIRETYPE_VARINT) {
        if (!in.ReadVarint64(&content_id)) return bad();
      } else if (field == 3 && WireFormatLite::GetTagWireType(tag) ==
                                   WireFormatLite::WIRETYPE_VARINT) {
        if (!in.ReadVarint64(&accepted_ms)) return bad();
      } else if (tag == WireFormatLite::MakeTag(
                            4, WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
        absl::string_view rec, address;
        if (!ReadBytesView(in, payload, &rec) ||
            !RecipientAddress(rec, &address)) {
          return bad();
        }
        const size_t at = address.rfind('@');
        members.push_back(
            {rec, store.ShardForDomain(at == absl::string_view::npos
                                           ? absl::string_view()
                                           : address.substr(at + 1))});
      } else if (!WireFormatLite::SkipField(&in, tag)) {
        return bad();
      }
    }
    if (!in.ConsumedEntireMessage() || members.size() != key.count) {
      return bad();
    }
  }
  // Members by shard, each shard's in upload order (a counting sort).
  const int num_shards = store.num_shards();
  thread_local std::vector<uint32_t> start, order;
  start.assign(num_shards + 1, 0);
  for (const Member& m : members) ++start[m.shard + 1];
  size_t runs = 0;
  for (int shard = 0; shard < num_shards; ++shard) {
    runs += (start[shard + 1] + kMaxRunMembers - 1) / kMaxRunMembers;
    start[shard + 1] += start[shard];
  }
  order.resize(members.size());
  {
    thread_local std::vector<uint32_t> fill;
    fill.assign(start.begin(), start.end() - 1);
    for (uint32_t i = 0; i < members.size(); ++i) {
      order[fill[members[i].shard]++] = i;
    }
  }
  char bkey[kBlockKeySize];
  RoutedSingleDelete(batch_.get(), BlockKeySlice(key, bkey));
  char pkey[kPayloadKeySize];
  RoutedSingleDelete(batch_.get(), PayloadKeySlice(key.first_id, pkey));
  QueueKey qk;
  qk.lane = key.lane;
  qk.due_ms = key.due_ms;
  uint64_t run_id = runs > 0 ? store.NextIds(static_cast<uint32_t>(runs)) : 0;
  std::string& value = Scratch();
  char kbuf[kQueueKeySize];
  for (size_t from = 0; from < order.size();) {
    const uint16_t shard = members[order[from]].shard;
    size_t to = from;
    while (to < order.size() && to - from < kMaxRunMembers &&
           members[order[to]].shard == shard) {
      ++to;
    }
    // The run: Recipient fields 1, 5, 6 and 12, then its members (10),
    // each a stored recipient with its id (11) appended.
    value.clear();
    value.push_back(0x08);
    AppendVarint(content_id, &value);
    value.push_back(0x28);
    AppendVarint(accepted_ms, &value);
    value.push_back(0x30);
    AppendVarint(static_cast<uint64_t>(key.expires_ms), &value);
    value.push_back(0x60);
    AppendVarint(store.epoch(), &value);
    for (size_t k = from; k < to; ++k) {
      const absl::string_view rec = members[order[k]].rec;
      const uint64_t id = key.first_id + order[k];
      value.push_back(0x52);
      AppendVarint(rec.size() + 1 + VarintSize(id), &value);
      value.append(rec.data(), rec.size());
      value.push_back(0x58);
      AppendVarint(id, &value);
    }
    qk.shard = shard;
    qk.id = run_id++;
    RoutedPut(batch_.get(), QueueKeySlice(qk, kbuf), value);
    CountDepth(qk, static_cast<int64_t>(to - from));
    if (shard_used != nullptr) (*shard_used)[shard] = true;
    from = to;
  }
  ++ops_;
  return absl::OkStatus();
}

void StateBatch::CancelBlock(const BlockKey& key, const RecipientBlock& block,
                             int64_t at_ms) {
  char bkey[kBlockKeySize];
  RoutedSingleDelete(batch_.get(), BlockKeySlice(key, bkey));
  char pkey[kPayloadKeySize];
  RoutedSingleDelete(batch_.get(), PayloadKeySlice(key.first_id, pkey));
  thread_local Recipient rec;
  thread_local Outcome o;
  QueueKey qk;
  qk.lane = key.lane;
  qk.due_ms = key.due_ms;
  for (int i = 0; i < block.recipients_size(); ++i) {
    rec.Clear();
    rec.set_content_id(block.content_id());
    rec.set_address(block.recipients(i).address());
    o.Clear();
    o.set_at_ms(at_ms);
    o.set_reply("local: campaign cancelled");
    qk.id = key.first_id + static_cast<uint64_t>(i);
    PutOutcomeEvent(qk, rec, o, Event::CANCELLED);
  }
  Count(block.content_id(), Counter::kCancelled, block.recipients_size());
  ++ops_;
}

BlockKey StateBatch::MoveBlock(const BlockKey& key, int64_t new_due_ms,
                               int64_t new_expires_ms) {
  char bkey[kBlockKeySize];
  RoutedSingleDelete(batch_.get(), BlockKeySlice(key, bkey));
  BlockKey next = key;
  next.due_ms = new_due_ms;
  next.expires_ms = new_expires_ms;
  char bval[12];
  BlockIndexValue(new_expires_ms, next.count, bval);
  RoutedPut(batch_.get(), BlockKeySlice(next, bkey), rocksdb::Slice(bval, 12));
  ++ops_;
  return next;
}

uint64_t QueueStore::NextIds(uint32_t n) {
  if (n == 0) n = 1;
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const uint64_t floor = static_cast<uint64_t>(now_ms) << 20;
  uint64_t last = last_id_.load(std::memory_order_relaxed);
  uint64_t first;
  do {
    first = last + 1 > floor ? last + 1 : floor;
  } while (!last_id_.compare_exchange_weak(last, first + n - 1,
                                           std::memory_order_relaxed));
  return first;
}

absl::Status QueueStore::ScanBlocks(Lane lane, int64_t max_due_ms, size_t max,
                                    std::string* cursor,
                                    std::vector<BlockKey>* out) {
  out->clear();
  const std::string start = {'B', static_cast<char>(lane)};
  const std::string end = PrefixEnd(start);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('B')));
  const bool resume = !cursor->empty() && *cursor >= start;
  it->Seek(resume ? rocksdb::Slice(*cursor) : rocksdb::Slice(start));
  if (resume && it->Valid() && it->key() == rocksdb::Slice(*cursor)) it->Next();
  for (; it->Valid() && out->size() < max; it->Next()) {
    BlockKey key;
    if (!DecodeBlockKey(it->key(), it->value(), &key)) {
      return absl::DataLossError("malformed block index entry");
    }
    if (key.due_ms > max_due_ms) break;
    out->push_back(key);
    cursor->assign(it->key().data(), it->key().size());
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "scan blocks");
  return absl::OkStatus();
}

absl::Status QueueStore::ContentBlocks(uint64_t content_id,
                                       std::vector<BlockKey>* out) {
  out->clear();
  const std::string start = "B";
  const std::string end = "C";
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, HandleFor('B')));
  for (it->Seek(start); it->Valid(); it->Next()) {
    BlockKey key;
    if (!DecodeBlockKey(it->key(), it->value(), &key)) {
      return absl::DataLossError("malformed block index entry");
    }
    if (key.content_id == content_id) out->push_back(key);
  }
  if (!it->status().ok()) return ToAbsl(it->status(), "content blocks");
  return absl::OkStatus();
}

absl::Status QueueStore::GetBlockPayload(const BlockKey& key,
                                         std::string* payload) {
  char pkey[kPayloadKeySize];
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), HandleFor('P'),
               PayloadKeySlice(key.first_id, pkey), payload);
  if (!s.ok()) {
    return ToAbsl(s, absl::StrCat("block ", IdToHex(key.first_id)));
  }
  return absl::OkStatus();
}

absl::StatusOr<RecipientBlock> QueueStore::GetBlock(const BlockKey& key) {
  std::string value;
  if (absl::Status s = GetBlockPayload(key, &value); !s.ok()) return s;
  RecipientBlock block;
  if (!block.ParseFromString(value) ||
      block.recipients_size() != static_cast<int>(key.count)) {
    return absl::DataLossError(
        absl::StrCat("unparsable block ", IdToHex(key.first_id)));
  }
  return block;
}

namespace {

// Sums `add(key, value, &n)` over every key starting with the byte `prefix`;
// `add` returns false on a malformed entry (DataLoss naming `what`).
template <typename Add>
absl::StatusOr<int64_t> SumOverPrefix(rocksdb::DB* db,
                                      rocksdb::ColumnFamilyHandle* family,
                                      char prefix, absl::string_view what,
                                      Add add) {
  const std::string start(1, prefix);
  const std::string end(1, static_cast<char>(prefix + 1));
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, family));
  int64_t n = 0;
  for (it->Seek(start); it->Valid(); it->Next()) {
    if (!add(it->key(), it->value(), &n)) {
      return absl::DataLossError(absl::StrCat("malformed entry in ", what));
    }
  }
  if (!it->status().ok()) return ToAbsl(it->status(), what);
  return n;
}

}  // namespace

absl::StatusOr<int64_t> QueueStore::BlockedRecipients() {
  return SumOverPrefix(
      db_.get(), HandleFor('B'), 'B', "blocked recipients",
      [](const rocksdb::Slice& k, const rocksdb::Slice& v, int64_t* n) {
        BlockKey key;
        if (!DecodeBlockKey(k, v, &key)) return false;
        *n += key.count;
        return true;
      });
}

absl::StatusOr<int64_t> QueueStore::TotalDepth() {
  return depth_.total.load(std::memory_order_relaxed);
}

int64_t QueueStore::DeferredTotal() const {
  return depth_.deferred.load(std::memory_order_relaxed);
}

}  // namespace salvo::storage
