// Recipient blocks: PutBlock, the expansion window, pause/cancel/reschedule
// of blocks, the packed ACCEPTED events listed one per recipient by
// ScanEvents, and power loss (acknowledged block recipients survive, an
// expansion is atomic). Real RocksDB in a temp dir; fixed clocks.
#include "storage/block_expander.h"

#include <stdlib.h>

#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/write_batch.h"
#include "storage/fault_env.h"
#include "storage/queue_store.h"

namespace salvo::storage {
namespace {

constexpr int kShards = 8;
constexpr uint64_t kContent = 7;
constexpr int64_t kNow = 1'800'000'000'000;

std::string TempDir() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ = std::string(tmp ? tmp : "/tmp") + "/blocks_XXXXXX";
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ;
}

std::string Address(int i) {
  return "u" + std::to_string(i) + "@d" + std::to_string(i % 5) + ".example";
}

class BlocksTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(TempDir() + "/db"); }
  void Open(const std::string& path, rocksdb::Env* env = nullptr) {
    QueueStore::Options o;
    o.path = path;
    o.num_shards = kShards;
    o.block_cache_bytes = 4 << 20;
    o.env = env;
    auto s = QueueStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  // One block of n recipients (address + field "n") for `content`; returns
  // its first id.
  uint64_t PutBlock(int n, int64_t due = kNow, uint64_t content = kContent,
                    Lane lane = Lane::kBulk, int base = 0) {
    std::vector<Recipient> recs(n);
    std::vector<const Recipient*> ptrs;
    for (int i = 0; i < n; ++i) {
      recs[i].set_address(Address(base + i));
      Field* f = recs[i].add_fields();
      f->set_name("n");
      f->set_value(std::to_string(base + i));
      ptrs.push_back(&recs[i]);
    }
    const uint64_t first = store_->NextIds(n);
    StateBatch batch;
    batch.PutBlock(lane, due, content, first, kNow - 5, due + 1000, ptrs);
    EXPECT_TRUE(store_->CommitNow(std::move(batch), true).ok());
    return first;
  }

  // Every queue entry as stored (runs whole), by key id.
  std::map<uint64_t, QueueEntry> Stored() {
    std::map<uint64_t, QueueEntry> all;
    for (int s = 0; s < kShards; ++s) {
      for (int l = 0; l < kNumLanes; ++l) {
        std::string cursor;
        std::vector<QueueEntry> out;
        EXPECT_TRUE(store_->ScanDue(s, static_cast<Lane>(l), INT64_MAX,
                                    1 << 20, &cursor, &out)
                        .ok());
        for (QueueEntry& e : out) all[e.key.id] = e;
      }
    }
    return all;
  }

  // Every queued recipient by recipient id, as the delivery loop leases
  // them: a run's members one by one (key: the run's shard, lane and due
  // time with the member's id; content, accept time and expiry the run's),
  // and in *run_of (if given) the key of the run each came from.
  std::map<uint64_t, QueueEntry> Queued(
      std::map<uint64_t, QueueKey>* run_of = nullptr) {
    std::map<uint64_t, QueueEntry> all;
    for (auto& [id, e] : Stored()) {
      if (!IsRun(e.rec)) {
        all[id] = e;
        continue;
      }
      for (const Recipient& m : e.rec.members()) {
        QueueEntry& member = all[m.id()];
        member.key = e.key;
        member.key.id = m.id();
        member.rec = m;
        member.rec.clear_id();
        member.rec.set_content_id(e.rec.content_id());
        member.rec.set_accepted_ms(e.rec.accepted_ms());
        member.rec.set_expires_ms(e.rec.expires_ms());
        if (run_of != nullptr) (*run_of)[m.id()] = e.key;
      }
    }
    return all;
  }

  // Delivers the first n recipients of Queued() (in id order) in one batch,
  // as the loop does: run members leave their run's key, and each run whose
  // members are then all done is removed in a second batch.
  void Deliver(int n) {
    std::map<uint64_t, QueueKey> run_of;
    std::map<uint64_t, QueueEntry> entries = Queued(&run_of);
    std::map<uint64_t, std::pair<QueueKey, int>> open;  // run id -> left
    for (const auto& [id, key] : run_of) {
      auto& [k, left] = open[key.id];
      k = key;
      ++left;
    }
    StateBatch batch;
    for (auto& [id, e] : entries) {
      if (n-- == 0) break;
      Outcome o;
      o.set_at_ms(kNow);
      auto run = run_of.find(id);
      batch.Delivered(e.key, e.rec, o,
                      run == run_of.end() ? StateBatch::Entry::kOwn
                                          : StateBatch::Entry::kRunMember);
      if (run != run_of.end()) --open[run->second.id].second;
    }
    ASSERT_TRUE(store_->CommitNow(std::move(batch), true).ok());
    StateBatch removals;
    for (const auto& [id, run] : open) {
      if (run.second == 0) removals.RemoveRun(run.first);
    }
    if (!removals.empty()) {
      ASSERT_TRUE(store_->CommitNow(std::move(removals), true).ok());
    }
  }

  std::vector<QueueStore::EventEntry> Events(uint64_t recipient = 0,
                                             size_t page = 1000) {
    std::vector<QueueStore::EventEntry> all;
    std::string after;
    for (;;) {
      std::vector<QueueStore::EventEntry> out;
      std::string last;
      bool more = false;
      EXPECT_TRUE(store_
                      ->ScanEvents(kContent, recipient, after, page, 1 << 20,
                                   nullptr, &out, &last, &more)
                      .ok());
      all.insert(all.end(), out.begin(), out.end());
      if (!more) break;
      after = last;
    }
    return all;
  }

  std::unique_ptr<QueueStore> store_;
};

