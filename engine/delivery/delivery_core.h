// The delivery side of one loop: leases due recipients from the shards this
// loop owns, groups them into per-destination ready queues, resolves MX,
// hands work to per-endpoint connection pools, and records each outcome.
//
// In:  queue entries from storage (ScanDue), Wake() after new submissions.
// Out: SMTP transactions; StateBatch writes (delivered, deferred, bounced,
//      expired, requeued), metrics.
// Loop thread only, except that it is created and destroyed by its owner.
//
// A leased recipient stays in RocksDB under its key until its outcome is
// committed; leased_ keeps the ids in memory so a rescan never leases one
// twice. Whatever is in memory when the process dies is simply leased again
// after a restart (at-least-once).
//
// Run entries (uploaded campaigns; storage/queue_store.h) are leased whole:
// each member becomes a job, its outcome is written without touching the
// run's key, and once every member's outcome is committed the run is
// removed in a later batch. A run read again after a restart (an earlier
// store epoch), or after members left memory without an outcome (a failed
// write, a pause, shutdown), first drops the members that have a stored
// event: their outcome was written (salvo_delivery_run_members_skipped_total).
//
// Memory: at most max_in_flight recipients are leased per loop (ready
// queues, sessions, outcomes not yet finished), whatever the queue holds. At
// the bound the bulk lanes and cancel sweeps are not read until in flight
// falls to resume_fraction of it; transactional lanes lease from
// transactional_reserve above the bound. Gauges: salvo_in_flight,
// salvo_delivery_ready_entries, salvo_delivery_in_flight_peak.
//
// Durability contract:
// - Accept: the API answers 201 only after the submission's WAL is fsynced.
// - Outcomes: written to RocksDB (WAL append, no fsync) from this loop's
//   thread at the end of the loop iteration that saw the reply
//   (QueueStore::WriteUnsynced), and fsynced by the committer within
//   spool.outcome_sync_interval. When the store is busy (sync, recovery,
//   write stall) they go through the committer instead.
// Full destinations: when a destination already holds max_ready_per_domain
// of a bulk lane, the scan of that (shard, lane) stops ON the entry (the
// cursor does not pass it) and the lane is blocked by the destination until
// it drains to half; nothing is written. A destination full for longer than
// full_destination_requeue_after (slow, throttled, down) no longer blocks:
// its entries are requeued throttle_requeue later and the lane moves on.
// The transactional lane never blocks (a full destination's entries there
// are requeued at once).
//
// - A crash can duplicate, never lose: kill -9 keeps every written outcome,
//   so it re-sends only what the peer accepted after the last iteration's
//   write (replies not yet read or not yet written); a power cut also
//   re-sends the last interval's outcomes. A lost Defer/Requeue move leaves
//   the entry at its old key (retried sooner), never lost.
#ifndef SALVO_ENGINE_DELIVERY_DELIVERY_CORE_H_
#define SALVO_ENGINE_DELIVERY_DELIVERY_CORE_H_

#include <array>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/classify/blast_radius.h"
#include "engine/delivery/content_cache.h"
#include "engine/dkim/dkim_signer.h"
#include "engine/dns/mx_resolver.h"
#include "engine/events/event_log.h"
#include "engine/hygiene/list_unsubscribe.h"
#include "engine/metrics/registry.h"
#include "engine/pool/connection_pool.h"
#include "engine/smtp/tls_engine.h"
#include "engine/sched/retry_schedule.h"
#include "storage/queue_store.h"
#include "storage/reschedule.h"
#include "storage/suppression_store.h"

