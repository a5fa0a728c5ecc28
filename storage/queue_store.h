// The sharded durable queue on RocksDB. Knows nothing of SMTP.
//
// Key space (all integers big-endian so that byte order is numeric order):
//   'Q' shard:u16 lane:u8 due_ms:u64 id:u64  -> Recipient   (queue entries)
//   'C' content_id:u64                       -> Content     (stored once)
//   'N' content_id:u64 counter:u8            -> int64       (merge-add counters)
//   'O' content_id:u64 id:u64                -> Outcome     (legacy: no
//       longer written; a recipient's outcome is its last event. Read when
//       a recipient has no event; dropped by compaction like 'E')
//   'S' tenant_len:u8 tenant folded_entry    -> suppression entry
//   'X' content_id:u64                       -> ContentState (1 byte)
//   'D' shard:u16 lane:u8                    -> int64 (merge-add: entries
//                                               queued in the lane)
//   'E' content_id:u64 id:u64 seq:u32        -> Event (recipient events;
//       seq = attempt << 8 | state; written in the batch of the state change
//       it describes; dropped by compaction after Options::event_retention_ms
//       counted from the recipient id's embedded accept time)
//                                      (storage/suppression_store.h)
//   'B' lane:u8 due_ms:u64 first_id:u64 content_id:u64
//                          -> expires_ms:i64le count:u32le (block index)
//   'P' first_id:u64       -> RecipientBlock (block payload: recipients
//       first_id .. first_id+count-1 of a campaign upload, not yet queue
//       entries; counted as accepted, not in the 'D' depth)
//   'A' content_id:u64 first_id:u64 -> RecipientBlock without fields
//       (the packed ACCEPTED events of a block; ScanEvents lists one event
//       per recipient; dropped by compaction like 'E')
// Column families (storage/column_families.h routes every key by its first
// byte, for reads and writes alike): `default` holds 'Q' 'C' 'N' 'X' 'D'
// 'M' 'I' (small, hot); `events` holds 'E' (append-mostly); `outcomes`
// holds the legacy 'O' records of older spools (nothing new is written
// there); `blocks` holds 'B' 'P' 'A' (written once at ingest);
// `suppressions` holds 'S' (two point reads per delivery, bloom-filtered).
// Separate families keep the churn of queue entries and events
// from compacting (rewriting) the large block payloads, and the suppression
// reads out of the queue's memtables and files. Meta key "Mcf_layout" holds
// the layout version ("3"); Open first moves every key that is not in its
// family (a store from before families; layout "1" had 'S' in `default`
// and 'O' in `events`), in batches of Options::upgrade_batch_keys, each
// atomic; an interrupted upgrade resumes at the next Open.
// 'Q', 'B' and 'P' keys are written once and removed with SingleDelete (a
// move is a removal and a new key), so a queue entry that is enqueued and
// finished within one memtable's life never reaches a file, not even as a
// tombstone.
// Recipient blocks: an upload chunk is one block (StateBatch::PutBlock);
// storage/block_expander.h turns blocks into 'Q' run entries, one WriteBatch
// per block, while the queue depth is below a window. The index ('B') is
// small, so walking it never reads payloads.
// Runs: a block becomes one 'Q' entry per shard (and per kMaxRunMembers
// recipients), whose Recipient value lists its members (records.proto), not
// one entry per recipient: one memtable insert, one flushed key and one
// removal per run. A member's outcome is written as any recipient's (event,
// counters, depth -1) but removes no key; a deferred or requeued member
// becomes an entry of its own. The run is removed (StateBatch::RemoveRun)
// once every member's outcome is written. A run written under an earlier
// epoch (a process that died; Options' Open counts epochs) may have members
// that are done: any 'E' event of a member means its outcome was written
// (MembersWithEvents), so it is skipped when the run is leased again.
// A shard is chosen by the recipient's domain, so one loop owns a
// destination; within a shard and lane, entries sort by due time.
//
// Writes: every state change of a message is built into a StateBatch (pure,
// no I/O) and handed to Commit(). One committer thread writes the batches and,
// when any of them asked for durability, syncs the WAL once for the whole
// group (group commit); then it runs the callbacks on its own thread.
// WriteUnsynced() is the short path for outcomes: the calling (loop) thread
// writes its batch at once (WAL append, no fsync), and the committer syncs
// the WAL within Options::unsynced_sync_ms of such a write. A kill -9 keeps
// every completed write; a power cut may drop the last interval's unsynced
// writes. While the committer syncs the WAL, loop writes go on (with free
// space above 4 x Options::min_free_bytes) or are refused and handed to the
// committer (closer to full, or min_free_bytes 0): Debian's librocksdb
// aborts the process when a WAL append fails during a sync, so with room on
// the disk an I/O error there ends the process (nothing acknowledged is
// lost: acknowledgements follow syncs) instead of latching unhealthy.
// Disk full: free space below Options::min_free_bytes, or a failed write or
// sync, latches healthy() to false; while
// unhealthy the committer fails new batches at once (Unavailable, naming the
// cause) and retries recovery (DB::Resume, then a memtable flush that moves
// everything written off the damaged WAL) every kRecoveryIntervalMs until it
// succeeds and space is back, so intake resumes on its own.
// Reads (ScanDue, GetContent, GetCounts) may be called from any thread.
#ifndef SALVO_STORAGE_QUEUE_STORE_H_
#define SALVO_STORAGE_QUEUE_STORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/column_families.h"
#include "storage/key_codec.h"
#include "storage/records.pb.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
class WriteBatch;
}  // namespace rocksdb