TEST_F(BlocksTest, BlockIsAcceptedButNotQueued) {
  const uint64_t first = PutBlock(10);
  auto counts = store_->GetCounts(kContent);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->accepted, 10);
  EXPECT_EQ(counts->pending(), 10);
  EXPECT_EQ(*store_->BlockedRecipients(), 10);
  EXPECT_EQ(*store_->TotalDepth(), 0);
  EXPECT_TRUE(Queued().empty());
  std::vector<BlockKey> keys;
  ASSERT_TRUE(store_->ContentBlocks(kContent, &keys).ok());
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].first_id, first);
  EXPECT_EQ(keys[0].count, 10u);
  EXPECT_EQ(keys[0].expires_ms, kNow + 1000);
  auto block = store_->GetBlock(keys[0]);
  ASSERT_TRUE(block.ok()) << block.status();
  EXPECT_EQ(block->recipients(3).address(), Address(3));
  EXPECT_EQ(block->recipients(3).fields(0).value(), "3");
}

// Expansion copies recipients out of the stored bytes without parsing them
// into messages: a damaged payload, or one that holds another number of
// recipients than its index says, is refused whole.
TEST_F(BlocksTest, DamagedPayloadsAreRefusedWhole) {
  PutBlock(10);
  std::vector<BlockKey> keys;
  ASSERT_TRUE(store_->ContentBlocks(kContent, &keys).ok());
  ASSERT_EQ(keys.size(), 1u);
  std::string payload;
  ASSERT_TRUE(store_->GetBlockPayload(keys[0], &payload).ok());
  std::vector<bool> shards(store_->num_shards());
  {
    StateBatch ok;
    ASSERT_TRUE(ok.ExpandBlock(keys[0], payload, *store_, &shards).ok());
    EXPECT_GE(ok.Finish()->Count(), 2u + 5u);  // block, runs, depths
  }
  BlockKey wrong_count = keys[0];
  wrong_count.count = 11;
  const std::string truncated = payload.substr(0, payload.size() - 3);
  // An 11th recipient whose address claims 127 bytes and has none.
  const std::string bad_inner = payload + std::string("\x22\x02\x12\x7f", 4);
  for (const auto& [key, bytes] :
       {std::pair<BlockKey, std::string>{wrong_count, payload},
        {keys[0], truncated},
        {wrong_count, bad_inner}}) {
    StateBatch b;
    const absl::Status s = b.ExpandBlock(key, bytes, *store_, &shards);
    EXPECT_TRUE(absl::IsDataLoss(s)) << s;
    EXPECT_EQ(b.Finish()->Count(), 0u);
  }
}

