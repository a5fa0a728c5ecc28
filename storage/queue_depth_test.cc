// Tests of the per-(shard, lane) depth counters ('D' keys) on a real RocksDB
// under $TEST_TMPDIR: QueueDepth() equals a full count of the queue after
// every kind of state change, across a reopen, and after the one-time count
// that upgrades a store written without counters; the same for the total of
// entries waiting for a retry (DeferredTotal, the sum of the deferred gauges). And of the per-content
// counters ('N') that GetCounts serves from memory: exact against the stored
// counters while writers and readers race, with evictions.
#include <stdlib.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/queue_store.h"
#include "storage/test_util.h"

namespace salvo::storage {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr int kShards = 8;

std::string FreshDir() { return storage::FreshDbPath("depth"); }

std::unique_ptr<QueueStore> OpenOrDie(const std::string& path) {
  QueueStore::Options o;
  o.path = path;
  o.num_shards = kShards;
  auto store = QueueStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

// QueueDepth of every shard must equal the O(entries) count, and the sum
// must be `want`.
void ExpectExact(QueueStore& store, int64_t want) {
  int64_t total = 0;
  for (int s = 0; s < kShards; ++s) {
    auto depth = store.QueueDepth(static_cast<uint16_t>(s));
    auto stored = store.StoredQueueDepth(static_cast<uint16_t>(s));
    auto counted = store.CountQueued(static_cast<uint16_t>(s));
    ASSERT_TRUE(depth.ok()) << depth.status();
    ASSERT_TRUE(stored.ok()) << stored.status();
    ASSERT_TRUE(counted.ok()) << counted.status();
    EXPECT_EQ(*depth, *counted) << "shard " << s;
    EXPECT_EQ(*stored, *counted) << "shard " << s;
    total += *depth;
  }
  EXPECT_EQ(total, want);
  auto sum = store.TotalDepth();
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, want);
  // The entries waiting for a retry: the sum of the contents' gauges.
  int64_t deferred = 0;
  for (uint64_t content = 1; content <= 5; ++content) {
    auto counts = store.GetCounts(content);
    ASSERT_TRUE(counts.ok()) << counts.status();
    deferred += counts->deferred;
  }
  // After a churn some wait: the check means something.
  if (want > 0) EXPECT_GT(deferred, 0);
  EXPECT_EQ(store.DeferredTotal(), deferred);
}

// Enqueues `n` entries over every shard and both lanes, then moves a seeded
// random part of them through defer, requeue and every final state. Returns
// how many stay queued.
int64_t Churn(QueueStore& store, int n, uint32_t seed,
              bool unsynced = false) {
  std::vector<QueueEntry> entries;
  StateBatch enqueue;
  for (int i = 0; i < n; ++i) {
    QueueEntry e;
    e.key.shard = static_cast<uint16_t>(i % kShards);
    e.key.lane = i % 3 == 0 ? Lane::kTransactional : Lane::kBulk;
    e.key.due_ms = kNow + i;
    e.key.id = store.NextId();
    e.rec.set_content_id(1 + i % 5);
    e.rec.set_address("r" + std::to_string(i) + "@example.com");
    enqueue.Enqueue(e.key, e.rec);
    entries.push_back(std::move(e));
  }
  EXPECT_TRUE(store.CommitNow(std::move(enqueue), true).ok());

  std::mt19937 rng(seed);
  Outcome o;
  o.set_at_ms(kNow);
  o.set_reply("250 ok");
  int64_t queued = n;
  std::vector<QueueEntry*> deferred;
  StateBatch batch;
  for (QueueEntry& e : entries) {
    switch (rng() % 7) {
      case 0:
        e.key = batch.Defer(e.key, e.rec, kNow + 60'000, o);
        e.rec.set_deferred(true);
        deferred.push_back(&e);
        break;
      case 1: e.key = batch.Requeue(e.key, e.rec, kNow + 5'000); break;
      case 2: batch.Delivered(e.key, e.rec, o); --queued; break;
      case 3: batch.Bounced(e.key, e.rec, o); --queued; break;
      case 4: batch.Expired(e.key, e.rec, o); --queued; break;
      case 5: batch.Cancelled(e.key, e.rec, o); --queued; break;
      default: break;  // stays where it is
    }
  }
  if (unsynced) {
    // A loop's write (the in-memory depth follows it too).
    EXPECT_TRUE(store.WriteUnsynced(batch).ok());
  } else {
    EXPECT_TRUE(store.CommitNow(std::move(batch), true).ok());
  }
  // Half of the deferred ones succeed on their retry (leaving the gauge).
  StateBatch retried;
  for (size_t i = 0; i < deferred.size(); i += 2) {
    retried.Delivered(deferred[i]->key, deferred[i]->rec, o);
    --queued;
  }
  EXPECT_TRUE(store.CommitNow(std::move(retried), true).ok());
  return queued;
}

TEST(QueueDepthTest, ExactAfterEveryStateChangeAndAcrossReopen) {
  const std::string path = FreshDir();
  int64_t queued = 0;
  {
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    ExpectExact(*store, 0);
    queued = Churn(*store, 3000, 42);
    ASSERT_GT(queued, 0);
    ASSERT_LT(queued, 3000);
    ExpectExact(*store, queued);
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  ExpectExact(*store, queued);
  queued += Churn(*store, 1000, 7);
  ExpectExact(*store, queued);
  queued += Churn(*store, 1000, 8, /*unsynced=*/true);
  ExpectExact(*store, queued);
}

TEST(QueueDepthTest, StoreWithoutCountersIsCountedOnceAtOpen) {
  const std::string path = FreshDir();
  int64_t queued = 0;
  {
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    queued = Churn(*store, 2000, 3);
    // Make it look like a store written before the counters existed.
    rocksdb::WriteBatch wipe;
    ASSERT_TRUE(wipe.DeleteRange("D", "E").ok());
    ASSERT_TRUE(wipe.Delete("Mdepth_counters").ok());
    ASSERT_TRUE(wipe.Delete("Mdeferred_total").ok());
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(store->db()->Write(wo, &wipe).ok());
    auto depth = store->StoredQueueDepth(0);
    ASSERT_TRUE(depth.ok());
    EXPECT_EQ(*depth, 0);  // the wipe worked: nothing counted any more
    std::string total;
    EXPECT_TRUE(store->db()
                    ->Get(rocksdb::ReadOptions(), "Mdeferred_total", &total)
                    .IsNotFound());
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  ExpectExact(*store, queued);
  queued += Churn(*store, 500, 4);
  ExpectExact(*store, queued);
}

constexpr int kContents = 5;

// Expected counters per content (1..kContents), as the writers made them.
struct Expected {
  std::atomic<int64_t> v[kContents + 1][kNumCounters] = {};
  void Add(uint64_t content, Counter c) {
    v[content][static_cast<int>(c)].fetch_add(1, std::memory_order_relaxed);
  }
};

// One writer: `rounds` times, enqueues `n` entries over the contents, then
// sends each through one seeded random state change, through the loops'
// path (WriteUnsynced) or the committer's, as the seed picks.
void CountedChurn(QueueStore& store, int rounds, int n, uint32_t seed,
                  Expected* want) {
  std::mt19937 rng(seed);
  Outcome o;
  o.set_at_ms(kNow);
  o.set_reply("250 ok");
  auto write = [&](StateBatch& batch) {
    if (rng() % 2 == 0) {
      absl::Status s = store.WriteUnsynced(batch);
      if (!absl::IsUnavailable(s)) {
        EXPECT_TRUE(s.ok()) << s;
        return;
      }
    }
    EXPECT_TRUE(store.CommitNow(std::move(batch), false).ok());
  };
  for (int r = 0; r < rounds; ++r) {
    std::vector<QueueEntry> entries(n);
    StateBatch enqueue;
    for (QueueEntry& e : entries) {
      e.key.shard = static_cast<uint16_t>(rng() % kShards);
      e.key.lane = Lane::kBulk;
      e.key.due_ms = kNow;
      e.key.id = store.NextId();
      e.rec.set_content_id(1 + rng() % kContents);
      e.rec.set_address("r@example.com");
      enqueue.Enqueue(e.key, e.rec);
      want->Add(e.rec.content_id(), Counter::kAccepted);
    }
    write(enqueue);
    StateBatch batch;
    for (QueueEntry& e : entries) {
      const uint64_t c = e.rec.content_id();
      switch (rng() % 6) {
        case 0:
          batch.Defer(e.key, e.rec, kNow + 60'000, o);
          want->Add(c, Counter::kDeferred);
          break;
        case 1: batch.Delivered(e.key, e.rec, o); want->Add(c, Counter::kDelivered); break;
        case 2: batch.Bounced(e.key, e.rec, o); want->Add(c, Counter::kBounced); break;
        case 3: batch.Expired(e.key, e.rec, o); want->Add(c, Counter::kExpired); break;
        case 4: batch.Cancelled(e.key, e.rec, o); want->Add(c, Counter::kCancelled); break;
        default: break;
      }
    }
    write(batch);
  }
}

void ExpectCounts(const Counts& got, const Expected& want, uint64_t content,
                  const char* what) {
  auto w = [&](Counter c) {
    return want.v[content][static_cast<int>(c)].load();
  };
  EXPECT_EQ(got.accepted, w(Counter::kAccepted)) << what << " " << content;
  EXPECT_EQ(got.delivered, w(Counter::kDelivered)) << what << " " << content;
  EXPECT_EQ(got.bounced, w(Counter::kBounced)) << what << " " << content;
  EXPECT_EQ(got.expired, w(Counter::kExpired)) << what << " " << content;
  EXPECT_EQ(got.deferred, w(Counter::kDeferred)) << what << " " << content;
  EXPECT_EQ(got.cancelled, w(Counter::kCancelled)) << what << " " << content;
}

TEST(CountsMirrorTest, ExactWhileWritersAndReadersRaceWithEvictions) {
  QueueStore::Options o;
  o.path = FreshDir();
  o.num_shards = kShards;
  o.counts_mirror_contents = 3;  // 5 contents: reads evict and reload
  auto opened = QueueStore::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  QueueStore& store = **opened;
  Expected want;
  std::atomic<bool> done{false};
  std::atomic<int64_t> reads{0};
  auto read = [&](uint32_t seed) {
    std::mt19937 rng(seed);
    while (!done.load()) {
      auto c = store.GetCounts(1 + rng() % kContents);
      ASSERT_TRUE(c.ok()) << c.status();
      // Counters only grow here (no final ever follows a deferral).
      ASSERT_GE(c->accepted, c->delivered + c->bounced + c->expired +
                                 c->cancelled);
      reads.fetch_add(1);
    }
  };
  std::thread reader1(read, 98), reader2(read, 99);
  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < 3; ++w) {
    writers.emplace_back(
        [&, w] { CountedChurn(store, 300, 10, 1000 + w, &want); });
  }
  for (auto& t : writers) t.join();
  done.store(true);
  reader1.join();
  reader2.join();
  EXPECT_GT(reads.load(), 10);
  // Reads loaded contents while the writers ran (and evicted them again).
  const int64_t racing_loads = store.counts_loads();
  EXPECT_GT(racing_loads, 5);
  for (uint64_t c = 1; c <= kContents; ++c) {
    auto stored = store.StoredCounts(c);
    ASSERT_TRUE(stored.ok()) << stored.status();
    ExpectCounts(*stored, want, c, "stored");
    auto got = store.GetCounts(c);
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectCounts(*got, want, c, "mirror");
    // A second read comes from memory and still agrees.
    got = store.GetCounts(c);
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectCounts(*got, want, c, "mirror again");
  }
}

}  // namespace
}  // namespace salvo::storage