namespace salvo::storage {

// Per-content counters (merge-add in RocksDB, exact across restarts).
enum class Counter : uint8_t {
  kAccepted = 0,
  kDelivered = 1,
  kBounced = 2,
  kExpired = 3,
  kDeferred = 4,   // gauge: recipients waiting after at least one failure
  kCancelled = 5,
};
inline constexpr int kNumCounters = 6;

struct Counts {
  int64_t accepted = 0;
  int64_t delivered = 0;
  int64_t bounced = 0;
  int64_t expired = 0;
  int64_t deferred = 0;
  int64_t cancelled = 0;
  // Accepted and not final, deferred included.
  int64_t pending() const {
    return accepted - delivered - bounced - expired - cancelled;
  }
};

// Operator control of a campaign: one record, read by every shard.
enum class ContentState : uint8_t {
  kActive = 0,
  kPaused = 1,     // not leased; entries stay queued
  kCancelled = 2,  // entries finish as cancelled when leased
};
const char* ContentStateName(ContentState s);

class QueueStore;

// The index key of a recipient block ('B').
struct BlockKey {
  Lane lane = Lane::kBulk;
  int64_t due_ms = 0;
  uint64_t first_id = 0;
  uint64_t content_id = 0;
  // From the index value.
  int64_t expires_ms = 0;
  uint32_t count = 0;
};

struct QueueEntry {
  QueueKey key;
  Recipient rec;
};

// Most members of one run entry (see the key space above).
inline constexpr int kMaxRunMembers = 256;

// A Recipient read from a queue entry that is a run (its members).
inline bool IsRun(const Recipient& rec) { return rec.members_size() > 0; }

// Builds one atomic write. Pure: no I/O until QueueStore::Commit().
class StateBatch {
 public:
  // What the key of an outcome op names: a queue entry of its own, removed
  // (or moved) by the op, or a member of a run entry (QueueKey shard, lane
  // and due time of the run, id the member's recipient id), which leaves
  // the run's key alone: RemoveRun removes it once every member is done.
  enum class Entry { kOwn, kRunMember };
  StateBatch();
  ~StateBatch();
  StateBatch(StateBatch&&) noexcept;
  StateBatch& operator=(StateBatch&&) noexcept;