TEST_F(BlocksTest, NextIdsAreContiguousAndUnique) {
  const uint64_t a = store_->NextIds(100);
  const uint64_t b = store_->NextId();
  const uint64_t c = store_->NextIds(5);
  EXPECT_EQ(b, a + 100);
  EXPECT_EQ(c, b + 1);
}

TEST_F(BlocksTest, ExpandsWholeBlocksWhileDepthIsBelowTheWindow) {
  std::vector<uint64_t> firsts;
  for (int b = 0; b < 5; ++b) firsts.push_back(PutBlock(10, kNow, kContent,
                                                        Lane::kBulk, b * 10));
  std::set<uint16_t> woken;
  BlockExpander ex(store_.get(), {/*window=*/25, /*horizon_ms=*/0},
                   [&](uint16_t shard, Lane lane, int64_t due, uint64_t after) {
                     EXPECT_EQ(lane, Lane::kBulk);
                     EXPECT_EQ(due, kNow);
                     EXPECT_LT(after, firsts.back() + 10);
                     woken.insert(shard);
                   });
  auto n = ex.Pass(kNow);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 30);  // 0, 10, 20 < 25: three blocks
  EXPECT_EQ(*store_->TotalDepth(), 30);
  EXPECT_EQ(*store_->BlockedRecipients(), 20);
  EXPECT_FALSE(woken.empty());
  auto q = Queued();
  ASSERT_EQ(q.size(), 30u);
  for (int i = 0; i < 30; ++i) {
    const uint64_t id = firsts[i / 10] + i % 10;
    ASSERT_EQ(q.count(id), 1u) << i;
    const QueueEntry& e = q[id];
    EXPECT_EQ(e.rec.address(), Address(i));
    EXPECT_EQ(e.rec.content_id(), kContent);
    EXPECT_EQ(e.rec.accepted_ms(), kNow - 5);
    EXPECT_EQ(e.rec.expires_ms(), kNow + 1000);
    ASSERT_EQ(e.rec.fields_size(), 1);
    EXPECT_EQ(e.rec.fields(0).value(), std::to_string(i));
    EXPECT_EQ(e.key.shard, store_->ShardForDomain(
                               Address(i).substr(Address(i).find('@') + 1)));
    EXPECT_EQ(woken.count(e.key.shard), 1u);
  }
  // Full window: nothing more until entries become final.
  EXPECT_EQ(*ex.Pass(kNow), 0);
  // Deliver 10: depth 20 < 25 lets one more block in (30), then it is full.
  Deliver(10);
  EXPECT_EQ(*ex.Pass(kNow), 10);
  EXPECT_EQ(*ex.Pass(kNow), 0);
  EXPECT_EQ(*store_->TotalDepth(), 30);
  Deliver(30);
  EXPECT_EQ(*ex.Pass(kNow), 10);
  EXPECT_EQ(*store_->BlockedRecipients(), 0);
  auto counts = store_->GetCounts(kContent);
  EXPECT_EQ(counts->accepted, 50);
  EXPECT_EQ(counts->delivered, 40);
  EXPECT_EQ(Queued().size(), 10u);
  for (int s = 0; s < kShards; ++s) {
    EXPECT_EQ(*store_->CountQueued(s), *store_->QueueDepth(s)) << s;
  }
}

