// Per-loop delivery (see delivery_core.h).
#include "engine/delivery/delivery_core.h"

#include <arpa/inet.h>

#include <algorithm>
#include <limits>
#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/hygiene/verp.h"
#include "engine/metrics/metric_names.h"
#include "storage/key_codec.h"

namespace salvo::delivery {

struct DeliveryCore::IterationEnd {
  uv_check_t check;
  DeliveryCore* core = nullptr;
};

namespace {

constexpr size_t kScanBatch = 512;
constexpr size_t kFlushAt = 256;
// Every lane is read again this often even if nothing announced entries.
constexpr int64_t kFullRescanMs = 5000;

const char* const kResultNames[] = {"delivered", "bounced",  "expired",
                                    "deferred",  "requeued", "cancelled"};
constexpr int kNumResults = 6;

smtp::Reply LocalReply(int code, absl::string_view enhanced,
                       absl::string_view text) {
  smtp::Reply r;
  r.code = code;
  r.enhanced = std::string(enhanced);
  r.text = std::string(text);
  r.synthetic = true;
  return r;
}

// "127.0.0.1:25" / "[::1]:25": the pool key (connections are limited per
// address, whatever MX name led there).
std::string AddressKey(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    return absl::StrCat(buf, ":", ntohs(a->sin_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
  return absl::StrCat("[", buf, "]:", ntohs(a->sin6_port));
}

absl::string_view DomainOf(absl::string_view address) {
  size_t at = address.rfind('@');
  return at == absl::string_view::npos ? address : address.substr(at + 1);
}

// The address of an entry's (first) recipient.
absl::string_view FirstAddress(const storage::QueueEntry& e) {
  return storage::IsRun(e.rec) ? e.rec.members(0).address() : e.rec.address();
}

// Recipients held by an entry (a run counts its members).
int64_t RecipientsOf(const storage::QueueEntry& e) {
  return storage::IsRun(e.rec) ? e.rec.members_size() : 1;
}

}  // namespace

struct DeliveryCore::Destination {
  std::string domain;
  // Ready queues by lane: transactional, then one per bulk class (tenant
  // bucket), served by round robin (every job costs one recipient, so
  // deficit round robin with a one-recipient quantum).
  std::deque<Job> transactional;
  std::array<std::deque<Job>, storage::kBulkClasses> bulk;
  size_t bulk_size = 0;
  int next_bulk = 0;  // the bulk class served next
  enum class MxState { kNone, kResolving, kReady } mx_state = MxState::kNone;
  dns::MxResult mx;
  PoolState* pool = nullptr;  // the endpoint currently used
  bool on_pool_queue = false;
  std::array<metrics::Counter*, kNumResults> results{};
  // Lanes (ready queues) that reached max_ready_per_domain and have not
  // drained to half since, and when each did.
  std::array<bool, storage::kNumLanes> full{};
  std::array<int64_t, storage::kNumLanes> full_since_ms{};
  int full_lanes = 0;

  size_t size() const { return transactional.size() + bulk_size; }
  bool empty() const { return transactional.empty() && bulk_size == 0; }
  std::deque<Job>& QueueFor(storage::Lane lane) {
    return lane == storage::Lane::kTransactional
               ? transactional
               : bulk[static_cast<int>(lane) - 1];
  }
  void Push(Job&& job, bool front) {
    if (storage::IsBulk(job.key.lane)) ++bulk_size;
    std::deque<Job>& q = QueueFor(job.key.lane);
    if (front) {
      q.push_front(std::move(job));
    } else {
      q.push_back(std::move(job));
    }
  }
  // Takes the front of a lane's queue (which must not be empty).
  Job PopFrom(std::deque<Job>& q) {
    if (&q != &transactional) --bulk_size;
    Job j = std::move(q.front());
    q.pop_front();
    return j;
  }
  Job Pop() {
    // Transactional mail never waits behind a bulk campaign.
    if (!transactional.empty()) return PopFrom(transactional);
    for (int i = 0; i < storage::kBulkClasses; ++i) {
      int c = (next_bulk + i) % storage::kBulkClasses;
      if (bulk[c].empty()) continue;
      next_bulk = (c + 1) % storage::kBulkClasses;
      return PopFrom(bulk[c]);
    }
    return PopFrom(transactional);  // unreachable when !empty()
  }
};

DeliveryCore::DeliveryCore(core::Loop& loop, const Options& options,
                           storage::QueueStore* store, ContentCache* contents,
                           InFlightTable* in_flight, metrics::Registry* metrics,
                           const core::Clock& clock, uint64_t seed)
    : loop_(loop),
      options_(options),
      store_(store),
      contents_(contents),
      in_flight_table_(in_flight),
      clock_(clock),
      retry_(options.retry, seed),
      tls_fallback_(clock, options.tls_fallback_ttl),
      iteration_end_(new IterationEnd),
      tick_timer_(loop),
      wake_timer_(loop),
      flush_timer_(loop),
      grace_timer_(loop),
      metrics_(metrics) {
  uv_check_init(loop.uv(), &iteration_end_->check);
  iteration_end_->check.data = iteration_end_;
  iteration_end_->core = this;
  // Never what keeps the loop running.
  uv_unref(reinterpret_cast<uv_handle_t*>(&iteration_end_->check));
  batch_.set_collect_events(options_.event_log != nullptr);
  cursors_.resize(options_.shards.size());
  lanes_.resize(options_.shards.size());
  for (size_t i = 0; i < options_.shards.size(); ++i) {
    shard_index_[options_.shards[i]] = i;
  }
  std::string loop_label = absl::StrCat(loop.index());
  using metrics::HelpOf;
  in_flight_gauge_ = metrics_->GetGauge(
      metrics::kInFlight, HelpOf(metrics::kInFlight), {{"loop", loop_label}});
  connections_gauge_ = metrics_->GetGauge(metrics::kSmtpConnections,
                                          HelpOf(metrics::kSmtpConnections),
                                          {{"loop", loop_label}});
  latency_ = metrics_->GetHistogram(
      metrics::kDeliveryLatencySeconds,
      HelpOf(metrics::kDeliveryLatencySeconds),
      std::vector<double>(std::begin(metrics::kDeliveryLatencyBounds),
                          std::end(metrics::kDeliveryLatencyBounds)));
  const metrics::Labels loop_labels = {{"loop", loop_label}};
  auto counter = [&](absl::string_view name) {
    return metrics_->GetCounter(name, HelpOf(name), loop_labels);
  };
  auto gauge = [&](absl::string_view name) {
    return metrics_->GetGauge(name, HelpOf(name), loop_labels);
  };
  scan_calls_ = counter(metrics::kScanCallsTotal);
  scan_read_ = counter(metrics::kScanEntriesReadTotal);
  scan_skipped_ = counter(metrics::kScanEntriesSkippedTotal);
  scan_blocks_ = counter(metrics::kScanLaneBlocksTotal);
  run_members_skipped_ = counter(metrics::kRunMembersSkippedTotal);
  ready_gauge_ = gauge(metrics::kDeliveryReadyEntries);
  in_flight_peak_gauge_ = gauge(metrics::kDeliveryInFlightPeak);
  for (absl::string_view tls :
       {metrics::kTlsNone, metrics::kTlsFull, metrics::kTlsResumed}) {
    sessions_by_tls_.push_back(metrics_->GetCounter(
        metrics::kSmtpSessionsTotal, HelpOf(metrics::kSmtpSessionsTotal),
        {{"tls", std::string(tls)}}));
  }
}

DeliveryCore::~DeliveryCore() {
  uv_check_stop(&iteration_end_->check);
  iteration_end_->core = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&iteration_end_->check),
           [](uv_handle_t* h) { delete static_cast<IterationEnd*>(h->data); });
  // Shutdown() normally ran; if not, abort what is left without callbacks
  // reaching a half-destroyed object.
  shutting_down_ = true;
  pools_.clear();
  if (resolver_) resolver_->Shutdown();
}

void DeliveryCore::Start() {
  resolver_ = dns::MxResolver::Create(loop_, options_.dns, clock_);
  uint64_t ms = std::max<int64_t>(
      1, absl::ToInt64Milliseconds(options_.scan_interval));
  tick_timer_.Start(
      ms,
      [this] {
        // Idle lanes whose next entry has become due are read again; every
        // lane once in a while, in case an entry arrived unannounced.
        const int64_t now = clock_.NowMillis();
        const bool all = now >= next_full_rescan_ms_;
        if (all) next_full_rescan_ms_ = now + kFullRescanMs;
        for (LaneState& ls : lanes_) {
          for (int l = 0; l < storage::kNumLanes; ++l) {
            if (all || ls.idle_until[l] <= now) ls.idle[l] = false;
          }
        }
        ready_gauge_->Set(ReadyEntries());
        Scan();
      },
      ms);
  uv_check_start(&iteration_end_->check, [](uv_check_t* c) {
    auto* h = static_cast<IterationEnd*>(c->data);
    if (h->core != nullptr) h->core->OnIterationEnd();
  });
  ScheduleScan(0);
}

void DeliveryCore::ScheduleScan(uint64_t delay_ms) {
  if (shutting_down_) return;
  const int64_t at = clock_.NowMillis() + static_cast<int64_t>(delay_ms);
  // An earlier wake-up replaces a later one (a transactional message must
  // not wait for a requeue's wake-up seconds away).
  if (wake_timer_.armed() && wake_at_ms_ <= at) return;
  wake_at_ms_ = at;
  wake_timer_.Start(delay_ms, [this] { Scan(); });
}

void DeliveryCore::Wake(uint16_t shard, storage::Lane lane, int64_t due_ms,
                        uint64_t after_id) {
  auto it = shard_index_.find(shard);
  if (it == shard_index_.end()) return;
  lanes_[it->second].idle[static_cast<int>(lane)] = false;
  std::string& cursor = cursors_[it->second][static_cast<int>(lane)];
  storage::QueueKey at;
  if (!cursor.empty() && storage::DecodeQueueKey(cursor, &at) &&
      (due_ms < at.due_ms || (due_ms == at.due_ms && after_id < at.id))) {
    // Entries committed behind the cursor: step back (to just before the
    // first of them: what was read before them is not read again). Ids
    // still leased are skipped by Admit.
    cursor = storage::EncodeQueueKey(
        storage::QueueKey{shard, lane, due_ms, after_id});
  }
  int64_t wait = due_ms - clock_.NowMillis();
  ScheduleScan(wait > 0 ? static_cast<uint64_t>(wait) : 0);
}

void DeliveryCore::Rewind() {
  for (auto& lanes : cursors_) {
    for (std::string& cursor : lanes) cursor.clear();
  }
  for (LaneState& ls : lanes_) ls.idle.fill(false);
  ScheduleScan(0);
}

struct DeliveryCore::SweepJob {
  uint64_t content_id = 0;
  size_t shard = 0;  // index into options_.shards
  int lane = 0;
  std::string cursor;
};

void DeliveryCore::SweepCancelled(uint64_t content_id) {
  if (shutting_down_) return;
  auto job = std::make_shared<SweepJob>();
  job->content_id = content_id;
  ++commits_outstanding_;  // Shutdown waits for the sweep to stop
  SweepStep(job);
}

void DeliveryCore::SweepStep(const std::shared_ptr<SweepJob>& job) {
  // One batch per loop turn: the outcomes are written and finished at the
  // iteration's end, so memory stays bounded (a sweep of millions used to
  // hold them all in one callback) and the loop keeps serving meanwhile.
  if (!shutting_down_ && in_flight_ >= options_.max_in_flight) {
    held_sweeps_.push_back(job);  // OnCommitted resumes it
    return;
  }
  const int64_t now = clock_.NowMillis();
  std::vector<storage::QueueEntry>& entries = scan_entries_;
  while (!shutting_down_ && job->shard < options_.shards.size()) {
    entries.clear();
    absl::Status s = store_->ScanDue(
        options_.shards[job->shard], static_cast<storage::Lane>(job->lane),
        std::numeric_limits<int64_t>::max(), kScanBatch, &job->cursor,
        &entries);
    bool more = s.ok() && entries.size() == kScanBatch;
    for (storage::QueueEntry& e : entries) {
      if (e.rec.content_id() != job->content_id) continue;
      if (in_flight_ >= options_.max_in_flight) {
        // At the bound: the next step starts on this entry.
        CursorBefore(e.key, &job->cursor);
        more = true;
        break;
      }
      storage::Outcome o;
      o.set_at_ms(now);
      o.set_reply("local: campaign cancelled");
      if (storage::IsRun(e.rec)) {
        if (LeaseRun(e, &run_jobs_) == nullptr) continue;
        for (Job& member : run_jobs_) {
          Destination* d = GetDestination(DomainOf(member.rec.address()));
          Record(d, std::move(member), Final::kCancelled, o, -1);
        }
        continue;
      }
      if (!leased_.insert(e.key.id).second) continue;  // in flight
      NoteLeased();
      in_flight_table_->Add(job->content_id, 1);
      o.set_attempts(e.rec.attempts());
      Destination* d = GetDestination(DomainOf(e.rec.address()));
      Record(d, Job{e.key, std::move(e.rec)}, Final::kCancelled, o, -1);
    }
    if (!more) {
      job->cursor.clear();
      if (++job->lane == storage::kNumLanes) {
        job->lane = 0;
        ++job->shard;
      }
    }
    if (!entries.empty()) {
      Flush();
      loop_.Post([this, job] { SweepStep(job); });
      return;
    }
  }
  Flush();
  --commits_outstanding_;
  MaybeFinishShutdown();
}

void DeliveryCore::ResumeSweeps() {
  std::vector<std::shared_ptr<SweepJob>> jobs;
  jobs.swap(held_sweeps_);
  for (auto& job : jobs) {
    loop_.Post([this, job] { SweepStep(job); });
  }
}

struct DeliveryCore::RescheduleJob {
  uint64_t content_id = 0;
  storage::Reschedule spec;
  std::function<void(absl::StatusOr<int64_t>)> done;
  int commits = 0;      // chunks handed to the committer, not yet back
  bool scanned = false; // every owned (shard, lane) was scanned
  size_t shard = 0;     // the next (shard index, lane) to scan
  int lane = 0;
  int64_t moved = 0;
  absl::Status status;
};

void DeliveryCore::Reschedule(
    uint64_t content_id, const storage::Reschedule& r,
    std::function<void(absl::StatusOr<int64_t>)> done) {
  if (shutting_down_) {
    done(absl::UnavailableError("shutting down"));
    return;
  }
  auto job = std::make_shared<RescheduleJob>();
  job->content_id = content_id;
  job->spec = r;
  job->done = std::move(done);
  ++commits_outstanding_;  // Shutdown waits for the scan to stop
  RescheduleStep(job);
}

void DeliveryCore::RescheduleStep(const std::shared_ptr<RescheduleJob>& job) {
  // One (shard, lane) per loop turn, so the loop keeps serving during a
  // reschedule of millions. A lane is scanned whole before any of its moves
  // is committed: a moved entry sorts later in the same lane and must not
  // be read (and moved) again.
  if (shutting_down_ && job->status.ok()) {
    job->status = absl::UnavailableError("shutting down");
  }
  if (job->status.ok() && job->shard < options_.shards.size()) {
    const uint16_t shard = options_.shards[job->shard];
    const auto lane = static_cast<storage::Lane>(job->lane);
    struct Chunk {
      storage::StateBatch batch;
      std::vector<uint64_t> ids;
      int64_t recipients = 0;
    };
    std::vector<Chunk> chunks;
    std::vector<storage::QueueEntry> entries;
    std::string cursor;
    do {
      entries.clear();
      absl::Status s = store_->ScanDue(shard, lane,
                                       std::numeric_limits<int64_t>::max(),
                                       kScanBatch, &cursor, &entries);
      if (!s.ok()) {
        job->status = s;
        break;
      }
      for (storage::QueueEntry& e : entries) {
        if (e.rec.content_id() != job->content_id) continue;
        // Already there: expanded from a block the expander moved first.
        if (e.key.due_ms == job->spec.due_ms &&
            e.rec.expires_ms() == job->spec.ExpiresFor(e.rec)) {
          continue;
        }
        if (!leased_.insert(e.key.id).second) continue;  // in flight
        if (chunks.empty() || chunks.back().ids.size() >= kScanBatch) {
          chunks.emplace_back();
        }
        // A run moves whole (its members share its due time and expiry).
        chunks.back().recipients += RecipientsOf(e);
        storage::AddReschedule(job->spec, &e, &chunks.back().batch);
        chunks.back().ids.push_back(e.key.id);
      }
    } while (entries.size() == kScanBatch);
    core::Loop* loop = &loop_;
    for (Chunk& chunk : chunks) {
      ++job->commits;
      ++commits_outstanding_;
      auto moved =
          std::make_shared<std::vector<uint64_t>>(std::move(chunk.ids));
      const int64_t recipients = chunk.recipients;
      store_->Commit(
          std::move(chunk.batch), /*durable=*/true,
          [this, loop, job, moved, recipients, shard, lane](absl::Status s) {
            loop->Post([this, job, moved, recipients, shard, lane, s] {
              OnRescheduleCommitted(job, *moved, recipients, shard, lane, s);
            });
          });
    }
    if (++job->lane == storage::kNumLanes) {
      job->lane = 0;
      ++job->shard;
    }
    loop_.Post([this, job] { RescheduleStep(job); });
    return;
  }
  job->scanned = true;
  if (job->commits == 0) {
    if (job->status.ok()) {
      job->done(job->moved);
    } else {
      job->done(job->status);
    }
  }
  --commits_outstanding_;
  MaybeFinishShutdown();
}

void DeliveryCore::OnRescheduleCommitted(
    const std::shared_ptr<RescheduleJob>& job, const std::vector<uint64_t>& ids,
    int64_t recipients, uint16_t shard, storage::Lane lane,
    const absl::Status& s) {
  --commits_outstanding_;
  for (uint64_t id : ids) leased_.erase(id);
  if (s.ok()) {
    job->moved += recipients;
    if (!shutting_down_) Wake(shard, lane, job->spec.due_ms);
  } else if (job->status.ok()) {
    job->status = s;
  }
  if (--job->commits == 0 && job->scanned) {
    if (job->status.ok()) {
      job->done(job->moved);
    } else {
      job->done(job->status);
    }
  }
  MaybeFinishShutdown();
}

void DeliveryCore::Scan() {
  if (shutting_down_) return;
  const int64_t now = clock_.NowMillis();
  std::vector<Destination*> touched;
  scan_starved_ = false;
  // The transactional lane of every shard strictly first.
  for (size_t i = 0; i < options_.shards.size() && !scan_starved_; ++i) {
    ScanLane(i, storage::Lane::kTransactional, kScanBatch, now, &touched);
  }
  // Transactional work goes to the pools before the bulk scan's reads.
  for (Destination* d : touched) Kick(d);
  touched.clear();
  // Bulk only below the loop's bound, and once held, only after in flight
  // fell to the low watermark: reading a few entries per finished one cost
  // a RocksDB seek each (thousands of scans a second at the bound).
  if (bulk_held_ && in_flight_ <= ResumeAt()) bulk_held_ = false;
  for (size_t i = 0; i < options_.shards.size() && !scan_starved_ &&
                     !bulk_held_;
       ++i) {
    ScanBulkFair(i, now, &touched);
  }
  for (Destination* d : touched) Kick(d);
  in_flight_gauge_->Set(in_flight_);
  in_flight_peak_gauge_->Set(in_flight_peak_);
}

int DeliveryCore::ResumeAt() const {
  return static_cast<int>(options_.max_in_flight * options_.resume_fraction);
}

int64_t DeliveryCore::ReadyEntries() const {
  int64_t n = 0;
  for (const auto& [name, d] : dests_) n += static_cast<int64_t>(d->size());
  return n;
}

int DeliveryCore::ScanLane(size_t i, storage::Lane lane, size_t max,
                           int64_t now, std::vector<Destination*>* touched) {
  const int l = static_cast<int>(lane);
  if (lanes_[i].idle[l] || LaneBlocked(i, l, now)) return 0;
  // The transactional lane has a reserve on top of the loop's bound, so it
  // never waits behind a full bulk window.
  const bool bulk = storage::IsBulk(lane);
  int budget = options_.max_in_flight - in_flight_ +
               (bulk ? 0 : options_.transactional_reserve);
  if (budget <= 0) {
    if (bulk) {
      bulk_held_ = true;
    } else {
      scan_starved_ = true;
    }
    return 0;
  }
  const size_t want = std::min<size_t>({static_cast<size_t>(budget), max,
                                        kScanBatch});
  scan_entries_.clear();
  std::string& cursor = cursors_[i][l];
  int64_t next_due = -1;
  bool limited = false;
  // `want` recipients (a run may overshoot it by up to kMaxRunMembers - 1).
  absl::Status s =
      store_->ScanDue(options_.shards[i], lane, now, want, &cursor,
                      &scan_entries_, &next_due, want, &limited);
  scan_calls_->Inc();
  if (!s.ok()) {
    std::fprintf(stderr, "salvo: scan of shard %d failed: %s\n",
                 options_.shards[i], s.ToString().c_str());
    return 0;
  }
  const size_t got = scan_entries_.size();
  size_t got_recipients = 0;
  for (const storage::QueueEntry& e : scan_entries_) {
    got_recipients += static_cast<size_t>(RecipientsOf(e));
  }
  scan_read_->Inc(static_cast<int64_t>(got));
  scan_requeued_ = 0;
  if (storage::IsBulk(lane) && got > 0 && OnlyFullDestinations(l, now)) {
    // Past full_destination_requeue_after, but nothing read here could be
    // sent now: requeueing it would only churn (a write per entry, every
    // few seconds). Wait another bound on the first entry's destination.
    CursorBefore(scan_entries_[0].key, &cursor);
    Destination* d = GetDestination(DomainOf(FirstAddress(scan_entries_[0])));
    d->full_since_ms[l] = now;
    lanes_[i].blocked_by[l] = d;
    scan_blocks_->Inc();
    return 0;
  }
  size_t admitted = 0;  // recipients
  for (size_t k = 0; k < got; ++k) {
    const int64_t n = RecipientsOf(scan_entries_[k]);
    Destination* full = Admit(std::move(scan_entries_[k]), now, touched);
    if (full == nullptr) {
      admitted += static_cast<size_t>(n);
      continue;
    }
    // Stop ON this entry: the next scan of the lane starts with it. The
    // entries after it are read again then.
    CursorBefore(scan_entries_[k].key, &cursor);
    lanes_[i].blocked_by[l] = full;
    scan_blocks_->Inc();
    return static_cast<int>(admitted);
  }
  if (!limited) {
    // Nothing more due until a Wake or its next entry's due time.
    lanes_[i].idle[l] = true;
    lanes_[i].idle_until[l] = next_due >= 0 ? next_due : kNever;
  } else if (scan_requeued_ * 2 > got_recipients) {
    // Mostly destinations that are full: read on at the next tick rather
    // than at once, or the whole backlog churns through requeues while the
    // ready queues drain.
    lanes_[i].idle[l] = true;
    lanes_[i].idle_until[l] = now;
  } else {
    ScheduleScan(0);  // more may be due
  }
  return static_cast<int>(got_recipients);
}

void DeliveryCore::ScanBulkFair(size_t i, int64_t now,
                                std::vector<Destination*>* touched) {
  // Deficit round robin over the bulk classes of the shard, the quantum in
  // recipients; a class keeps its turn across scans until its deficit is
  // spent, and a class with nothing due loses what it had left.
  LaneState& ls = lanes_[i];
  const int quantum = std::max(1, options_.bulk_quantum);
  size_t scanned = 0;
  for (int visits = 0; visits < 4 * storage::kBulkClasses; ++visits) {
    bool any = false;
    for (int c = 0; c < storage::kBulkClasses; ++c) {
      if (!ls.idle[1 + c] && !LaneBlocked(i, 1 + c, now)) any = true;
    }
    if (!any || scanned >= kScanBatch) break;
    const int c = ls.next_bulk;
    if (ls.idle[1 + c] || LaneBlocked(i, 1 + c, now)) {
      ls.deficit[c] = 0;
      ls.next_bulk = (c + 1) % storage::kBulkClasses;
      continue;
    }
    if (ls.deficit[c] <= 0) ls.deficit[c] += quantum;
    const int got = ScanLane(i, static_cast<storage::Lane>(1 + c),
                             static_cast<size_t>(ls.deficit[c]), now, touched);
    // Out of budget: the class keeps its turn.
    if (scan_starved_ || bulk_held_) return;
    scanned += static_cast<size_t>(got);
    ls.deficit[c] -= got;
    if (ls.idle[1 + c]) ls.deficit[c] = 0;
    if (ls.deficit[c] <= 0 || ls.idle[1 + c]) {
      ls.next_bulk = (c + 1) % storage::kBulkClasses;
    }
  }
}

DeliveryCore::Destination* DeliveryCore::Admit(
    storage::QueueEntry&& entry, int64_t now_ms,
    std::vector<Destination*>* touched) {
  if (storage::IsRun(entry.rec)) {
    return AdmitRun(std::move(entry), now_ms, touched);
  }
  bool cancelled = false;
  if (!MayLease(entry, &cancelled)) return nullptr;
  Destination* d = GetDestination(DomainOf(entry.rec.address()));
  const int l = static_cast<int>(entry.key.lane);
  const bool expired =
      entry.rec.expires_ms() > 0 && now_ms >= entry.rec.expires_ms();
  bool requeue = false;
  if (!cancelled && !expired &&
      static_cast<int>(d->QueueFor(entry.key.lane).size()) >=
          options_.max_ready_per_domain) {
    if (!d->full[l]) {
      d->full[l] = true;
      d->full_since_ms[l] = now_ms;
      ++d->full_lanes;
    }
    // A bulk lane waits for the destination to drain, unless it has been
    // full too long; the transactional lane never waits.
    if (storage::IsBulk(entry.key.lane) &&
        now_ms - d->full_since_ms[l] <
            absl::ToInt64Milliseconds(
                options_.full_destination_requeue_after)) {
      return d;
    }
    // Full too long: the lane reads on for the others' sake. Up to twice
    // the limit the entry is simply taken (the loop's in-flight budget
    // still bounds memory); beyond it, it goes back to the queue. Requeueing
    // at the limit itself churned: at 10M queued, 794k requeue writes in
    // 60 s against 276k deliveries.
    requeue = !storage::IsBulk(entry.key.lane) ||
              static_cast<int>(d->QueueFor(entry.key.lane).size()) >=
                  2 * options_.max_ready_per_domain;
  }
  leased_.insert(entry.key.id);
  NoteLeased();
  in_flight_table_->Add(entry.rec.content_id(), 1);
  Job job{entry.key, std::move(entry.rec)};
  if (cancelled) {
    storage::Outcome o;
    o.set_at_ms(now_ms);
    o.set_attempts(job.rec.attempts());
    o.set_reply("local: campaign cancelled");
    Record(d, std::move(job), Final::kCancelled, o, -1);
    return nullptr;
  }
  if (expired) {
    storage::Outcome o;
    o.set_at_ms(now_ms);
    o.set_attempts(job.rec.attempts());
    o.set_reply(job.rec.last_reply().empty()
                    ? "local: expired in queue before any attempt"
                    : job.rec.last_reply());
    o.set_remote_host(job.rec.last_host());
    Record(d, std::move(job), Final::kExpired, o, -1);
    return nullptr;
  }
  if (requeue) {
    // This destination has enough in memory: look again later, without
    // counting an attempt.
    int64_t due = now_ms + absl::ToInt64Milliseconds(options_.throttle_requeue);
    ++scan_requeued_;
    Record(d, std::move(job), Final::kRequeued, storage::Outcome(), due);
    return nullptr;
  }
  bool was_empty = d->empty();
  d->Push(std::move(job), /*front=*/false);
  if (was_empty) touched->push_back(d);
  return nullptr;
}

bool DeliveryCore::MayLease(const storage::QueueEntry& entry,
                            bool* cancelled) {
  if (leased_.contains(entry.key.id)) {  // already in memory
    scan_skipped_->Inc();
    return false;
  }
  *cancelled = false;
  auto content = contents_->Get(entry.rec.content_id());
  if (content.ok()) {
    storage::ContentState state = (*content)->State();
    // A paused campaign's entries stay queued untouched; Rewind() finds
    // them again on resume.
    if (state == storage::ContentState::kPaused) return false;
    *cancelled = state == storage::ContentState::kCancelled;
  }
  return true;
}

DeliveryCore::Destination* DeliveryCore::AdmitRun(
    storage::QueueEntry&& entry, int64_t now_ms,
    std::vector<Destination*>* touched) {
  bool cancelled = false;
  if (!MayLease(entry, &cancelled)) return nullptr;
  const int l = static_cast<int>(entry.key.lane);
  const bool expired =
      entry.rec.expires_ms() > 0 && now_ms >= entry.rec.expires_ms();
  const int64_t requeue_after =
      absl::ToInt64Milliseconds(options_.full_destination_requeue_after);
  if (!cancelled && !expired) {
    // Like an entry of its own: a full destination stops the lane ON the
    // run until it drains to half, or for requeue_after at most.
    for (const storage::Recipient& m : entry.rec.members()) {
      Destination* d = GetDestination(DomainOf(m.address()));
      if (static_cast<int>(d->QueueFor(entry.key.lane).size()) <
          options_.max_ready_per_domain) {
        continue;
      }
      if (!d->full[l]) {
        d->full[l] = true;
        d->full_since_ms[l] = now_ms;
        ++d->full_lanes;
      }
      if (now_ms - d->full_since_ms[l] < requeue_after) return d;
    }
  }
  if (LeaseRun(entry, &run_jobs_) == nullptr) return nullptr;
  for (Job& job : run_jobs_) {
    Destination* d = GetDestination(DomainOf(job.rec.address()));
    storage::Outcome o;
    o.set_at_ms(now_ms);
    if (cancelled) {
      o.set_reply("local: campaign cancelled");
      Record(d, std::move(job), Final::kCancelled, o, -1);
    } else if (expired) {
      o.set_reply("local: expired in queue before any attempt");
      Record(d, std::move(job), Final::kExpired, o, -1);
    } else if (static_cast<int>(d->QueueFor(entry.key.lane).size()) >=
               2 * options_.max_ready_per_domain) {
      // Full for too long and far over its room: this member waits in an
      // entry of its own (as Admit requeues an entry).
      const int64_t due =
          now_ms + absl::ToInt64Milliseconds(options_.throttle_requeue);
      ++scan_requeued_;
      Record(d, std::move(job), Final::kRequeued, storage::Outcome(), due);
    } else {
      const bool was_empty = d->empty();
      d->Push(std::move(job), /*front=*/false);
      if (was_empty) touched->push_back(d);
    }
  }
  run_jobs_.clear();
  return nullptr;
}

DeliveryCore::Run* DeliveryCore::LeaseRun(storage::QueueEntry& entry,
                                          std::vector<Job>* members) {
  members->clear();
  if (leased_.contains(entry.key.id)) return nullptr;
  storage::Recipient& rec = entry.rec;
  const int n = rec.members_size();
  // Members done before this lease (an earlier process, or a release
  // without outcomes) have a stored event: skip them.
  member_done_.assign(static_cast<size_t>(n), false);
  if (rec.epoch() != store_->epoch() || recheck_runs_.contains(entry.key.id)) {
    member_ids_.clear();
    for (const storage::Recipient& m : rec.members()) {
      member_ids_.push_back(m.id());
    }
    absl::Status s =
        store_->MembersWithEvents(rec.content_id(), member_ids_, &member_done_);
    if (!s.ok()) {
      std::fprintf(stderr, "salvo: reading the events of run %s failed: %s\n",
                   storage::IdToHex(entry.key.id).c_str(),
                   s.ToString().c_str());
      return nullptr;  // read again at a later scan
    }
  }
  leased_.insert(entry.key.id);
  recheck_runs_.erase(entry.key.id);
  auto owned = std::make_unique<Run>();
  Run* run = owned.get();
  run->key = entry.key;
  run->content_id = rec.content_id();
  runs_[entry.key.id] = std::move(owned);
  int skipped = 0;
  for (int k = 0; k < n; ++k) {
    if (member_done_[static_cast<size_t>(k)]) {
      ++skipped;
      continue;
    }
    Job& job = members->emplace_back();
    job.key = entry.key;
    job.rec = std::move(*rec.mutable_members(k));
    job.key.id = job.rec.id();
    job.rec.clear_id();
    job.rec.set_content_id(rec.content_id());
    job.rec.set_accepted_ms(rec.accepted_ms());
    job.rec.set_expires_ms(rec.expires_ms());
    job.run = run;
    ++run->open;
    NoteLeased();
  }
  if (skipped > 0) run_members_skipped_->Inc(skipped);
  if (!members->empty()) {
    in_flight_table_->Add(run->content_id,
                          static_cast<int64_t>(members->size()));
    return run;
  }
  RemoveRun(run);  // every member was done before
  return nullptr;
}

void DeliveryCore::MemberDone(Run* run, bool written) {
  if (!written) run->keep = true;
  if (--run->open > 0) return;
  if (!run->keep) {
    RemoveRun(run);
    return;
  }
  // Some member is still to do: the run stays stored, to be leased again.
  const uint64_t id = run->key.id;
  leased_.erase(id);
  recheck_runs_.insert(id);
  runs_.erase(id);
}

void DeliveryCore::RemoveRun(Run* run) {
  batch_.RemoveRun(run->key);
  batch_items_.push_back(Pending{run->key.id, run->content_id, run->key.shard,
                                 run->key.lane, -1, run,
                                 /*run_removal=*/true});
  if (batch_items_.size() >= kFlushAt) Flush();
}

void DeliveryCore::Release(const Job& job) {
  --in_flight_;
  in_flight_table_->Add(job.rec.content_id(), -1);
  if (job.run != nullptr) {
    MemberDone(job.run, /*written=*/false);
  } else {
    leased_.erase(job.key.id);
  }
}

void DeliveryCore::CursorBefore(const storage::QueueKey& key,
                                std::string* cursor) {
  // Nothing sorts between (due, id - 1) and (due, id): ids are unique and
  // never 0. Not the previous cursor: after deletions that may lie before
  // a long run of tombstones, which every rescan would walk again.
  cursor->clear();
  storage::QueueKey before = key;
  before.id = key.id - 1;
  storage::EncodeQueueKey(before, cursor);
}

bool DeliveryCore::OnlyFullDestinations(int l, int64_t now_ms) {
  const auto full = [&](const storage::QueueEntry& e,
                        absl::string_view address) {
    Destination* d = GetDestination(DomainOf(address));
    return d->full[l] && static_cast<int>(d->QueueFor(e.key.lane).size()) >=
                             options_.max_ready_per_domain;
  };
  for (const storage::QueueEntry& e : scan_entries_) {
    if (e.rec.expires_ms() > 0 && now_ms >= e.rec.expires_ms()) return false;
    if (!storage::IsRun(e.rec)) {
      if (!full(e, e.rec.address())) return false;
      continue;
    }
    for (const storage::Recipient& m : e.rec.members()) {
      if (!full(e, m.address())) return false;
    }
  }
  return true;
}

bool DeliveryCore::LaneBlocked(size_t i, int l, int64_t now_ms) {
  Destination* d = lanes_[i].blocked_by[l];
  if (d == nullptr) return false;
  if (d->full[l] &&
      now_ms - d->full_since_ms[l] <
          absl::ToInt64Milliseconds(options_.full_destination_requeue_after)) {
    return true;
  }
  // Drained, or full too long (its entries are requeued now): read on.
  lanes_[i].blocked_by[l] = nullptr;
  return false;
}

void DeliveryCore::ReleaseFull(Destination* d) {
  if (d->full_lanes == 0) return;
  bool unblocked = false;
  for (int l = 0; l < storage::kNumLanes; ++l) {
    if (!d->full[l]) continue;
    const size_t size = d->QueueFor(static_cast<storage::Lane>(l)).size();
    if (static_cast<int>(size * 2) > options_.max_ready_per_domain) continue;
    d->full[l] = false;
    --d->full_lanes;
    for (LaneState& ls : lanes_) {
      if (ls.blocked_by[l] != d) continue;
      ls.blocked_by[l] = nullptr;
      ls.idle[l] = false;
      unblocked = true;
    }
  }
  if (unblocked) ScheduleScan(0);
}

DeliveryCore::Destination* DeliveryCore::GetDestination(
    absl::string_view domain) {
  std::string key = absl::AsciiStrToLower(domain);
  auto it = dests_.find(key);
  if (it != dests_.end()) return it->second.get();
  auto d = std::make_unique<Destination>();
  d->domain = key;
  for (int r = 0; r < kNumResults; ++r) {
    d->results[r] = metrics_->GetCounter(
        metrics::kDeliveriesTotal, metrics::HelpOf(metrics::kDeliveriesTotal),
        {{"domain", key}, {"result", kResultNames[r]}});
  }
  Destination* raw = d.get();
  dests_.emplace(key, std::move(d));
  return raw;
}

void DeliveryCore::Kick(Destination* d) {
  if (shutting_down_ || d->empty()) return;
  if (d->mx_state == Destination::MxState::kResolving) return;
  if (d->mx_state == Destination::MxState::kReady &&
      clock_.Now() >= d->mx.expires) {
    d->mx_state = Destination::MxState::kNone;
  }
  if (d->mx_state == Destination::MxState::kNone) {
    d->mx_state = Destination::MxState::kResolving;
    resolver_->Resolve(d->domain,
                       [this, d](const dns::MxResult& r) { OnMx(d, r); });
    return;
  }
  if (d->pool == nullptr || d->pool->pool->down()) {
    d->pool = ChoosePool(d);
    if (d->pool == nullptr) {
      smtp::Reply r = LocalReply(0, "4.4.1", "all MX hosts are unreachable");
      FailAll(d, r, "");
      return;
    }
  }
  if (!d->on_pool_queue) {
    d->pool->wanting.push_back(d);
    d->on_pool_queue = true;
  }
  d->pool->pool->Pump(WaitingFor(*d->pool));
}

int DeliveryCore::WaitingFor(const PoolState& ps) {
  int waiting = 0;
  for (const Destination* w : ps.wanting) {
    if (w->pool == &ps) waiting += static_cast<int>(w->size());
  }
  return waiting;
}

int DeliveryCore::Waiting(const pool::ConnectionPool& pool) {
  if (shutting_down_) return 0;
  auto it = pool_states_.find(&pool);
  return it == pool_states_.end() ? 0 : WaitingFor(*it->second);
}

void DeliveryCore::OnMx(Destination* d, const dns::MxResult& r) {
  if (shutting_down_) return;
  switch (r.kind) {
    case dns::MxResult::Kind::kOk:
      d->mx = r;
      d->mx_state = Destination::MxState::kReady;
      d->pool = nullptr;
      Kick(d);
      return;
    case dns::MxResult::Kind::kNullMx:
      d->mx_state = Destination::MxState::kNone;
      FailAll(d,
              LocalReply(556, "5.1.10",
                         absl::StrCat("domain ", d->domain,
                                      " accepts no mail (null MX)")),
              "");
      return;
    case dns::MxResult::Kind::kNoDomain:
      d->mx_state = Destination::MxState::kNone;
      FailAll(d,
              LocalReply(550, "5.1.2",
                         absl::StrCat("no MX or address for ", d->domain, ": ",
                                      r.error)),
              "");
      return;
    case dns::MxResult::Kind::kTempFail:
      d->mx_state = Destination::MxState::kNone;
      FailAll(d,
              LocalReply(0, "4.4.3",
                         absl::StrCat("DNS lookup for ", d->domain,
                                      " failed: ", r.error)),
              "");
      return;
  }
}

DeliveryCore::PoolState* DeliveryCore::ChoosePool(Destination* d) {
  smtp::TlsPolicy policy = options_.tls_policy;
  if (auto p = options_.tls_domain_policy.find(d->domain);
      p != options_.tls_domain_policy.end()) {
    policy = p->second;
  }
  for (const dns::MxHost& host : d->mx.hosts) {
    for (const sockaddr_storage& addr : host.addrs) {
      // One pool per address and TLS policy; with required_verify also per
      // MX name, which the certificate must match (a connection verified
      // for one name never carries mail for another).
      std::string key =
          absl::StrCat(AddressKey(addr), "/", smtp::TlsPolicyName(policy));
      if (policy == smtp::TlsPolicy::kRequiredVerify) {
        absl::StrAppend(&key, "/", host.name);
      }
      auto it = pools_.find(key);
      if (it == pools_.end()) {
        smtp::Endpoint ep;
        ep.addr = addr;
        ep.host_name = host.name;
        pool::ConnectionPool::Options po = options_.pool;
        po.session.tls.policy = policy;
        po.session.tls.context = options_.tls_context.get();
        po.tls_fallback = &tls_fallback_;
        auto ps = std::make_unique<PoolState>();
        ps->pool = std::make_unique<pool::ConnectionPool>(loop_, po, ep, this,
                                                          clock_);
        ps->pool->on_open_change = [this](int delta) {
          connections_gauge_->Add(delta);
        };
        ps->pool->on_session_ready = [this](const smtp::TlsInfo& tls) {
          sessions_by_tls_[!tls.active ? 0 : tls.resumed ? 2 : 1]->Inc();
        };
        pool_states_[ps->pool.get()] = ps.get();
        it = pools_.emplace(key, std::move(ps)).first;
      }
      if (!it->second->pool->down()) return it->second.get();
    }
  }
  return nullptr;
}

void DeliveryCore::FailAll(Destination* d, const smtp::Reply& reply,
                           const std::string& host) {
  while (!d->empty()) Finish(d, d->Pop(), reply, host);
  ReleaseFull(d);
}

bool DeliveryCore::TakeWork(pool::ConnectionPool& pool, pool::PoolWork* work) {
  if (shutting_down_) return false;
  auto sit = pool_states_.find(&pool);
  if (sit == pool_states_.end()) return false;
  PoolState* ps = sit->second;
  while (!ps->wanting.empty()) {
    Destination* d = ps->wanting.front();
    ps->wanting.pop_front();
    if (d->pool != ps || d->empty()) {
      d->on_pool_queue = false;
      continue;
    }
    Job job = d->Pop();
    ReleaseFull(d);
    if (d->empty()) {
      d->on_pool_queue = false;
    } else {
      ps->wanting.push_back(d);  // round robin between destinations
    }
    if (BuildWork(d, std::move(job), pool.endpoint().ToString(), work)) {
      return true;
    }
  }
  return false;
}

bool DeliveryCore::BuildWork(Destination* d, Job job, const std::string& host,
                             pool::PoolWork* work) {
  auto content = contents_->Get(job.rec.content_id());
  if (!content.ok()) {
    bool gone = absl::IsNotFound(content.status());
    smtp::Reply r = LocalReply(
        gone ? 550 : 0, gone ? "5.3.0" : "4.3.0",
        absl::StrCat("content unavailable: ", content.status().ToString()));
    Finish(d, std::move(job), r, "");
    return false;
  }
  const CachedContent& c = **content;
  if (c.State() != storage::ContentState::kActive) {
    if (c.State() == storage::ContentState::kCancelled) {
      storage::Outcome o;
      o.set_at_ms(clock_.NowMillis());
      o.set_attempts(job.rec.attempts());
      o.set_reply("local: campaign cancelled");
      Record(d, std::move(job), Final::kCancelled, o, -1);
    } else {
      // Paused after it was leased: back to storage as it is (no write).
      Release(job);
    }
    return false;
  }
  if (Suppressed(d, c, job)) return false;
  // Identical content (non-personalized transactional mail): several
  // recipients of the destination share one transaction, unless return
  // paths are VERP: one MAIL FROM per recipient is what ties an
  // asynchronous bounce to it.
  std::vector<Job> group;
  group.push_back(std::move(job));
  if (c.content.transactional() && c.compiled->fields().empty() &&
      options_.hygiene.bounce_domain.empty()) {
    std::deque<Job>& q = d->QueueFor(group[0].key.lane);
    while (static_cast<int>(group.size()) <
               options_.max_recipients_per_transaction &&
           !q.empty() &&
           q.front().rec.content_id() == group[0].rec.content_id()) {
      Job next = d->PopFrom(q);
      if (!Suppressed(d, c, next)) group.push_back(std::move(next));
    }
  }
  auto fail_all = [&](const smtp::Reply& r) {
    for (Job& j : group) Finish(d, std::move(j), r, "");
  };
  const Job& first = group[0];
  fields_scratch_.clear();
  for (const auto& f : first.rec.fields()) {
    fields_scratch_.emplace_back(f.name(), f.value());
  }
  std::string message_id =
      absl::StrCat(storage::IdToHex(first.rec.content_id()), ".",
                   storage::IdToHex(first.key.id), "@", options_.hostname);
  std::string to;
  if (group.size() > 1) {
    for (const Job& j : group) {
      absl::StrAppend(&to, to.empty() ? "" : ", ", j.rec.address());
    }
  }
  render::RenderInput in;
  in.rcpt = group.size() > 1 ? absl::string_view(to)
                             : absl::string_view(first.rec.address());
  in.fields = fields_scratch_;
  in.message_id = message_id;
  in.date = clock_.Now();
  unsubscribe_buf_.clear();
  if (!c.content.transactional() &&
      !options_.hygiene.unsubscribe_secret.empty() &&
      !options_.hygiene.unsubscribe_base_url.empty()) {
    absl::Status us = hygiene::AppendListUnsubscribe(
        options_.hygiene,
        hygiene::UnsubscribeTarget{c.content.tenant(), first.rec.content_id(),
                                   first.rec.address()},
        &unsubscribe_buf_);
    if (us.ok()) in.list_unsubscribe = unsubscribe_buf_;
  }
  std::string data;
  absl::Status s = c.compiled->Render(in, &data);
  if (!s.ok()) {
    fail_all(LocalReply(550, "5.6.0",
                        absl::StrCat("render failed: ", s.message())));
    return false;
  }
  if (options_.dkim != nullptr && options_.dkim->size() > 0) {
    absl::Status signed_ok = options_.dkim->SignFor(
        dkim::AddressDomain(c.content.from()), data, &dkim_buf_);
    if (!signed_ok.ok()) {
      // A message we cannot sign is not sent unsigned.
      bool ours = absl::IsInternal(signed_ok);
      fail_all(LocalReply(ours ? 0 : 550, ours ? "4.7.0" : "5.6.0",
                          absl::StrCat("DKIM signing failed: ",
                                       signed_ok.message())));
      return false;
    }
    data.insert(0, dkim_buf_);
  }
  if (!options_.hygiene.bounce_domain.empty()) {
    // VERP: an asynchronous bounce names the campaign and the recipient
    // (transactions are not shared then).
    work->txn.mail_from = hygiene::BuildVerp(
        hygiene::VerpIds{first.rec.content_id(), first.key.id},
        options_.hygiene.bounce_domain);
  } else {
    work->txn.mail_from = c.content.envelope_from();
  }
  work->txn.rcpts.clear();
  std::vector<uint64_t> ids;
  for (Job& j : group) {
    work->txn.rcpts.push_back(j.rec.address());
    ids.push_back(j.key.id);
    uint64_t id = j.key.id;
    active_.emplace(id, std::make_pair(d, std::move(j)));
  }
  work->txn.data = std::move(data);
  PoolState* ps = d->pool;
  work->done = [this, ids = std::move(ids), ps,
                host](const smtp::TransactionResult& result) {
    for (size_t i = 0; i < ids.size(); ++i) {
      OnResult(ids[i], ps, host, classify::ForRecipient(result, i),
               result.tls);
    }
  };
  return true;
}

bool DeliveryCore::Suppressed(Destination* d, const CachedContent& c,
                              Job& job) {
  if (options_.suppressions == nullptr) return false;
  storage::SuppressionEntry match;
  auto hit = options_.suppressions->IsSuppressed(c.content.tenant(),
                                                 job.rec.address(), &match);
  if (!hit.ok() || !*hit) return false;
  // Suppressed after it was accepted: never sent.
  job.suppressed = true;
  Finish(d, std::move(job),
         LocalReply(550, "5.7.1",
                    absl::StrCat("recipient is on the suppression list (",
                                 match.entry, ")")),
         "");
  return true;
}

void DeliveryCore::OnResult(uint64_t job_id, PoolState* ps,
                            const std::string& host,
                            const classify::Verdict& verdict,
                            const smtp::TlsInfo& tls) {
  auto it = active_.find(job_id);
  if (it == active_.end()) return;
  Destination* d = it->second.first;
  Job job = std::move(it->second.second);
  active_.erase(it);
  const smtp::Reply& reply = verdict.reply;
  if (shutting_down_ && verdict.action != classify::Action::kDelivered &&
      verdict.action != classify::Action::kBounce) {
    // Cut short by shutdown: the entry stays queued as it was.
    Release(job);
    return;
  }
  if (verdict.action == classify::Action::kTryNextMx &&
      ++job.session_failures <= options_.max_session_failures) {
    // Session scope: this connection (a 421: this MX for a while) failed,
    // not the message. Try again on another session or the next MX.
    d->Push(std::move(job), /*front=*/true);
    if (reply.code == 421 && !reply.synthetic && ps != nullptr &&
        !ps->pool->down()) {
      // Every destination waiting on this MX moves on, not only this one.
      ps->pool->MarkDown(options_.down_after_421);
      OnEndpointDown(*ps->pool, reply);
    }
    Kick(d);
    return;
  }
  Finish(d, std::move(job), reply, host, &tls);
  if (!shutting_down_ && !d->empty()) Kick(d);
}

void DeliveryCore::Finish(Destination* d, Job&& job, const smtp::Reply& reply,
                          const std::string& host, const smtp::TlsInfo* tls) {
  const int64_t now = clock_.NowMillis();
  storage::Outcome o;
  o.set_at_ms(now);
  o.set_attempts(job.rec.attempts() + 1);
  o.set_remote_host(host);
  o.set_reply(reply.ToString());
  o.set_address(job.rec.address());
  o.set_content_id(job.rec.content_id());
  if (tls != nullptr && tls->active) {
    o.set_tls(absl::StrCat(tls->version, " ", tls->cipher,
                           tls->verified ? " verified" : "",
                           tls->resumed ? " resumed" : ""));
  }
  if (reply.IsPositive()) {
    latency_->Observe(static_cast<double>(now - job.rec.accepted_ms()) / 1000.0);
    Record(d, std::move(job), Final::kDelivered, o, -1);
  } else if (reply.IsPermanent()) {
    Record(d, std::move(job), Final::kBounced, o, -1);
  } else {
    int64_t due = retry_.NextDueMs(job.rec.attempts() + 1, now,
                                   job.rec.expires_ms());
    if (due < 0) {
      Record(d, std::move(job), Final::kExpired, o, -1);
    } else {
      Record(d, std::move(job), Final::kDeferred, o, due);
    }
  }
}

void DeliveryCore::Record(Destination* d, Job&& job, Final kind,
                          const storage::Outcome& o, int64_t new_due_ms) {
  storage::Outcome outcome = o;
  const storage::StateBatch::Entry entry = job.entry();
  switch (kind) {
    case Final::kDelivered:
      outcome.set_state(storage::Outcome::DELIVERED);
      batch_.Delivered(job.key, job.rec, outcome, entry);
      break;
    case Final::kBounced:
      outcome.set_state(storage::Outcome::BOUNCED);
      if (job.suppressed) {
        batch_.SuppressedBounce(job.key, job.rec, outcome, entry);
      } else {
        batch_.Bounced(job.key, job.rec, outcome, entry);
      }
      break;
    case Final::kExpired:
      outcome.set_state(storage::Outcome::EXPIRED);
      batch_.Expired(job.key, job.rec, outcome, entry);
      break;
    case Final::kDeferred:
      outcome.set_state(storage::Outcome::DEFERRED);
      batch_.Defer(job.key, job.rec, new_due_ms, outcome, entry);
      break;
    case Final::kRequeued:
      batch_.Requeue(job.key, job.rec, new_due_ms, entry);
      break;
    case Final::kCancelled:
      outcome.set_state(storage::Outcome::CANCELLED);
      batch_.Cancelled(job.key, job.rec, outcome, entry);
      break;
  }
  d->results[static_cast<int>(kind)]->Inc();
  batch_items_.push_back(Pending{job.key.id, job.rec.content_id(),
                                 job.key.shard, job.key.lane, new_due_ms,
                                 job.run});
  // Written at the end of this loop iteration (OnIterationEnd), sooner when
  // the batch is big.
  if (batch_items_.size() >= kFlushAt) Flush();
}

void DeliveryCore::OnIterationEnd() {
  in_iteration_end_ = true;
  Flush();
  in_iteration_end_ = false;
  if (written_.empty()) return;
  finishing_items_.swap(written_);
  std::vector<storage::StateBatch::BatchEvent> events;
  events.swap(written_events_);
  OnCommitted(finishing_items_, absl::OkStatus(), std::move(events));
  finishing_items_.clear();
}

void DeliveryCore::Flush() {
  flush_timer_.Stop();
  if (batch_items_.empty()) return;
  if (store_->WriteUnsynced(batch_).ok()) {
    if (written_.empty()) {
      ++commits_outstanding_;  // all of written_, finished by OnIterationEnd
      written_.swap(batch_items_);
    } else {
      written_.insert(written_.end(), batch_items_.begin(),
                      batch_items_.end());
    }
    batch_items_.clear();
    if (options_.event_log != nullptr) {
      std::vector<storage::StateBatch::BatchEvent> events = batch_.TakeEvents();
      if (written_events_.empty()) {
        written_events_.swap(events);
      } else {
        written_events_.insert(written_events_.end(),
                               std::make_move_iterator(events.begin()),
                               std::make_move_iterator(events.end()));
      }
    }
    batch_.Clear();
    // Outside OnIterationEnd (a big batch, a sweep, shutdown): make sure an
    // iteration end follows even if the loop would otherwise sleep.
    if (!in_iteration_end_ && !flush_timer_.armed()) {
      flush_timer_.Start(0, [this] { OnIterationEnd(); });
    }
    return;
  }
  storage::StateBatch batch = std::move(batch_);
  batch_ = storage::StateBatch();
  batch_.set_collect_events(options_.event_log != nullptr);
  auto events = std::make_shared<std::vector<storage::StateBatch::BatchEvent>>(
      batch.TakeEvents());
  auto items = std::make_shared<std::vector<Pending>>(std::move(batch_items_));
  batch_items_.clear();
  ++commits_outstanding_;
  core::Loop* loop = &loop_;
  // Outcomes need no fsync: losing one after a power cut means the
  // recipient is tried again (at-least-once), never lost.
  store_->Commit(std::move(batch), /*durable=*/false,
                 [this, loop, items, events](absl::Status s) {
                   loop->Post([this, items, events, s] {
                     OnCommitted(*items, s, std::move(*events));
                   });
                 });
}

void DeliveryCore::LogEvents(
    std::vector<storage::StateBatch::BatchEvent> events) {
  absl::flat_hash_map<std::string,
                      std::vector<storage::StateBatch::BatchEvent>>
      by_tenant;
  // A batch's events mostly share one content: look its tenant up once per
  // run of the same content, not once per event (a cache lock each).
  uint64_t last_content = 0;
  std::vector<storage::StateBatch::BatchEvent>* list = nullptr;
  for (auto& e : events) {
    if (list == nullptr || e.content_id != last_content) {
      auto content = contents_->Get(e.content_id);
      list = &by_tenant[content.ok() ? (*content)->content.tenant()
                                     : std::string()];
      last_content = e.content_id;
    }
    list->push_back(std::move(e));
  }
  for (auto& [tenant, list] : by_tenant) {
    options_.event_log->Append(tenant, std::move(list));
  }
}

void DeliveryCore::OnCommitted(
    const std::vector<Pending>& done, const absl::Status& s,
    std::vector<storage::StateBatch::BatchEvent> events) {
  --commits_outstanding_;
  if (s.ok() && options_.event_log != nullptr && !events.empty()) {
    LogEvents(std::move(events));
  }
  if (!s.ok()) {
    std::fprintf(stderr,
                 "salvo: committing %zu outcomes failed: %s (they stay queued "
                 "and are retried after a restart)\n",
                 done.size(), s.ToString().c_str());
  }
  absl::flat_hash_map<uint64_t, int64_t> per_content;
  int outcomes = 0;
  for (const Pending& p : done) {
    if (p.run_removal) {
      // Not a recipient: the run's key, removed (or, failing that, to be
      // leased again and its members' events read).
      leased_.erase(p.id);
      if (!s.ok()) recheck_runs_.insert(p.id);
      runs_.erase(p.id);
      continue;
    }
    ++outcomes;
    if (p.run != nullptr) {
      MemberDone(p.run, s.ok());
    } else {
      leased_.erase(p.id);
    }
    --per_content[p.content_id];
    if (p.new_due_ms >= 0 && s.ok()) Wake(p.shard, p.lane, p.new_due_ms);
  }
  for (const auto& [content, delta] : per_content) {
    in_flight_table_->Add(content, delta);
  }
  in_flight_ -= outcomes;
  in_flight_gauge_->Set(in_flight_);
  if (scan_starved_ || (bulk_held_ && in_flight_ <= ResumeAt())) {
    ScheduleScan(0);
  }
  if (!held_sweeps_.empty() && (in_flight_ <= ResumeAt() || shutting_down_)) {
    ResumeSweeps();
  }
  MaybeFinishShutdown();
}

bool DeliveryCore::TakePriorityWork(pool::ConnectionPool& pool,
                                    pool::PoolWork* work) {
  if (shutting_down_) return false;
  auto sit = pool_states_.find(&pool);
  if (sit == pool_states_.end()) return false;
  PoolState* ps = sit->second;
  // Destinations stay in `wanting` (TakeWork drops the empty ones).
  for (size_t k = 0; k < ps->wanting.size(); ++k) {
    Destination* d = ps->wanting[k];
    while (d->pool == ps && !d->transactional.empty()) {
      Job job = d->PopFrom(d->transactional);
      ReleaseFull(d);
      if (BuildWork(d, std::move(job), pool.endpoint().ToString(), work)) {
        return true;
      }
    }
  }
  return false;
}

int DeliveryCore::PriorityWaiting(const pool::ConnectionPool& pool) {
  if (shutting_down_) return 0;
  auto it = pool_states_.find(&pool);
  if (it == pool_states_.end()) return 0;
  int waiting = 0;
  for (const Destination* w : it->second->wanting) {
    if (w->pool == it->second) {
      waiting += static_cast<int>(w->transactional.size());
    }
  }
  return waiting;
}

void DeliveryCore::OnEndpointDown(pool::ConnectionPool& pool,
                                  const smtp::Reply& why) {
  auto sit = pool_states_.find(&pool);
  if (sit == pool_states_.end()) return;
  PoolState* ps = sit->second;
  std::deque<Destination*> wanting;
  wanting.swap(ps->wanting);
  for (Destination* d : wanting) d->on_pool_queue = false;
  for (Destination* d : wanting) {
    if (d->pool != ps) continue;
    d->pool = nullptr;
    // The next MX, or a deferral of everything when none is left.
    PoolState* next = ChoosePool(d);
    if (next == nullptr) {
      smtp::Reply r = why;
      if (r.code == 0 && r.text.empty()) r.text = "connection failed";
      FailAll(d, r, pool.endpoint().ToString());
    } else {
      Kick(d);
    }
  }
}

void DeliveryCore::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  tick_timer_.Stop();
  wake_timer_.Stop();
  // Recipients waiting in memory stay queued in storage as they are.
  for (auto& [name, d] : dests_) {
    for (int lane = 0; lane < storage::kNumLanes; ++lane) {
      std::deque<Job>& q = d->QueueFor(static_cast<storage::Lane>(lane));
      for (Job& j : q) Release(j);
      q.clear();
    }
    d->bulk_size = 0;
  }
  ResumeSweeps();  // they stop at once and release their hold
  pools_draining_ = static_cast<int>(pools_.size());
  for (auto& [key, ps] : pools_) {
    ps->pool->Drain([this] {
      --pools_draining_;
      MaybeFinishShutdown();
    });
  }
  grace_timer_.Start(absl::ToInt64Milliseconds(options_.shutdown_grace), [this] {
    for (auto& [key, ps] : pools_) ps->pool->AbortAll();
  });
  MaybeFinishShutdown();
}

void DeliveryCore::MaybeFinishShutdown() {
  if (!shutting_down_ || !shutdown_done_ || finishing_) return;
  if (pools_draining_ > 0) return;
  if (!batch_items_.empty()) Flush();
  if (commits_outstanding_ > 0) return;
  // We may be inside a pool's callback: tear down on the next iteration.
  finishing_ = true;
  loop_.Post([this] {
    grace_timer_.Stop();
    flush_timer_.Stop();
    uv_check_stop(&iteration_end_->check);
    pools_.clear();
    pool_states_.clear();
    if (resolver_) {
      resolver_->Shutdown();
      resolver_.reset();
    }
    in_flight_gauge_->Set(in_flight_);
    auto done = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    done();
  });
}

}  // namespace salvo::delivery