  void PutContent(const Content& content);
  // New recipient: queue entry + accepted counter.
  void Enqueue(const QueueKey& key, const Recipient& rec);
  // Final outcomes: delete the queue entry, record the outcome as the
  // recipient's event, count it.
  // `rec` is the entry as leased (rec.deferred says whether it was counted
  // in the deferred gauge).
  void Delivered(const QueueKey& key, const Recipient& rec, const Outcome& o,
                 Entry entry = Entry::kOwn);
  void Bounced(const QueueKey& key, const Recipient& rec, const Outcome& o,
               Entry entry = Entry::kOwn);
  void Expired(const QueueKey& key, const Recipient& rec, const Outcome& o,
               Entry entry = Entry::kOwn);
  void Cancelled(const QueueKey& key, const Recipient& rec, const Outcome& o,
                 Entry entry = Entry::kOwn);
  void SetContentState(uint64_t content_id, ContentState state);
  // Transient failure: move the entry to `new_due` with attempts + 1, the
  // reply and host recorded; enters the deferred gauge on the first deferral.
  // Returns the new key. A run member becomes an entry of its own there.
  QueueKey Defer(const QueueKey& key, const Recipient& rec, int64_t new_due_ms,
                 const Outcome& o, Entry entry = Entry::kOwn);
  // Move without counting an attempt (throttling, shutdown). Returns new key.
  QueueKey Requeue(const QueueKey& key, const Recipient& rec,
                   int64_t new_due_ms, Entry entry = Entry::kOwn);
  // Suppressed just before delivery: a bounce in every count (GetOutcome
  // says BOUNCED), but its event is SUPPRESSED.
  void SuppressedBounce(const QueueKey& key, const Recipient& rec,
                        const Outcome& o, Entry entry = Entry::kOwn);
  // Removes a run entry whose members are all done (their outcomes were
  // written in earlier batches). Counts nothing: each member's outcome did.
  void RemoveRun(const QueueKey& key);
  // Suppressed at accept: never queued nor counted; only a SUPPRESSED event
  // under `recipient_id` (a fresh QueueStore::NextId()).
  void SuppressedAtAccept(uint64_t content_id, uint64_t recipient_id,
                          absl::string_view address, int64_t at_ms,
                          absl::string_view reply);

  // Recipient blocks (see the key space above). A new block: index, payload,
  // the packed ACCEPTED events and the accepted counter (+ recs.size()).
  // recs hold address and fields; ids are first_id.. (QueueStore::NextIds).
  void PutBlock(Lane lane, int64_t due_ms, uint64_t content_id,
                uint64_t first_id, int64_t accepted_ms, int64_t expires_ms,
                const std::vector<const Recipient*>& recs);
  // Block -> run entries: its recipients grouped by shard (by domain), in
  // upload order, at most kMaxRunMembers a run, each run under a fresh id
  // (QueueStore::NextIds) and store.epoch(); the depth counts every member;
  // block removed. `payload` is the block's stored RecipientBlock
  // (QueueStore::GetBlockPayload), copied recipient by recipient without
  // being parsed into messages. Sets shard_used[shard] for every shard
  // written. DataLoss (and nothing added) if it does not parse or does not
  // hold key.count recipients.
  [[nodiscard]] absl::Status ExpandBlock(const BlockKey& key,
                                         absl::string_view payload,
                                         QueueStore& store,
                                         std::vector<bool>* shard_used);
  // Block of a cancelled content: every recipient final as cancelled
  // (CANCELLED event, counter); block removed.
  void CancelBlock(const BlockKey& key, const RecipientBlock& block,
                   int64_t at_ms);
  // Reschedule: the index moves to new_due_ms with a new expiry (the payload
  // stays). Returns the new key.
  BlockKey MoveBlock(const BlockKey& key, int64_t new_due_ms,
                     int64_t new_expires_ms);

  // Every op above writes its recipient event ('E') into this batch. With
  // collection on (the JSON-lines log is enabled), a copy of each is also
  // kept for TakeEvents(), to hand to the log after the commit succeeded.
  struct BatchEvent {
    uint64_t content_id = 0;
    uint64_t recipient_id = 0;
    Event event;
    // Set for a block's packed ACCEPTED events: a serialized RecipientBlock
    // without fields (ids recipient_id.. in order); `event` holds state and
    // time only.
    std::shared_ptr<const std::string> packed;
  };
  void set_collect_events(bool on) { collect_events_ = on; }
  std::vector<BatchEvent> TakeEvents() { return std::move(events_); }

  size_t size() const { return ops_; }
  bool empty() const { return ops_ == 0; }
  // Empties the batch for reuse (keeps its buffers).
  void Clear();
  // Emits the counter merges; called by QueueStore::Commit.
  rocksdb::WriteBatch* Finish();