namespace salvo::delivery {

class DeliveryCore : public pool::PoolDelegate {
 public:
  struct Options {
    std::vector<uint16_t> shards;  // the shards this loop owns
    // Loop-wide bound on recipients leased into memory (ready queues,
    // sessions, outcomes not yet committed). At the bound the bulk lanes are
    // not read at all until in flight falls to resume_fraction of it; the
    // transactional lanes may lease transactional_reserve more on top.
    int max_in_flight = 20000;
    double resume_fraction = 0.75;
    int transactional_reserve = 1000;
    // Ready in memory per destination and lane (transactional, and each
    // bulk class), so one tenant's campaign cannot fill another's room.
    int max_ready_per_domain = 5000;
    // Deficit round robin quantum (recipients) of a bulk class's turn at
    // the lease budget of a shard.
    int bulk_quantum = 128;
    std::string hostname = "localhost";  // Message-ID right-hand side
    pool::ConnectionPool::Options pool;
    sched::RetrySchedule::Options retry;
    dns::MxResolver::Options dns;
    absl::Duration scan_interval = absl::Milliseconds(100);
    absl::Duration throttle_requeue = absl::Seconds(5);
    // How long a full destination may block a bulk scan lane.
    absl::Duration full_destination_requeue_after = absl::Seconds(2);
    absl::Duration shutdown_grace = absl::Seconds(10);
    // A 421 takes its MX out of use this long (the next MX is tried).
    absl::Duration down_after_421 = absl::Seconds(10);
    // Session-level failures (421, dropped connection, timeout) a recipient
    // may meet in one lease before it is deferred.
    int max_session_failures = 2;
    // Recipients sharing one transaction when the content is identical.
    int max_recipients_per_transaction = 50;
    // DKIM signers by sending domain, shared by every loop (may be null).
    std::shared_ptr<const dkim::DkimSigners> dkim;
    // STARTTLS policy: the default, and per destination domain.
    smtp::TlsPolicy tls_policy = smtp::TlsPolicy::kOpportunistic;
    absl::flat_hash_map<std::string, smtp::TlsPolicy> tls_domain_policy;
    absl::Duration tls_fallback_ttl = absl::Hours(1);
    // This loop's TLS client context ([tls] ca_file, session cache); null:
    // the loop thread's default (system CA store).
    std::shared_ptr<smtp::TlsClientContext> tls_context;
    // List-Unsubscribe for campaign mail, VERP return paths.
    hygiene::HygieneOptions hygiene;
    // Checked just before each delivery (may be null; not owned).
    const storage::SuppressionStore* suppressions = nullptr;
    // Gets each committed outcome's recipient event (may be null; not owned).
    events::EventLog* event_log = nullptr;
  };

  DeliveryCore(core::Loop& loop, const Options& options,
               storage::QueueStore* store, ContentCache* contents,
               InFlightTable* in_flight, metrics::Registry* metrics,
               const core::Clock& clock, uint64_t seed);
  ~DeliveryCore() override;

  void Start();
  // New entries in (shard, lane) due at `due_ms` or later.
  // `after_id`: every new entry's id is above it (0: unknown), so the scan
  // steps back only to (due_ms, after_id), not over all of due_ms.
  void Wake(uint16_t shard, storage::Lane lane, int64_t due_ms,
            uint64_t after_id = 0);
  // Scans every owned shard from its start again (a campaign resumed: its
  // entries were skipped while paused).
  void Rewind();
  // A campaign was cancelled: every entry of it in this loop's shards that
  // is not in flight finishes as cancelled now, whatever its due time.
  void SweepCancelled(uint64_t content_id);
  // Moves every queued entry of the content in this loop's shards that is
  // not in flight to r.due_ms with its new expiry: one durable StateBatch of
  // Requeues per chunk, committed per (shard, lane) after that range was
  // scanned (so a moved entry is never met twice). The moved ids stay in
  // leased_ until their chunk is committed, so no scan leases an old key.
  // `done` runs on this loop once every chunk committed: the number moved,
  // or the first commit error (entries of failed chunks stay where they
  // were).
  void Reschedule(uint64_t content_id, const storage::Reschedule& r,
                  std::function<void(absl::StatusOr<int64_t>)> done);
  // Stops leasing, lets transactions in flight finish (up to
  // shutdown_grace), commits their outcomes, closes every handle, then
  // calls `done`.
  void Shutdown(std::function<void()> done);

  int in_flight() const { return in_flight_; }
  // Most recipients this loop ever held leased at once.
  int in_flight_peak() const { return in_flight_peak_; }