// A block becomes one run entry per shard (at most kMaxRunMembers members
// each, in upload order), not one entry per recipient; the depth counts
// members.
TEST_F(BlocksTest, BlocksBecomeRunsOfOneShardEach) {
  constexpr int kN = 1500;  // 300 per domain: more than one run a shard
  const uint64_t first = PutBlock(kN);
  BlockExpander ex(store_.get(), {/*window=*/1 << 20, 0}, nullptr);
  ASSERT_EQ(*ex.Pass(kNow), kN);
  std::map<uint16_t, int> per_shard;
  for (int i = 0; i < kN; ++i) {
    const std::string a = Address(i);
    ++per_shard[store_->ShardForDomain(a.substr(a.find('@') + 1))];
  }
  size_t want_runs = 0;
  for (const auto& [shard, n] : per_shard) {
    want_runs += (n + kMaxRunMembers - 1) / kMaxRunMembers;
    EXPECT_EQ(*store_->QueueDepth(shard), n) << shard;
  }
  auto stored = Stored();
  ASSERT_EQ(stored.size(), want_runs);
  std::set<uint64_t> ids;
  for (const auto& [run_id, e] : stored) {
    ASSERT_TRUE(IsRun(e.rec));
    EXPECT_LE(e.rec.members_size(), kMaxRunMembers);
    EXPECT_EQ(e.rec.epoch(), store_->epoch());
    EXPECT_EQ(e.rec.content_id(), kContent);
    EXPECT_EQ(e.rec.accepted_ms(), kNow - 5);
    EXPECT_EQ(e.rec.expires_ms(), kNow + 1000);
    EXPECT_EQ(e.key.due_ms, kNow);
    EXPECT_GT(run_id, first + kN - 1);  // fresh ids
    EXPECT_TRUE(e.rec.address().empty());
    uint64_t last = 0;
    for (const Recipient& m : e.rec.members()) {
      const int i = static_cast<int>(m.id() - first);
      ASSERT_GE(i, 0);
      ASSERT_LT(i, kN);
      EXPECT_GT(m.id(), last);  // upload order
      last = m.id();
      EXPECT_EQ(m.address(), Address(i));
      ASSERT_EQ(m.fields_size(), 1);
      EXPECT_EQ(m.fields(0).value(), std::to_string(i));
      const std::string& a = m.address();
      EXPECT_EQ(e.key.shard, store_->ShardForDomain(a.substr(a.find('@') + 1)));
      EXPECT_TRUE(ids.insert(m.id()).second);
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kN));
  for (int s = 0; s < kShards; ++s) {
    EXPECT_EQ(*store_->CountQueued(s), *store_->QueueDepth(s)) << s;
  }
}