 private:
  void Count(uint64_t content_id, Counter c, int64_t delta);
  // Queue depth of (shard, lane): +1 on Enqueue, -1 on a final state;
  // Defer/Requeue keep the lane and so the count.
  void CountDepth(const QueueKey& key, int64_t delta);
  // Delete the entry (unless a run member), record the outcome's event,
  // count the final state.
  void Final(const QueueKey& key, const Recipient& rec, const Outcome& o,
             Counter counter, Event::State event, Entry entry);
  // Writes the 'E' record of an outcome-bearing op.
  void PutOutcomeEvent(const QueueKey& key, const Recipient& rec,
                       const Outcome& o, Event::State state);
  void PutEvent(uint64_t content_id, uint64_t recipient_id,
                const Event& event);
  std::string event_value_;  // serialization scratch, reused
  bool collect_events_ = false;
  std::vector<BatchEvent> events_;
  std::unique_ptr<rocksdb::WriteBatch> batch_;
  absl::flat_hash_map<std::pair<uint64_t, uint8_t>, int64_t> deltas_;
  absl::flat_hash_map<uint32_t, int64_t> depth_deltas_;  // shard << 8 | lane
  // Depth deltas (shard, delta) and counter deltas ((content, counter),
  // delta) that Finish() put in the batch, for the store's in-memory
  // mirrors once the write succeeded (QueueStore).
  std::vector<std::pair<uint16_t, int64_t>> finished_depth_;
  std::vector<std::pair<std::pair<uint64_t, uint8_t>, int64_t>>
      finished_counts_;
  int64_t finished_deferred_ = 0;  // sum of the kDeferred deltas
  size_t ops_ = 0;
  friend class QueueStore;
};

class QueueStore {
 public:
  struct Options {
    std::string path;
    int num_shards = 64;
    // false: never fsync (benchmarks of the non-durable case only).
    bool sync = true;
    // Memory bound: the block cache holds data, index and filter blocks and
    // is also charged for the memtables (a WriteBufferManager), so RocksDB's
    // resident memory stays near block_cache_bytes whatever the queue size.
    size_t block_cache_bytes = 128 << 20;
    // Memtable size (at most 3 of them, all together at most
    // memtable_budget_bytes). After a disk-full error RocksDB resumes writes
    // only once this much space is free again (its SstFileManager polls
    // every 5 s).
    size_t write_buffer_bytes = 32 << 20;
    size_t memtable_budget_bytes = 64 << 20;
    // Shed writes (healthy() false, Unavailable "disk full") while the file
    // system under `path` has less free space than this, checked at most
    // every kRecoveryIntervalMs; 0 disables. Keeps ENOSPC away from RocksDB
    // (see queue_store.cc: a WAL append that fails right after a memtable
    // switch leaves RocksDB 7.8 unable to write again without a reopen).
    uint64_t min_free_bytes = 256ull << 20;
    // Writes not asked to be durable (WriteUnsynced, Commit(durable=false))
    // reach the disk (WAL fsync) at most this long after they were written.
    // 0: only when a durable commit syncs anyway. Ignored when !sync.
    int unsynced_sync_ms = 50;
    // Test hook: the Env (file system) under the store, e.g. a
    // PowerLossFileSystem (storage/fault_env.h). nullptr: the default Env.
    // Must outlive the store.
    rocksdb::Env* env = nullptr;
    // Recipient events ('E') older than this, counted from the recipient
    // id's accept time, are dropped by compaction. 0: kept forever.
    int64_t event_retention_ms = 0;
    // WAL bound: past it RocksDB flushes the column families that pin the
    // oldest WAL file (a quiet `blocks` family would otherwise keep every
    // WAL alive). 0: max(4 x write_buffer_bytes, 64 MiB).
    uint64_t max_total_wal_bytes = 0;
    // Upgrade of a store written before column families: keys moved per
    // batch. Test hook: upgrade_max_batches >= 0 stops the upgrade after
    // that many batches and fails Open (Aborted), as a crash would.
    int upgrade_batch_keys = 4096;
    int upgrade_max_batches = -1;
    // Contents whose counters GetCounts keeps in memory (the most recently
    // loaded; a content read again after eviction is loaded again).
    size_t counts_mirror_contents = 4096;
  };

