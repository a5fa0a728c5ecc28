// Micro-benchmarks of storage::QueueStore on a real RocksDB in a fresh temp
// directory: enqueue (batches of 1000, durable or not), ScanDue leases of
// 1000, Delivered+commit (ack), Defer+commit and Requeue+commit (reschedule,
// storage/reschedule.h), and the expansion of a 10k-recipient upload block
// into queue entries over 64 shards while older entries are acked. Reports items/s and heap allocations per operation
// ("allocs/op", one op = one recipient; bench/alloc_counter.h counts the
// whole process, RocksDB's background threads included, so treat it as an
// upper bound).
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "storage/queue_store.h"
#include "storage/reschedule.h"

// GCC flags free() in the replaced delete as mismatched; it pairs with the
// malloc() in the replaced new (bench/alloc_counter.h).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace salvo::storage {
namespace {

constexpr int kBatch = 1000;
constexpr int64_t kNow = 1'700'000'000'000;

class TempStore {
 public:
  explicit TempStore(bool sync) {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string templ = std::string(tmp ? tmp : "/tmp") + "/queue_bench_XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) std::abort();
    dir_ = templ;
    QueueStore::Options o;
    o.path = dir_ + "/db";
    o.num_shards = 64;
    o.sync = sync;
    auto store = QueueStore::Open(o);
    if (!store.ok()) std::abort();
    store_ = std::move(*store);
  }
  ~TempStore() {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  QueueStore& operator*() { return *store_; }
  QueueStore* operator->() { return store_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<QueueStore> store_;
};

Recipient MakeRecipient(uint64_t id) {
  Recipient rec;
  rec.set_content_id(1);
  rec.set_address("user" + std::to_string(id) + "@example.com");
  rec.set_accepted_ms(kNow);
  auto* f = rec.add_fields();
  f->set_name("name");
  f->set_value("Some Body");
  return rec;
}

// Fills shard 0 with `n` due entries in batches of kBatch.
void Fill(QueueStore& store, int n) {
  std::vector<Recipient> recs;
  for (int done = 0; done < n; done += kBatch) {
    StateBatch b;
    for (int i = 0; i < kBatch; ++i) {
      const uint64_t id = store.NextId();
      b.Enqueue({0, Lane::kBulk, kNow, id}, MakeRecipient(id));
    }
    if (!store.CommitNow(std::move(b), false).ok()) std::abort();
  }
}

void ReportAllocs(benchmark::State& state, int64_t allocs) {
  const double items = static_cast<double>(state.iterations()) * kBatch;
  state.SetItemsProcessed(static_cast<int64_t>(items));
  state.counters["allocs/op"] = allocs / items;
}

void BM_Enqueue(benchmark::State& state) {
  const bool durable = state.range(0) != 0;
  TempStore store(durable);
  std::vector<Recipient> recs;
  for (int i = 0; i < kBatch; ++i) recs.push_back(MakeRecipient(i));
  int64_t allocs = 0;
  for (auto _ : state) {
    const int64_t before = salvo::bench::Allocations();
    StateBatch b;
    for (const Recipient& rec : recs) {
      b.Enqueue({0, Lane::kBulk, kNow, store->NextId()}, rec);
    }
    if (!store->CommitNow(std::move(b), durable).ok()) std::abort();
    allocs += salvo::bench::Allocations() - before;
  }
  ReportAllocs(state, allocs);
  state.counters["syncs"] = static_cast<double>(store->syncs());
}
BENCHMARK(BM_Enqueue)->ArgName("durable")->Arg(0)->Arg(1)->UseRealTime();

void BM_ScanDueLease(benchmark::State& state) {
  TempStore store(false);
  Fill(*store, 100 * kBatch);
  std::vector<QueueEntry> out;
  std::string cursor;
  int64_t allocs = 0;
  for (auto _ : state) {
    const int64_t before = salvo::bench::Allocations();
    if (!store->ScanDue(0, Lane::kBulk, kNow, kBatch, &cursor, &out).ok()) {
      std::abort();
    }
    if (out.size() < kBatch) {  // wrapped: lease again from the start
      cursor.clear();
      if (!store->ScanDue(0, Lane::kBulk, kNow, kBatch, &cursor, &out).ok()) {
        std::abort();
      }
    }
    allocs += salvo::bench::Allocations() - before;
    benchmark::DoNotOptimize(out.data());
  }
  ReportAllocs(state, allocs);
}
BENCHMARK(BM_ScanDueLease)->UseRealTime();

// A block of `n` recipients of one domain (address and one field), as an
// upload stores it.
std::string OneDomainBlock(int n) {
  RecipientBlock block;
  block.set_content_id(1);
  block.set_accepted_ms(kNow);
  for (int i = 0; i < n; ++i) {
    Recipient* r = block.add_recipients();
    r->set_address("user" + std::to_string(i) + "@one.example");
    auto* f = r->add_fields();
    f->set_name("first_name");
    f->set_value("C" + std::to_string(i));
  }
  return block.SerializeAsString();
}

// As BM_ScanDueLease, over run entries (uploaded recipients): kBatch
// recipients a scan (a run of kMaxRunMembers counts its members); items are
// recipients.
void BM_ScanRunsLease(benchmark::State& state) {
  TempStore store(false);
  constexpr int kBlock = 10000;
  const std::string payload = OneDomainBlock(kBlock);
  uint16_t shard = 0;
  for (int b = 0; b < 10; ++b) {
    BlockKey key;
    key.lane = Lane::kBulk;
    key.due_ms = kNow;
    key.first_id = store->NextIds(kBlock);
    key.content_id = 1;
    key.count = kBlock;
    std::vector<bool> used(store->num_shards());
    StateBatch batch;
    if (!batch.ExpandBlock(key, payload, *store, &used).ok()) std::abort();
    if (!store->CommitNow(std::move(batch), false).ok()) std::abort();
    for (size_t i = 0; i < used.size(); ++i) {
      if (used[i]) shard = static_cast<uint16_t>(i);
    }
  }
  std::vector<QueueEntry> out;
  std::string cursor;
  int64_t allocs = 0;
  int64_t recipients = 0;
  for (auto _ : state) {
    const int64_t before = salvo::bench::Allocations();
    bool limited = false;
    if (!store->ScanDue(shard, Lane::kBulk, kNow, kBatch, &cursor, &out,
                        nullptr, kBatch, &limited)
             .ok()) {
      std::abort();
    }
    if (!limited) cursor.clear();  // wrapped: lease again from the start
    allocs += salvo::bench::Allocations() - before;
    for (const QueueEntry& e : out) recipients += e.rec.members_size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(recipients);
  state.counters["allocs/op"] =
      static_cast<double>(allocs) / std::max<int64_t>(1, recipients);
}
BENCHMARK(BM_ScanRunsLease)->UseRealTime();

// The expander's write: a block of kBlock recipients over 50 domains becomes
// run entries in 64 shards (one WriteBatch), into a memtable that already
// holds the previous blocks' runs; untimed, the runs of the block before the
// previous one are delivered as the loops do (each member's event, then the
// run's removal at each lane's front), so the store holds about two blocks,
// as with a window.
void BM_ExpandBlock(benchmark::State& state) {
  constexpr int kBlock = 10000;
  TempStore store(false);
  RecipientBlock block;
  block.set_content_id(1);
  block.set_accepted_ms(kNow);
  for (int i = 0; i < kBlock; ++i) {
    Recipient* r = block.add_recipients();
    r->set_address("user" + std::to_string(i) + "@d" + std::to_string(i % 50) +
                   ".example");
    auto* f = r->add_fields();
    f->set_name("first_name");
    f->set_value("C" + std::to_string(i));
  }
  const std::string payload = block.SerializeAsString();
  std::vector<std::vector<QueueEntry>> written;  // runs, per block
  std::set<uint64_t> seen;
  std::vector<bool> shard_used(store->num_shards());
  uint64_t first_id = 1;
  int64_t allocs = 0;
  for (auto _ : state) {
    BlockKey key;
    key.lane = Lane::kBulk;
    key.due_ms = kNow;
    key.first_id = first_id;
    key.content_id = 1;
    key.count = kBlock;
    first_id += kBlock;
    const int64_t before = salvo::bench::Allocations();
    StateBatch b;
    if (!b.ExpandBlock(key, payload, *store, &shard_used).ok()) std::abort();
    if (!store->WriteUnsynced(b).ok()) std::abort();
    allocs += salvo::bench::Allocations() - before;
    state.PauseTiming();
    // What was written, to deliver it two blocks later.
    std::vector<QueueEntry> runs;
    std::vector<QueueEntry> out;
    for (uint16_t shard = 0; shard < store->num_shards(); ++shard) {
      std::string cursor;
      if (!store->ScanDue(shard, Lane::kBulk, kNow, 1 << 20, &cursor, &out)
               .ok()) {
        std::abort();
      }
      for (QueueEntry& e : out) {
        if (seen.insert(e.key.id).second) runs.push_back(std::move(e));
      }
    }
    written.push_back(std::move(runs));
    if (written.size() > 2) {
      StateBatch acks;
      Outcome o;
      o.set_reply("250 ok");
      for (const QueueEntry& run : written.front()) {
        for (const Recipient& m : run.rec.members()) {
          QueueKey k = run.key;
          k.id = m.id();
          Recipient rec = m;
          rec.set_content_id(run.rec.content_id());
          acks.Delivered(k, rec, o, StateBatch::Entry::kRunMember);
        }
        acks.RemoveRun(run.key);
        seen.erase(run.key.id);
      }
      if (!store->WriteUnsynced(acks).ok()) std::abort();
      written.erase(written.begin());
    }
    state.ResumeTiming();
  }
  const double items = static_cast<double>(state.iterations()) * kBlock;
  state.SetItemsProcessed(static_cast<int64_t>(items));
  state.counters["allocs/op"] = allocs / items;
}
BENCHMARK(BM_ExpandBlock)->UseRealTime();

enum class Move { kDelivered, kDefer, kReschedule };

// Leases kBatch entries (untimed), then times building the final, deferred
// or rescheduled batch and its commit (durable or not). Moved entries go an
// hour ahead, out of the leased range.
template <Move kMove>
void BM_StateCommit(benchmark::State& state) {
  const bool durable = state.range(0) != 0;
  TempStore store(durable);
  std::vector<QueueEntry> leased;
  std::string cursor;
  Outcome outcome;
  outcome.set_at_ms(kNow);
  outcome.set_remote_host("mx1.example.com");
  outcome.set_reply(kMove == Move::kDefer ? "451 4.7.1 try later"
                                         : "250 2.0.0 ok");
  Reschedule later;
  later.due_ms = kNow + 3'600'000;
  later.expires_after_ms = 72 * 3'600'000ll;
  int64_t allocs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    if (!store->ScanDue(0, Lane::kBulk, kNow, kBatch, &cursor, &leased).ok()) {
      std::abort();
    }
    if (leased.size() < kBatch) {
      Fill(*store, 20 * kBatch);
      if (!store->ScanDue(0, Lane::kBulk, kNow, kBatch, &cursor, &leased)
               .ok()) {
        std::abort();
      }
    }
    state.ResumeTiming();
    const int64_t before = salvo::bench::Allocations();
    StateBatch b;
    for (QueueEntry& e : leased) {
      if (kMove == Move::kDefer) {
        b.Defer(e.key, e.rec, kNow + 3'600'000, outcome);
      } else if (kMove == Move::kReschedule) {
        AddReschedule(later, &e, &b);
      } else {
        b.Delivered(e.key, e.rec, outcome);
      }
    }
    if (!store->CommitNow(std::move(b), durable).ok()) std::abort();
    allocs += salvo::bench::Allocations() - before;
  }
  ReportAllocs(state, allocs);
}
BENCHMARK(BM_StateCommit<Move::kDelivered>)
    ->Name("BM_DeliveredCommit")
    ->ArgName("durable")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK(BM_StateCommit<Move::kDefer>)
    ->Name("BM_DeferCommit")
    ->ArgName("durable")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK(BM_StateCommit<Move::kReschedule>)
    ->Name("BM_RescheduleCommit")
    ->ArgName("durable")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();

// Group commit under concurrency: 8 submitters, durable batches of 10.
void BM_EnqueueDurableConcurrent(benchmark::State& state) {
  static TempStore* shared = nullptr;
  if (state.thread_index() == 0) shared = new TempStore(true);
  std::vector<Recipient> recs;
  for (int i = 0; i < 10; ++i) recs.push_back(MakeRecipient(i));
  // The loop starts and ends on a barrier across threads, so `shared` is set
  // before any thread uses it and unused once thread 0 deletes it.
  for (auto _ : state) {
    StateBatch b;
    for (const Recipient& rec : recs) {
      b.Enqueue({0, Lane::kBulk, kNow, (*shared)->NextId()}, rec);
    }
    if (!(*shared)->CommitNow(std::move(b), true).ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * 10);
  if (state.thread_index() == 0) {
    state.counters["commits/sync"] =
        static_cast<double>((*shared)->commits()) /
        static_cast<double>((*shared)->syncs());
    delete shared;
    shared = nullptr;
  }
}
BENCHMARK(BM_EnqueueDurableConcurrent)->Threads(8)->UseRealTime();

}  // namespace
}  // namespace salvo::storage

BENCHMARK_MAIN();