  // PoolDelegate.
  bool TakeWork(pool::ConnectionPool& pool, pool::PoolWork* work) override;
  int Waiting(const pool::ConnectionPool& pool) override;
  // Transactional jobs only (the pool's reserved session).
  bool TakePriorityWork(pool::ConnectionPool& pool,
                        pool::PoolWork* work) override;
  int PriorityWaiting(const pool::ConnectionPool& pool) override;
  void OnEndpointDown(pool::ConnectionPool& pool,
                      const smtp::Reply& why) override;

 private:
  // A leased run entry: its key stays stored until every member is done.
  struct Run {
    storage::QueueKey key;
    uint64_t content_id = 0;
    int open = 0;       // members leased and not yet committed or released
    bool keep = false;  // a member left without an outcome: not removed
  };
  struct Job {
    // A run member's key has the run's shard, lane and due time and the
    // member's recipient id.
    storage::QueueKey key;
    storage::Recipient rec;
    int session_failures = 0;  // this lease: 421s / dropped sessions
    bool suppressed = false;   // bounced because the tenant suppressed it
    Run* run = nullptr;        // the run it was leased in (null: own entry)
    storage::StateBatch::Entry entry() const {
      return run != nullptr ? storage::StateBatch::Entry::kRunMember
                            : storage::StateBatch::Entry::kOwn;
    }
  };
  struct Destination;
  struct PoolState {
    std::unique_ptr<pool::ConnectionPool> pool;
    std::deque<Destination*> wanting;  // destinations with work, round robin
  };
  enum class Final {
    kDelivered,
    kBounced,
    kExpired,
    kDeferred,
    kRequeued,
    kCancelled
  };
  struct Pending {  // an outcome in the batch being committed
    uint64_t id;
    uint64_t content_id;
    uint16_t shard;
    storage::Lane lane;
    int64_t new_due_ms;  // for kDeferred / kRequeued, else -1
    Run* run = nullptr;  // a run member's run, or the run being removed
    bool run_removal = false;  // not an outcome: the removal of `run`
  };

  struct RescheduleJob;
  // `ids`: the entries moved (leased while the chunk was committed);
  // `recipients`: the recipients they hold (a run counts its members).
  void OnRescheduleCommitted(const std::shared_ptr<RescheduleJob>& job,
                             const std::vector<uint64_t>& ids,
                             int64_t recipients, uint16_t shard,
                             storage::Lane lane, const absl::Status& s);