  // How often an unhealthy store retries recovery.
  static constexpr int kRecoveryIntervalMs = 100;

  static absl::StatusOr<std::unique_ptr<QueueStore>> Open(const Options& o);
  ~QueueStore();  // Drains pending commits, stops the committer, closes.

  int num_shards() const { return num_shards_; }
  // Stable across processes and versions (not absl::Hash).
  uint16_t ShardForDomain(absl::string_view domain) const;
  // Unique across restarts: (ms since epoch << 20) + counter. Any thread.
  uint64_t NextId();
  // This Open's number: one more than the last Open's (stored, synced,
  // before Open returns). Runs carry the epoch that wrote them; a run of an
  // earlier epoch may hold members whose outcome is already written.
  uint64_t epoch() const { return epoch_; }
  // For each of `ids` (recipients of content_id), whether any recipient
  // event ('E') is stored for it: a run member that has one was done (its
  // outcome written: delivered, bounced, deferred into an entry of its
  // own...) before its run was leased again. (*has)[i] answers ids[i].
  [[nodiscard]] absl::Status MembersWithEvents(uint64_t content_id,
                                               const std::vector<uint64_t>& ids,
                                               std::vector<bool>* has);
  // n consecutive ids (the first is returned), as n NextId() calls.
  uint64_t NextIds(uint32_t n);

  // Recipient blocks. Index keys of `lane` (lane 0 included, though only
  // bulk lanes get blocks) with due_ms <= max_due_ms, in key order strictly
  // after *cursor (empty: from the start), at most `max`; *cursor advances.
  [[nodiscard]] absl::Status ScanBlocks(Lane lane, int64_t max_due_ms,
                                        size_t max, std::string* cursor,
                                        std::vector<BlockKey>* out);
  // Every block of one content, any lane and due time (cancel, reschedule,
  // tests). Walks the whole index (small: one key per block).
  [[nodiscard]] absl::Status ContentBlocks(uint64_t content_id,
                                           std::vector<BlockKey>* out);
  // The payload of a block; NotFound when it is gone.
  absl::StatusOr<RecipientBlock> GetBlock(const BlockKey& key);
  // The block's payload as stored (a serialized RecipientBlock); NotFound
  // once it was expanded or cancelled.
  [[nodiscard]] absl::Status GetBlockPayload(const BlockKey& key,
                                             std::string* payload);
  // Recipients in blocks (sum of counts) over the whole index. For tools.
  absl::StatusOr<int64_t> BlockedRecipients();
  // Queue entries over every shard and lane, from the in-memory mirror of
  // the 'D' counters (see QueueDepth). O(1), any thread.
  absl::StatusOr<int64_t> TotalDepth();
  // Queue entries waiting for a retry after a deferral (the sum of every
  // content's deferred gauge), from memory like TotalDepth; stored merged
  // under one meta key. The expander leaves them out of its window: they
  // are due later, and a destination that defers everything would
  // otherwise fill the window and stop the expansion of the others.
  int64_t DeferredTotal() const;

  // Any thread. `done` runs on the committer thread after the batch is
  // written, and after the WAL is synced when `durable` (and Options::sync).
  void Commit(StateBatch batch, bool durable,
              std::function<void(absl::Status)> done);
  // Any thread; meant for loop threads. Writes `batch` now, without fsync
  // (see unsynced_sync_ms) and without ever waiting: while the store is
  // unhealthy, syncing or recovering, or when RocksDB would stall the write,
  // returns Unavailable and leaves `batch` as it was, to be handed to
  // Commit(). A failed write latches healthy() false as in Commit().
  [[nodiscard]] absl::Status WriteUnsynced(StateBatch& batch);
  // Any thread. `done` runs on the committer thread once a WAL sync that
  // started after this call has succeeded (one fsync for every caller
  // waiting and for the group's durable commits): it makes durable every
  // WriteUnsynced that returned before the call. While the store is
  // unhealthy `done` gets Unavailable. Without Options::sync, ok at once
  // (on the committer thread). The durable ingest path is WriteUnsynced
  // from the loop (memtable inserts run on the loops, in parallel) and then
  // SyncThen; Commit(durable) when WriteUnsynced refuses.
  void SyncThen(std::function<void(absl::Status)> done);
  // Writes through WriteUnsynced since Open (for tests and metrics).
  int64_t unsynced_writes() const;
  // WriteUnsynced calls refused with Unavailable while the store was
  // healthy (a sync or recovery held the store, or a write would stall).
  int64_t unsynced_refused() const;
  // Blocking convenience for tools and tests. Not from a commit callback
  // (FailedPrecondition): use Commit() there.
  [[nodiscard]] absl::Status CommitNow(StateBatch batch, bool durable);