// A member's outcome leaves its run's key alone (the run is removed once
// every member is done); a deferred member becomes an entry of its own. A
// member with a stored event reads as done (MembersWithEvents).
TEST_F(BlocksTest, RunMembersFinishApartFromTheirRun) {
  PutBlock(40);
  BlockExpander ex(store_.get(), {1 << 20, 0}, nullptr);
  ASSERT_EQ(*ex.Pass(kNow), 40);
  auto stored = Stored();
  const QueueEntry* run = nullptr;
  for (const auto& [id, e] : stored) {
    if (e.rec.members_size() >= 3) run = &e;
  }
  ASSERT_NE(run, nullptr);
  const QueueKey run_key = run->key;
  const uint16_t shard = run_key.shard;
  const int64_t depth = *store_->QueueDepth(shard);
  std::vector<uint64_t> ids;
  for (const Recipient& m : run->rec.members()) ids.push_back(m.id());
  auto queued = Queued();
  const QueueEntry m0 = queued[ids[0]];
  const QueueEntry m1 = queued[ids[1]];

  StateBatch batch;
  Outcome delivered;
  delivered.set_at_ms(kNow);
  delivered.set_reply("250 ok");
  batch.Delivered(m0.key, m0.rec, delivered, StateBatch::Entry::kRunMember);
  Outcome later;
  later.set_at_ms(kNow);
  later.set_reply("451 later");
  const QueueKey own =
      batch.Defer(m1.key, m1.rec, kNow + 100, later,
                  StateBatch::Entry::kRunMember);
  ASSERT_TRUE(store_->CommitNow(std::move(batch), true).ok());
  EXPECT_EQ(*store_->QueueDepth(shard), depth - 1);  // the deferral stays
  stored = Stored();
  EXPECT_EQ(stored.count(run_key.id), 1u);  // the run is still there
  ASSERT_EQ(stored.count(ids[1]), 1u);      // and the deferred member
  const QueueEntry& d = stored[ids[1]];
  EXPECT_EQ(d.key.due_ms, kNow + 100);
  EXPECT_EQ(d.key.shard, shard);
  EXPECT_FALSE(IsRun(d.rec));
  EXPECT_EQ(d.rec.address(), m1.rec.address());
  EXPECT_EQ(d.rec.attempts(), 1u);
  EXPECT_TRUE(d.rec.deferred());
  EXPECT_EQ(own.id, ids[1]);
  EXPECT_EQ(store_->GetCounts(kContent)->deferred, 1);

  std::vector<bool> has;
  ASSERT_TRUE(store_->MembersWithEvents(kContent, ids, &has).ok());
  ASSERT_EQ(has.size(), ids.size());
  EXPECT_TRUE(has[0]);
  EXPECT_TRUE(has[1]);
  for (size_t i = 2; i < ids.size(); ++i) EXPECT_FALSE(has[i]) << i;
  // Another content's events do not count.
  ASSERT_TRUE(store_->MembersWithEvents(kContent + 1, ids, &has).ok());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_FALSE(has[i]) << i;

  StateBatch removal;
  removal.RemoveRun(run_key);
  ASSERT_TRUE(store_->CommitNow(std::move(removal), true).ok());
  EXPECT_EQ(Stored().count(run_key.id), 0u);
  EXPECT_EQ(*store_->QueueDepth(shard), depth - 1);  // counts nothing
}

TEST_F(BlocksTest, EveryOpenHasTheNextEpoch) {
  QueueStore::Options o;
  o.path = TempDir() + "/db";
  o.num_shards = kShards;
  uint64_t last = 0;
  for (int i = 0; i < 3; ++i) {
    auto s = QueueStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    if (i > 0) {
      EXPECT_EQ((*s)->epoch(), last + 1);
    }
    last = (*s)->epoch();
  }
  EXPECT_EQ(last, 3u);
}