  void Scan();
  // Leases up to `max` due entries of (owned shard i, lane); returns how
  // many were read. Marks the lane idle when it ran dry.
  int ScanLane(size_t i, storage::Lane lane, size_t max, int64_t now,
               std::vector<Destination*>* touched);
  // Hands the lease budget to the bulk classes of shard i by deficit round
  // robin (Options::bulk_quantum recipients per turn).
  void ScanBulkFair(size_t i, int64_t now, std::vector<Destination*>* touched);
  void ScheduleScan(uint64_t delay_ms);
  // Returns the entry's destination when it is full and blocks the lane
  // (the entry was not taken: the scan of its lane stops before it), else
  // null.
  Destination* Admit(storage::QueueEntry&& entry, int64_t now_ms,
                     std::vector<Destination*>* touched);
  // False when the entry is leased already (counted as skipped) or its
  // campaign is paused; *cancelled tells whether it was cancelled.
  bool MayLease(const storage::QueueEntry& entry, bool* cancelled);
  // Admit for a run entry: blocked while any member's destination is full
  // (within full_destination_requeue_after); taken whole otherwise.
  Destination* AdmitRun(storage::QueueEntry&& entry, int64_t now_ms,
                        std::vector<Destination*>* touched);
  // Leases a run entry: null when it is leased already or unreadable.
  // Clears *members and fills it with the jobs of the members not yet done
  // (see the header comment); each is counted in flight. When none is
  // left the run is removed at once (and null returned).
  Run* LeaseRun(storage::QueueEntry& entry, std::vector<Job>* members);
  // A member's outcome was committed (written) or it left memory without
  // one; the last of the run's members removes the run (or, if any left
  // without an outcome, releases it to be read again).
  void MemberDone(Run* run, bool written);
  // Queues the removal of a run whose members are all done.
  void RemoveRun(Run* run);
  // A leased job leaves memory without an outcome: it stays stored as it
  // is (its own entry, or its run's member).
  void Release(const Job& job);
  // True while lane l of owned shard i waits for a full destination.
  // True when every entry of scan_entries_ (lane l) goes to a destination
  // that is full in that lane and none has expired: leasing on would only
  // requeue them.
  bool OnlyFullDestinations(int l, int64_t now_ms);
  // Sets *cursor so that the next ScanDue starts at `key`.
  static void CursorBefore(const storage::QueueKey& key, std::string* cursor);
  bool LaneBlocked(size_t i, int l, int64_t now_ms);
  // Called after work left d: lanes d filled that drained to half are no
  // longer full, and the scan lanes they blocked read on.
  void ReleaseFull(Destination* d);
  Destination* GetDestination(absl::string_view domain);
  void Kick(Destination* d);
  void OnMx(Destination* d, const dns::MxResult& r);
  PoolState* ChoosePool(Destination* d);
  static int WaitingFor(const PoolState& ps);
  void FailAll(Destination* d, const smtp::Reply& reply,
               const std::string& host);
  bool BuildWork(Destination* d, Job job, const std::string& host,
                 pool::PoolWork* work);
  // True (and the job finished as bounced) when the tenant suppressed it.
  bool Suppressed(Destination* d, const CachedContent& c, Job& job);
  void OnResult(uint64_t job_id, PoolState* ps, const std::string& host,
                const classify::Verdict& verdict, const smtp::TlsInfo& tls);
  void Finish(Destination* d, Job&& job, const smtp::Reply& reply,
              const std::string& host, const smtp::TlsInfo* tls = nullptr);
  void Record(Destination* d, Job&& job, Final kind,
              const storage::Outcome& o, int64_t new_due_ms);
  // Writes batch_ now (WriteUnsynced); its bookkeeping runs at the end of
  // the iteration. Falls back to the committer when the store is busy.
  void Flush();
  // Loop iteration end (uv_check_t): flush, then finish what was written.
  void OnIterationEnd();
  void OnCommitted(const std::vector<Pending>& done, const absl::Status& s,
                   std::vector<storage::StateBatch::BatchEvent> events);
  // Hands committed events to options_.event_log, grouped by tenant.
  void LogEvents(std::vector<storage::StateBatch::BatchEvent> events);
  void MaybeFinishShutdown();
  struct SweepJob;
  void SweepStep(const std::shared_ptr<SweepJob>& job);
  // Sweeps wait at max_in_flight like bulk lanes (a cancel of millions
  // leased them all while the committer lagged); run again from here.
  std::vector<std::shared_ptr<SweepJob>> held_sweeps_;
  void ResumeSweeps();
  void RescheduleStep(const std::shared_ptr<RescheduleJob>& job);

  core::Loop& loop_;
  const Options options_;
  storage::QueueStore* const store_;
  ContentCache* const contents_;
  InFlightTable* const in_flight_table_;
  const core::Clock& clock_;
  sched::RetrySchedule retry_;
  smtp::TlsFallbackMemory tls_fallback_;
  std::unique_ptr<dns::MxResolver> resolver_;