  // Entries of (shard, lane) with due_ms <= now_ms, strictly after *cursor
  // (empty: from the start), at most `max` entries and, once they hold
  // `max_recipients` recipients (a run counts its members), no more
  // (a run may overshoot it). Replaces the contents of *out (its elements
  // are reused) and advances *cursor to the last key returned. When the
  // scan ended before both limits and `next_due_ms` is given, it is set to
  // the due time of the first entry after them that is not due yet, or -1
  // when the lane holds nothing more after the cursor. *limited (if given)
  // tells whether a limit ended the scan (more may be due).
  [[nodiscard]] absl::Status ScanDue(uint16_t shard, Lane lane, int64_t now_ms,
                                     size_t max, std::string* cursor,
                                     std::vector<QueueEntry>* out,
                                     int64_t* next_due_ms = nullptr,
                                     size_t max_recipients = SIZE_MAX,
                                     bool* limited = nullptr);
  // Due time of the first entry of (shard, lane) after *cursor, if any.
  absl::StatusOr<std::optional<int64_t>> NextDue(uint16_t shard, Lane lane,
                                                 const std::string& cursor);

  absl::StatusOr<Content> GetContent(uint64_t content_id);
  // Exact counters of a content. The first read merges the stored counters
  // (every operand since the last flush); later reads come from memory,
  // which every successful write advances (see CountsMirror).
  absl::StatusOr<Counts> GetCounts(uint64_t content_id);
  // The same read from the stored counters, bypassing memory: what the
  // mirror must equal. For tests and tools.
  absl::StatusOr<Counts> StoredCounts(uint64_t content_id);
  // Contents GetCounts has loaded into memory since Open (for tests).
  int64_t counts_loads() const {
    return counts_.loads.load(std::memory_order_relaxed);
  }
  // kActive when no state was ever set.
  absl::StatusOr<ContentState> GetContentState(uint64_t content_id);
  // A recipient's latest outcome: its last event other than ACCEPTED
  // (SUPPRESSED reads as BOUNCED), or a legacy 'O' record when it has no
  // event; none while it is only accepted, or once retention dropped its
  // events.
  absl::StatusOr<std::optional<Outcome>> GetOutcome(uint64_t content_id,
                                                    uint64_t id);
  // Recipient events of `content_id` (only of `recipient_id` when it is not
  // 0) in key order, strictly after the event key `after` (empty: from the
  // start). Appends to *out those `keep` accepts (null: all) until it holds
  // `max`; examines at most `max_examined` keys. *last is the last key
  // examined (the cursor of the next page); *more tells whether any key of
  // the range may follow it.
  struct EventEntry {
    uint64_t content_id = 0;
    uint64_t recipient_id = 0;
    uint32_t seq = 0;
    Event event;
  };
  [[nodiscard]] absl::Status ScanEvents(
      uint64_t content_id, uint64_t recipient_id, absl::string_view after,
      size_t max, size_t max_examined,
      const std::function<bool(const EventEntry&)>& keep,
      std::vector<EventEntry>* out, std::string* last, bool* more);

  // Recipients in the queue entries of a shard (all lanes; a run counts its
  // members, done or not); O(entries). For tools.
  absl::StatusOr<int64_t> CountQueued(uint16_t shard);
  // Exact number of queue entries in a shard (all lanes): the 'D' counters
  // kept in every state batch, mirrored in memory (read at Open, then
  // advanced by every successful write). O(1), any thread.
  absl::StatusOr<int64_t> QueueDepth(uint16_t shard);
  // The same read from the stored 'D' counters (merging their operands):
  // what the mirror must equal. For tests and tools.
  absl::StatusOr<int64_t> StoredQueueDepth(uint16_t shard);