TEST_F(BlocksTest, FutureBlocksWaitAndLanesShareTheWindow) {
  PutBlock(4, kNow + 60'000);
  PutBlock(4, kNow, kContent, static_cast<Lane>(2), 100);
  PutBlock(4, kNow, kContent, static_cast<Lane>(2), 200);
  PutBlock(4, kNow, kContent, static_cast<Lane>(3), 300);
  BlockExpander ex(store_.get(), {/*window=*/6, /*horizon_ms=*/1000},
                   nullptr);
  // Round robin: lane 2's first block, then lane 3's (depth 4 < 6), then
  // the window is full; lane 1's block is not due.
  EXPECT_EQ(*ex.Pass(kNow), 8);
  auto q = Queued();
  std::set<std::string> addresses;
  for (auto& [id, e] : q) addresses.insert(e.rec.address());
  EXPECT_EQ(addresses.count(Address(100)), 1u);
  EXPECT_EQ(addresses.count(Address(300)), 1u);
  EXPECT_EQ(addresses.count(Address(200)), 0u);
  EXPECT_EQ(addresses.count(Address(0)), 0u);
  BlockExpander wide(store_.get(), {/*window=*/100, /*horizon_ms=*/1000},
                     nullptr);
  EXPECT_EQ(*wide.Pass(kNow), 4);
  EXPECT_EQ(*wide.Pass(kNow + 59'000), 4);  // within the horizon
  EXPECT_EQ(*store_->BlockedRecipients(), 0);
}

TEST_F(BlocksTest, PausedBlocksStayCancelledBlocksBecomeCancelled) {
  PutBlock(5);
  PutBlock(3, kNow, /*content=*/9, Lane::kBulk, 50);
  StateBatch st;
  st.SetContentState(kContent, ContentState::kPaused);
  ASSERT_TRUE(store_->CommitNow(std::move(st), true).ok());
  BlockExpander ex(store_.get(), {100, 0}, nullptr);
  EXPECT_EQ(*ex.Pass(kNow), 3);  // only content 9
  EXPECT_EQ(*store_->BlockedRecipients(), 5);
  StateBatch cancel;
  cancel.SetContentState(kContent, ContentState::kCancelled);
  ASSERT_TRUE(store_->CommitNow(std::move(cancel), true).ok());
  EXPECT_EQ(*ex.Pass(kNow), 0);
  EXPECT_EQ(*store_->BlockedRecipients(), 0);
  auto counts = store_->GetCounts(kContent);
  EXPECT_EQ(counts->accepted, 5);
  EXPECT_EQ(counts->cancelled, 5);
  EXPECT_EQ(counts->pending(), 0);
  // Accepted then cancelled, per recipient, in id order.
  auto events = Events();
  ASSERT_EQ(events.size(), 10u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(events[2 * i].event.state(), Event::ACCEPTED);
    EXPECT_EQ(events[2 * i + 1].event.state(), Event::CANCELLED);
    EXPECT_EQ(events[2 * i + 1].recipient_id, events[2 * i].recipient_id);
    EXPECT_EQ(events[2 * i + 1].event.address(), Address(i));
    auto o = store_->GetOutcome(kContent, events[2 * i].recipient_id);
    ASSERT_TRUE(o.ok() && o->has_value());
    EXPECT_EQ((*o)->state(), Outcome::CANCELLED);
  }
}

TEST_F(BlocksTest, CancelsAreBoundedPerPassAndPerCall) {
  for (int b = 0; b < 7; ++b) PutBlock(2, kNow, kContent, Lane::kBulk, b * 2);
  const uint64_t live = PutBlock(3, kNow, /*content=*/9, Lane::kBulk, 100);
  StateBatch cancel;
  cancel.SetContentState(kContent, ContentState::kCancelled);
  ASSERT_TRUE(store_->CommitNow(std::move(cancel), true).ok());
  BlockExpander ex(store_.get(), {100, 0, /*max_cancels_per_pass=*/4},
                   nullptr);
  // The live block behind the cancelled ones is expanded in the same pass.
  EXPECT_EQ(*ex.Pass(kNow), 3);
  EXPECT_EQ(Queued().count(live), 1u);
  EXPECT_EQ(Queued().size(), 3u);
  EXPECT_EQ(store_->GetCounts(kContent)->cancelled, 8);
  bool more = false;
  EXPECT_EQ(*ex.CancelContent(kContent, kNow, 2, &more), 4);
  EXPECT_TRUE(more);
  EXPECT_EQ(*ex.CancelContent(kContent, kNow, 2, &more), 2);
  EXPECT_FALSE(more);
  EXPECT_EQ(store_->GetCounts(kContent)->cancelled, 14);
  EXPECT_EQ(store_->GetCounts(kContent)->pending(), 0);
}

TEST_F(BlocksTest, CancelContentSweepsFutureBlocks) {
  PutBlock(5, kNow + 3'600'000);
  PutBlock(2, kNow + 7'200'000, kContent, Lane::kBulk, 10);
  BlockExpander ex(store_.get(), {100, 0}, nullptr);
  auto n = ex.CancelContent(kContent, kNow);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 7);
  EXPECT_EQ(store_->GetCounts(kContent)->cancelled, 7);
  EXPECT_EQ(*store_->BlockedRecipients(), 0);
}

TEST_F(BlocksTest, RescheduleMovesBlocksAndTheirExpiry) {
  PutBlock(5);
  PutBlock(5, kNow, /*content=*/9, Lane::kBulk, 10);
  BlockExpander ex(store_.get(), {100, 0}, nullptr);
  Reschedule r;
  r.due_ms = kNow + 3'600'000;
  r.expires_after_ms = 60'000;
  auto moved = ex.RescheduleContent(kContent, r);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 5);
  EXPECT_EQ(*ex.Pass(kNow), 5);  // content 9 only
  EXPECT_EQ(*ex.Pass(r.due_ms), 5);
  for (auto& [id, e] : Queued()) {
    if (e.rec.content_id() != kContent) continue;
    EXPECT_EQ(e.key.due_ms, r.due_ms);
    EXPECT_EQ(e.rec.expires_ms(), r.due_ms + 60'000);
  }
}

TEST_F(BlocksTest, PackedAcceptedEventsListPerRecipientInOrder) {
  // A suppressed-at-accept recipient before the block, a block of 6, a
  // delivered event of the block's 3rd recipient, another block of 2.
  StateBatch sup;
  const uint64_t sid = store_->NextId();
  sup.SuppressedAtAccept(kContent, sid, "s@x.example", kNow, "suppressed");
  ASSERT_TRUE(store_->CommitNow(std::move(sup), true).ok());
  const uint64_t first = PutBlock(6);
  const uint64_t second = PutBlock(2, kNow, kContent, Lane::kBulk, 6);
  BlockExpander ex(store_.get(), {100, 0}, nullptr);
  ASSERT_EQ(*ex.Pass(kNow), 8);
  auto q = Queued();
  StateBatch d;
  Outcome o;
  o.set_at_ms(kNow + 1);
  o.set_reply("250 ok");
  d.Delivered(q[first + 2].key, q[first + 2].rec, o,
              StateBatch::Entry::kRunMember);
  ASSERT_TRUE(store_->CommitNow(std::move(d), true).ok());

  std::vector<std::pair<uint64_t, Event::State>> want = {
      {sid, Event::SUPPRESSED}};
  for (int i = 0; i < 6; ++i) {
    want.push_back({first + i, Event::ACCEPTED});
    if (i == 2) want.push_back({first + i, Event::DELIVERED});
  }
  want.push_back({second, Event::ACCEPTED});
  want.push_back({second + 1, Event::ACCEPTED});
  for (size_t page : {1000, 1, 2, 3}) {
    auto got = Events(0, page);
    ASSERT_EQ(got.size(), want.size()) << "page " << page;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].recipient_id, want[i].first) << i;
      EXPECT_EQ(got[i].event.state(), want[i].second) << i;
    }
    EXPECT_EQ(got[3].event.address(), Address(2));
    EXPECT_EQ(got[3].event.at_ms(), kNow - 5);
  }
  // One recipient.
  auto one = Events(first + 2);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].event.state(), Event::ACCEPTED);
  EXPECT_EQ(one[1].event.state(), Event::DELIVERED);
  auto last = Events(second + 1);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].event.address(), Address(7));
}