  // Cursor per (owned shard index, lane).
  std::vector<std::array<std::string, storage::kNumLanes>> cursors_;
  // Per owned shard: lanes known to have nothing due (until a Wake or the
  // tick), and the deficit round robin state of its bulk classes.
  struct LaneState {
    std::array<bool, storage::kNumLanes> idle{};
    // An idle lane is read again at a Wake, or by the tick once this time
    // has come: the due time of its first entry not due at the last read
    // (kNever: it held nothing more). Polling empty lanes every tick costs
    // a RocksDB seek (and block reads) each.
    std::array<int64_t, storage::kNumLanes> idle_until{};
    std::array<int, storage::kBulkClasses> deficit{};
    int next_bulk = 0;
    // The full destination the lane's cursor stopped at (null: none).
    std::array<Destination*, storage::kNumLanes> blocked_by{};
  };
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  std::vector<LaneState> lanes_;
  int64_t next_full_rescan_ms_ = 0;  // every lane read again (safety net)
  std::vector<storage::QueueEntry> scan_entries_;  // reused by ScanLane
  int64_t wake_at_ms_ = 0;  // when wake_timer_ fires, if armed
  size_t scan_requeued_ = 0;  // requeued by Admit during one ScanLane
  absl::flat_hash_map<uint16_t, size_t> shard_index_;
  absl::flat_hash_set<uint64_t> leased_;
  // Leased run entries by run id (Job::run points into them).
  absl::flat_hash_map<uint64_t, std::unique_ptr<Run>> runs_;
  // Runs released with members not done: read their members' events again
  // when leased (like a run of an earlier epoch).
  absl::flat_hash_set<uint64_t> recheck_runs_;
  std::vector<uint64_t> member_ids_;  // reused by LeaseRun
  std::vector<bool> member_done_;     // reused by LeaseRun
  std::vector<Job> run_jobs_;         // reused by AdmitRun and SweepStep
  int in_flight_ = 0;
  int in_flight_peak_ = 0;
  bool scan_starved_ = false;  // the last scan stopped at the budget
  // The bulk lanes reached max_in_flight and are not read until in flight
  // falls to resume_fraction of it (no scan per finished recipient).
  bool bulk_held_ = false;
  // Counts a lease (in_flight_ and its peak).
  void NoteLeased() {
    if (++in_flight_ > in_flight_peak_) in_flight_peak_ = in_flight_;
  }
  // In flight at or below which held bulk lanes are read again.
  int ResumeAt() const;
  // Recipients in the destinations' ready queues, for the gauge.
  int64_t ReadyEntries() const;

  absl::flat_hash_map<std::string, std::unique_ptr<Destination>> dests_;
  absl::flat_hash_map<std::string, std::unique_ptr<PoolState>> pools_;
  absl::flat_hash_map<const pool::ConnectionPool*, PoolState*> pool_states_;
  absl::flat_hash_map<uint64_t, std::pair<Destination*, Job>> active_;

  storage::StateBatch batch_;
  std::vector<Pending> batch_items_;
  int commits_outstanding_ = 0;
  struct IterationEnd;             // uv_check_t owner, freed on close
  IterationEnd* iteration_end_;
  std::vector<Pending> written_;   // written by Flush, not yet finished
  // Events of written_, logged by OnIterationEnd.
  std::vector<storage::StateBatch::BatchEvent> written_events_;
  std::vector<Pending> finishing_items_;  // reused by OnIterationEnd
  bool in_iteration_end_ = false;

  core::Timer tick_timer_;
  core::Timer wake_timer_;
  core::Timer flush_timer_;
  core::Timer grace_timer_;
  std::string dkim_buf_;
  std::string unsubscribe_buf_;
  std::vector<render::MergeField> fields_scratch_;

  bool shutting_down_ = false;
  bool finishing_ = false;
  int pools_draining_ = 0;
  std::function<void()> shutdown_done_;

  metrics::Registry* const metrics_;
  metrics::Gauge* in_flight_gauge_;
  metrics::Gauge* in_flight_peak_gauge_;
  // salvo_smtp_sessions_total by tls: none, full, resumed.
  std::vector<metrics::Counter*> sessions_by_tls_;
  metrics::Gauge* ready_gauge_;
  metrics::Gauge* connections_gauge_;
  metrics::Histogram* latency_;
  // Scan cost, per loop: ScanDue calls, entries read, entries read that
  // this loop already held, lanes blocked by a full destination.
  metrics::Counter* scan_calls_;
  metrics::Counter* scan_read_;
  metrics::Counter* scan_skipped_;
  metrics::Counter* scan_blocks_;
  metrics::Counter* run_members_skipped_;
};

}  // namespace salvo::delivery

#endif  // SALVO_ENGINE_DELIVERY_DELIVERY_CORE_H_