  // Group-commit figures since Open: WAL syncs done and batches committed.
  int64_t syncs() const;
  int64_t commits() const;

  // RocksDB's memory, in bytes (any thread; -1 where RocksDB cannot say).
  // block_cache is the shared cache's usage, which includes what the
  // memtables reserve in it (Options::memtable_budget_bytes counts
  // against block_cache_bytes); memtables and table_readers (index and
  // filter blocks outside the cache) are summed over the families.
  struct MemoryUsage {
    int64_t block_cache = -1;
    int64_t memtables = -1;
    int64_t table_readers = -1;
  };
  MemoryUsage Memory() const;

  // Latched: false from the first failed write or WAL sync until recovery
  // succeeds. Cheap (one atomic load); any thread. Ingress sheds load on it.
  bool healthy() const;
  // Successful recoveries since Open.
  int64_t recoveries() const;

  rocksdb::DB* db() { return db_.get(); }
  // The DB's handle of a column family (tools and tests: raw reads,
  // compaction). Valid while the store lives.
  rocksdb::ColumnFamilyHandle* family(KeyFamily f) const {
    return families_[static_cast<uint32_t>(f)];
  }

 private:
  QueueStore() = default;
  rocksdb::ColumnFamilyHandle* HandleFor(char prefix) const {
    return family(FamilyOfPrefix(prefix));
  }
  struct Committer;
  int num_shards_ = 0;
  uint64_t epoch_ = 0;
  std::atomic<uint64_t> last_id_{0};
  std::unique_ptr<rocksdb::DB> db_;
  // Owned (destroyed before the DB closes), indexed by KeyFamily.
  rocksdb::ColumnFamilyHandle* families_[kNumKeyFamilies] = {};
  // In-memory mirror of the 'D' counters: per shard, and their sum. Reading
  // the counters themselves merges every operand written since the last
  // flush -- at 10M queued the expander's 10 reads/s cost ~7 us of CPU per
  // delivered message (bench/scale_bench.py, perf).
  struct DepthMirror {
    std::unique_ptr<std::atomic<int64_t>[]> shard;
    std::atomic<int64_t> total{0};
    std::atomic<int64_t> deferred{0};  // DeferredTotal
    // Adds the batch's finished deltas (after its write succeeded).
    void Apply(StateBatch& batch);
  };
  DepthMirror depth_;
  // In-memory copies of the 'N' counters of contents GetCounts has read:
  // polling a campaign's progress otherwise merges every counter operand
  // written since the last flush of `default` -- at 10M queued the scale
  // bench's 10 polls/s cost 4% of all CPU (perf). Writers hold `writes`
  // shared from their DB write until they have applied the batch; a load
  // holds it exclusively from its DB read until its insert, so every write
  // is either in what a load read or applied to the loaded entry. A load
  // only tries the lock: while a write is under way the read is answered
  // from storage and not kept (a reader never waits behind a write stall).
  struct CountsMirror {
    using Values = std::array<int64_t, kNumCounters>;
    absl::Mutex writes;
    absl::Mutex mu;
    absl::flat_hash_map<uint64_t, Values> values ABSL_GUARDED_BY(mu);
    std::atomic<bool> any{false};  // values is not empty: writers look up
    std::atomic<int64_t> loads{0};
    size_t max_contents = 4096;
    bool Find(uint64_t content_id, Values* out);
    void Insert(uint64_t content_id, const Values& v);
    // Adds the batch's finished counter deltas (after its write
    // succeeded, `writes` held shared).
    void Apply(StateBatch& batch);
  };
  CountsMirror counts_;
  // The stored counters of a content (merging their operands).
  [[nodiscard]] absl::Status ReadCounterValues(uint64_t content_id,
                                               CountsMirror::Values* values);
  std::unique_ptr<Committer> committer_;
};

}  // namespace salvo::storage

#endif  // SALVO_STORAGE_QUEUE_STORE_H_