// Power loss: writers commit blocks on the ingest path (WriteUnsynced, then
// SyncThen) while an expander turns them into queue entries; the power is
// cut at a random file-system op. Every acknowledged recipient is then
// either in a block or a queue entry (never both, never neither), and the
// accepted counter equals both together.
TEST(BlockPowerLossTest, AcknowledgedBlockRecipientsSurvive) {
  std::mt19937 rng(20261123);
  auto fs = std::make_shared<PowerLossFileSystem>(
      rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = NewEnvOnFileSystem(fs);
  int64_t acked_total = 0;
  for (int iter = 0; iter < 30; ++iter) {
    const std::string db = TempDir() + "/db";
    std::set<std::string> acked;
    fs->CutPowerAtOp(std::uniform_int_distribution<int64_t>(5, 200)(rng));
    {
      QueueStore::Options o;
      o.path = db;
      o.num_shards = kShards;
      o.env = env.get();
      o.block_cache_bytes = 1 << 20;
      // As in power_loss_test: syncs exclude loop writes, so a write failing
      // at the cut cannot abort this in-process harness.
      o.min_free_bytes = 0;
      auto opened = QueueStore::Open(o);
      if (opened.ok()) {
        QueueStore* store = opened->get();
        std::mutex mu;
        std::atomic<bool> stop{false};
        BlockExpander ex(store, {/*window=*/1 << 20, 0}, nullptr);
        std::thread expander([&] {
          while (!stop.load()) {
            if (!ex.Pass(INT64_MAX / 2).ok()) return;
          }
        });
        std::vector<std::thread> writers;
        for (int t = 0; t < 2; ++t) {
          writers.emplace_back([&, t] {
            for (int b = 0; b < 40; ++b) {
              std::vector<Recipient> recs(4);
              std::vector<const Recipient*> ptrs;
              for (int i = 0; i < 4; ++i) {
                recs[i].set_address(
                    Address(iter * 100000 + t * 10000 + b * 10 + i));
                ptrs.push_back(&recs[i]);
              }
              StateBatch batch;
              batch.PutBlock(Lane::kBulk, 0, kContent, store->NextIds(4),
                             0, INT64_MAX / 4, ptrs);
              if (!store->WriteUnsynced(batch).ok()) return;
              std::promise<absl::Status> synced;
              store->SyncThen([&](absl::Status s) { synced.set_value(s); });
              if (!synced.get_future().get().ok()) return;
              std::lock_guard<std::mutex> lock(mu);
              for (const Recipient& r : recs) acked.insert(r.address());
            }
          });
        }
        for (std::thread& w : writers) w.join();
        stop = true;
        expander.join();
        fs->CutPower();
      }
    }
    PowerLossFileSystem::LossStats loss;
    ASSERT_TRUE(fs->DropUnsyncedData(&loss).ok());
    QueueStore::Options o;
    o.path = db;
    o.num_shards = kShards;
    auto reopened = QueueStore::Open(o);
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    QueueStore* store = reopened->get();
    std::multiset<std::string> present;
    std::vector<BlockKey> keys;
    ASSERT_TRUE(store->ContentBlocks(kContent, &keys).ok());
    for (const BlockKey& k : keys) {
      auto block = store->GetBlock(k);
      ASSERT_TRUE(block.ok()) << block.status();
      for (const Recipient& r : block->recipients()) present.insert(r.address());
    }
    int64_t queued = 0;
    for (int s = 0; s < kShards; ++s) {
      std::string cursor;
      std::vector<QueueEntry> out;
      ASSERT_TRUE(store->ScanDue(s, Lane::kBulk, INT64_MAX, 1 << 20, &cursor,
                                 &out)
                      .ok());
      for (const QueueEntry& e : out) {
        ASSERT_TRUE(IsRun(e.rec));
        for (const Recipient& m : e.rec.members()) present.insert(m.address());
        queued += e.rec.members_size();
      }
    }
    EXPECT_EQ(*store->TotalDepth(), queued);
    EXPECT_EQ(store->GetCounts(kContent)->accepted,
              static_cast<int64_t>(present.size()));
    for (const std::string& a : acked) {
      EXPECT_EQ(present.count(a), 1u) << "iteration " << iter << ": " << a;
    }
    acked_total += static_cast<int64_t>(acked.size());
  }
  EXPECT_GT(acked_total, 100);  // the workload really ran
}

}  // namespace
}  // namespace salvo::storage
