// Tests of the queue store's column families on a real RocksDB under
// $TEST_TMPDIR: every key of a state batch lands in the family of its prefix,
// a store written before column families is upgraded at Open (also after an
// interrupted upgrade) with nothing lost and nothing left in `default`, ids
// of families created in another order are refused, the WAL stays bounded
// when only `default` is written, and the retention filter drops blocks'
// packed ACCEPTED events.
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "storage/column_families.h"
#include "storage/key_codec.h"
#include "storage/queue_store.h"
#include "storage/suppression_store.h"
#include "storage/test_util.h"

namespace salvo::storage {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr uint64_t kContent = 77;

std::string FreshDir() { return storage::FreshDbPath("cf"); }

QueueStore::Options StoreOptions(const std::string& path) {
  QueueStore::Options o;
  o.path = path;
  o.num_shards = 4;
  o.sync = false;
  o.min_free_bytes = 0;
  return o;
}

Recipient MakeRecipient(const std::string& address) {
  Recipient rec;
  rec.set_content_id(kContent);
  rec.set_address(address);
  rec.set_accepted_ms(kNow);
  return rec;
}

Outcome MakeOutcome(const std::string& reply) {
  Outcome o;
  o.set_at_ms(kNow + 10);
  o.set_attempts(1);
  o.set_reply(reply);
  o.set_remote_host("mx.x.example");
  return o;
}

using Dump = std::map<std::string, std::string>;

// Every key of a family but the open counter "Mepoch", which differs
// between stores opened a different number of times.
Dump DumpFamily(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family) {
  Dump out;
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions(), family));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key() == rocksdb::Slice("Mepoch")) continue;
    out[it->key().ToString()] = it->value().ToString();
  }
  EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  return out;
}

// Column family id of every key a batch writes, by key.
struct FamilyLister : rocksdb::WriteBatch::Handler {
  std::map<std::string, uint32_t> family;
  rocksdb::Status PutCF(uint32_t id, const rocksdb::Slice& key,
                        const rocksdb::Slice&) override {
    family[key.ToString()] = id;
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t id, const rocksdb::Slice& key) override {
    family[key.ToString()] = id;
    return rocksdb::Status::OK();
  }
  rocksdb::Status MergeCF(uint32_t id, const rocksdb::Slice& key,
                          const rocksdb::Slice&) override {
    family[key.ToString()] = id;
    return rocksdb::Status::OK();
  }
};

// Blocks, queue entries, outcomes and events of every kind: 2 blocks of 5
// (one cancelled), 3 entries (one delivered, one deferred).
void WriteMix(QueueStore& store) {
  StateBatch b;
  Content content;
  content.set_id(kContent);
  content.set_subject("hi");
  b.PutContent(content);
  std::vector<Recipient> recs;
  for (int i = 0; i < 5; ++i) {
    recs.push_back(MakeRecipient("b" + std::to_string(i) + "@x.example"));
  }
  std::vector<const Recipient*> ptrs;
  for (const Recipient& r : recs) ptrs.push_back(&r);
  b.PutBlock(Lane::kBulk, kNow, kContent, 1000, kNow, kNow + 1000, ptrs);
  b.PutBlock(Lane::kBulk, kNow + 5, kContent, 2000, kNow, kNow + 1000, ptrs);
  for (uint64_t id = 1; id <= 3; ++id) {
    b.Enqueue({0, Lane::kBulk, kNow, id},
              MakeRecipient("q" + std::to_string(id) + "@x.example"));
  }
  ASSERT_TRUE(store.CommitNow(std::move(b), true).ok());
  StateBatch c;
  c.Delivered({0, Lane::kBulk, kNow, 1}, MakeRecipient("q1@x.example"),
              MakeOutcome("250 ok"));
  c.Defer({0, Lane::kBulk, kNow, 2}, MakeRecipient("q2@x.example"),
          kNow + 60'000, MakeOutcome("451 later"));
  std::vector<BlockKey> blocks;
  ASSERT_TRUE(store.ContentBlocks(kContent, &blocks).ok());
  ASSERT_EQ(blocks.size(), 2u);
  auto block = store.GetBlock(blocks[1]);
  ASSERT_TRUE(block.ok()) << block.status();
  c.CancelBlock(blocks[1], *block, kNow + 20);
  ASSERT_TRUE(store.CommitNow(std::move(c), true).ok());
  // Outcomes as older versions wrote them ('O', nothing writes them now):
  // one of a recipient without events (read as the outcome), one of a
  // recipient whose events say otherwise (ignored).
  for (const auto& [id, reply] :
       {std::pair<uint64_t, const char*>{9, "250 legacy"}, {1, "250 stale"}}) {
    Outcome legacy = MakeOutcome(reply);
    legacy.set_state(Outcome::DELIVERED);
    legacy.set_content_id(kContent);
    ASSERT_TRUE(store.db()
                    ->Put(rocksdb::WriteOptions(),
                          store.family(KeyFamily::kOutcomes),
                          OutcomeKey(kContent, id), legacy.SerializeAsString())
                    .ok());
  }
  SuppressionStore suppressions(&store);
  auto added = suppressions.AddNow(
      "t1", {"gone@x.example", "@blocked.example"},
      SuppressionReason::kApi, kNow);
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(*added, 2);
}

// What the store's API shows of WriteMix.
struct View {
  std::vector<std::string> events;  // recipient:state
  std::vector<std::string> outcomes;
  int64_t blocked = 0;
  int64_t depth = 0;
  size_t blocks = 0;
  int64_t delivered = 0, cancelled = 0, accepted = 0;
};

View Read(QueueStore& store) {
  View v;
  std::vector<QueueStore::EventEntry> out;
  std::string last;
  bool more = true;
  EXPECT_TRUE(store.ScanEvents(kContent, 0, "", 1000, 100000, nullptr, &out,
                               &last, &more)
                  .ok());
  for (const auto& e : out) {
    v.events.push_back(std::to_string(e.recipient_id) + ":" +
                       Event::State_Name(e.event.state()));
  }
  for (uint64_t id : {1ull, 2ull, 3ull, 9ull, 2000ull, 2004ull}) {
    auto o = store.GetOutcome(kContent, id);
    EXPECT_TRUE(o.ok()) << o.status();
    v.outcomes.push_back(o.ok() && o->has_value() ? (*o)->reply() : "-");
  }
  v.blocked = store.BlockedRecipients().value_or(-1);
  v.depth = store.TotalDepth().value_or(-1);
  std::vector<BlockKey> blocks;
  EXPECT_TRUE(store.ContentBlocks(kContent, &blocks).ok());
  v.blocks = blocks.size();
  for (const BlockKey& k : blocks) EXPECT_TRUE(store.GetBlock(k).ok());
  auto counts = store.GetCounts(kContent);
  EXPECT_TRUE(counts.ok());
  v.delivered = counts->delivered;
  v.cancelled = counts->cancelled;
  v.accepted = counts->accepted;
  return v;
}

TEST(ColumnFamiliesTest, EveryPrefixHasOneFamily) {
  EXPECT_EQ(FamilyOfPrefix('E'), KeyFamily::kEvents);
  EXPECT_EQ(FamilyOfPrefix('O'), KeyFamily::kOutcomes);
  for (char c : std::string("BPA")) {
    EXPECT_EQ(FamilyOfPrefix(c), KeyFamily::kBlocks) << c;
  }
  EXPECT_EQ(FamilyOfPrefix('S'), KeyFamily::kSuppressions);
  for (char c : std::string("QCNXDMI")) {
    EXPECT_EQ(FamilyOfPrefix(c), KeyFamily::kDefault) << c;
  }
  EXPECT_EQ(FamilyOfKey(rocksdb::Slice()), KeyFamily::kDefault);
}

TEST(ColumnFamiliesTest, StateBatchWritesEachKeyToItsFamily) {
  StateBatch b;
  std::vector<Recipient> recs = {MakeRecipient("a@x.example")};
  std::vector<const Recipient*> ptrs = {&recs[0]};
  b.PutBlock(Lane::kBulk, kNow, kContent, 500, kNow, kNow + 1, ptrs);
  b.Enqueue({0, Lane::kBulk, kNow, 7}, MakeRecipient("q@x.example"));
  b.Bounced({0, Lane::kBulk, kNow, 7}, MakeRecipient("q@x.example"),
            MakeOutcome("550 no"));
  b.SetContentState(kContent, ContentState::kPaused);
  FamilyLister l;
  ASSERT_TRUE(b.Finish()->Iterate(&l).ok());
  int seen = 0;
  for (const auto& [key, id] : l.family) {
    EXPECT_EQ(id, static_cast<uint32_t>(FamilyOfKey(key))) << key[0];
    seen |= 1 << id;
  }
  EXPECT_EQ(seen, 0b00111);  // default, events and blocks; outcomes are
                             // events now, `outcomes` only holds old ones
}

TEST(ColumnFamiliesTest, OldSingleFamilyStoreIsUpgradedAndResumes) {
  // A store in the new layout, its contents and what its API shows.
  const std::string fresh = FreshDir();
  Dump want[kNumKeyFamilies];
  View want_view;
  {
    auto store = QueueStore::Open(StoreOptions(fresh));
    ASSERT_TRUE(store.ok()) << store.status();
    WriteMix(**store);
    want_view = Read(**store);
    for (int f = 0; f < kNumKeyFamilies; ++f) {
      want[f] = DumpFamily((*store)->db(),
                           (*store)->family(static_cast<KeyFamily>(f)));
    }
  }
  ASSERT_GE(want[1].size(), 10u);  // events
  ASSERT_EQ(want[4].size(), 2u);   // the two legacy outcomes
  // Outcomes are the recipients' last events; the legacy record counts
  // only for the recipient without events.
  EXPECT_EQ(want_view.outcomes,
            (std::vector<std::string>{"250 ok", "451 later", "-",
                                      "250 legacy", "local: campaign cancelled",
                                      "local: campaign cancelled"}));
  ASSERT_GT(want[2].size(), 2u);
  ASSERT_EQ(want[3].size(), 2u);  // the two suppression entries
  EXPECT_EQ(want_view.blocks, 1u);
  EXPECT_EQ(want_view.blocked, 5);
  EXPECT_EQ(want_view.cancelled, 5);
  EXPECT_EQ(want_view.delivered, 1);

  // The same keys in one family, as the code before column families wrote
  // them: a plain RocksDB with `default` only and no layout marker.
  const std::string old = FreshDir();
  size_t moved_keys = 0;
  {
    rocksdb::Options opts;
    opts.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(opts, old, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteBatch batch;
    for (int f = 0; f < kNumKeyFamilies; ++f) {
      for (const auto& [k, v] : want[f]) {
        if (k == "Mcf_layout") continue;
        ASSERT_TRUE(batch.Put(k, v).ok());
        if (f != 0) ++moved_keys;
      }
    }
    ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
    ASSERT_TRUE(db->Close().ok());
  }

  // Interrupted: 2 batches of 3 keys moved, then Open fails.
  QueueStore::Options o = StoreOptions(old);
  o.upgrade_batch_keys = 3;
  o.upgrade_max_batches = 2;
  {
    auto store = QueueStore::Open(o);
    ASSERT_FALSE(store.ok());
    EXPECT_TRUE(absl::IsAborted(store.status())) << store.status();
  }
  {
    // Half way: 6 keys in the new families, the rest still in default.
    rocksdb::DBOptions dbo;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {"default", rocksdb::ColumnFamilyOptions()},
        {"events", rocksdb::ColumnFamilyOptions()},
        {"blocks", rocksdb::ColumnFamilyOptions()},
        {"suppressions", rocksdb::ColumnFamilyOptions()},
        {"outcomes", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(dbo, old, cfs, &handles, &raw).ok());
    size_t in_new = 0;
    for (int f = 1; f < kNumKeyFamilies; ++f) {
      in_new += DumpFamily(raw, handles[f]).size();
    }
    EXPECT_EQ(in_new, 6u);
    const Dump left = DumpFamily(raw, handles[0]);
    EXPECT_EQ(left.size(), want[0].size() - 1 + moved_keys - 6);
    EXPECT_EQ(left.count("Mcf_layout"), 0u);
    for (auto* h : handles) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(raw->Close().ok());
    delete raw;
  }

  // Resumed: every key in its family, identical to the new-layout store.
  o.upgrade_max_batches = -1;
  auto store = QueueStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status();
  for (int f = 0; f < kNumKeyFamilies; ++f) {
    const Dump got =
        DumpFamily((*store)->db(), (*store)->family(static_cast<KeyFamily>(f)));
    EXPECT_EQ(got, want[f]) << KeyFamilyName(static_cast<KeyFamily>(f));
    for (const auto& [k, v] : got) {
      EXPECT_EQ(FamilyOfKey(k), static_cast<KeyFamily>(f)) << k[0];
    }
  }
  const View view = Read(**store);
  EXPECT_EQ(view.events, want_view.events);
  EXPECT_EQ(view.outcomes, want_view.outcomes);
  EXPECT_EQ(view.blocked, want_view.blocked);
  EXPECT_EQ(view.depth, want_view.depth);
  EXPECT_EQ(view.blocks, want_view.blocks);
  EXPECT_EQ(view.accepted, want_view.accepted);
  // An upgraded store opens again without moving anything.
  store->reset();
  auto again = QueueStore::Open(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Read(**again).events, want_view.events);
}

// Layout "1" had 'S' in default and 'O' in events: both move to their own
// families (suppressions, outcomes).
TEST(ColumnFamiliesTest, LayoutOneStoreGetsSuppressionsAndOutcomesMoved) {
  // A store in the current layout, and its contents per family.
  const std::string fresh = FreshDir();
  Dump want[kNumKeyFamilies];
  {
    auto store = QueueStore::Open(StoreOptions(fresh));
    ASSERT_TRUE(store.ok()) << store.status();
    WriteMix(**store);
    for (int f = 0; f < kNumKeyFamilies; ++f) {
      want[f] = DumpFamily((*store)->db(),
                           (*store)->family(static_cast<KeyFamily>(f)));
    }
  }
  ASSERT_EQ(want[3].size(), 2u);
  ASSERT_EQ(want[4].size(), 2u);  // legacy outcomes
  // The same as layout "1" wrote it: three families, 'S' in default, 'O' in
  // events.
  const std::string old = FreshDir();
  {
    rocksdb::DBOptions dbo;
    dbo.create_if_missing = true;
    dbo.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {"default", rocksdb::ColumnFamilyOptions()},
        {"events", rocksdb::ColumnFamilyOptions()},
        {"blocks", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(dbo, old, cfs, &handles, &raw).ok());
    rocksdb::WriteBatch batch;
    for (int f = 0; f < kNumKeyFamilies; ++f) {
      rocksdb::ColumnFamilyHandle* to = handles[f == 3 ? 0 : f == 4 ? 1 : f];
      for (const auto& [k, v] : want[f]) {
        ASSERT_TRUE(
            batch.Put(to, k, k == "Mcf_layout" ? std::string("1") : v).ok());
      }
    }
    ASSERT_TRUE(raw->Write(rocksdb::WriteOptions(), &batch).ok());
    for (auto* h : handles) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(raw->Close().ok());
    delete raw;
  }
  auto store = QueueStore::Open(StoreOptions(old));
  ASSERT_TRUE(store.ok()) << store.status();
  for (int f = 0; f < kNumKeyFamilies; ++f) {
    EXPECT_EQ(DumpFamily((*store)->db(),
                         (*store)->family(static_cast<KeyFamily>(f))),
              want[f])
        << KeyFamilyName(static_cast<KeyFamily>(f));
  }
  auto outcome = (*store)->GetOutcome(kContent, 1);  // q1, delivered
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_TRUE(outcome->has_value());
  EXPECT_EQ((*outcome)->reply(), "250 ok");
  SuppressionStore suppressions(store->get());
  auto hit = suppressions.IsSuppressed("t1", "anyone@blocked.example");
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_TRUE(*hit);
  hit = suppressions.IsSuppressed("t1", "other@x.example");
  ASSERT_TRUE(hit.ok()) << hit.status();
  EXPECT_FALSE(*hit);
}

TEST(ColumnFamiliesTest, FamiliesWithOtherIdsAreRefused) {
  const std::string path = FreshDir();
  {
    rocksdb::DBOptions dbo;
    dbo.create_if_missing = true;
    dbo.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {"default", rocksdb::ColumnFamilyOptions()},
        {"blocks", rocksdb::ColumnFamilyOptions()},
        {"events", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(dbo, path, cfs, &handles, &raw).ok());
    for (auto* h : handles) ASSERT_TRUE(raw->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(raw->Close().ok());
    delete raw;
  }
  auto store = QueueStore::Open(StoreOptions(path));
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
  EXPECT_NE(store.status().message().find("'events' has id 2"),
            std::string::npos)
      << store.status();
}

int64_t WalBytes(const std::string& dir) {
  int64_t total = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 4 || name.substr(name.size() - 4) != ".log") continue;
    struct stat st;
    if (stat((dir + "/" + name).c_str(), &st) == 0) total += st.st_size;
  }
  closedir(d);
  return total;
}

// One block and one event, then 24 MiB into `default` only.
int64_t WalAfterDefaultOnlyWrites(uint64_t max_total_wal_bytes) {
  QueueStore::Options o = StoreOptions(FreshDir());
  o.write_buffer_bytes = 1 << 20;
  o.max_total_wal_bytes = max_total_wal_bytes;
  auto store = QueueStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return -1;
  StateBatch b;
  std::vector<Recipient> recs = {MakeRecipient("a@x.example")};
  std::vector<const Recipient*> ptrs = {&recs[0]};
  b.PutBlock(Lane::kBulk, kNow, kContent, 500, kNow, kNow + 1, ptrs);
  b.SuppressedAtAccept(kContent, 501, "s@x.example", kNow, "listed");
  EXPECT_TRUE((*store)->CommitNow(std::move(b), false).ok());
  Content content;
  content.set_text(std::string(64 << 10, 'x'));
  for (int i = 0; i < 384; ++i) {
    content.set_id(1000 + i);
    StateBatch c;
    c.PutContent(content);
    EXPECT_TRUE((*store)->CommitNow(std::move(c), false).ok());
  }
  return WalBytes(o.path);
}

TEST(ColumnFamiliesTest, QuietFamiliesDoNotPinTheWal) {
  const int64_t bounded = WalAfterDefaultOnlyWrites(2 << 20);
  EXPECT_GE(bounded, 0);
  EXPECT_LT(bounded, 8 << 20);
  // Control: without the bound the block's WAL file, and every later one,
  // stays.
  const int64_t unbounded = WalAfterDefaultOnlyWrites(1ull << 40);
  EXPECT_GT(unbounded, 20 << 20);
}

// A store whose events (and legacy outcomes) live one hour.
QueueStore::Options RetentionOptions() {
  QueueStore::Options o = StoreOptions(FreshDir());
  o.event_retention_ms = 3600 * 1000;
  return o;
}

// A recipient id minted `ago_ms` ago (ids are ms << 20 + counter).
uint64_t IdMintedAgo(int64_t ago_ms) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return static_cast<uint64_t>(now - ago_ms) << 20;
}

TEST(ColumnFamiliesTest, RetentionDropsPackedAcceptedEventsInBlocks) {
  auto store = QueueStore::Open(RetentionOptions());
  ASSERT_TRUE(store.ok()) << store.status();
  const uint64_t old_id = IdMintedAgo(2 * 3600 * 1000);
  const uint64_t new_id = IdMintedAgo(0);
  StateBatch b;
  std::vector<Recipient> recs = {MakeRecipient("a@x.example")};
  std::vector<const Recipient*> ptrs = {&recs[0]};
  b.PutBlock(Lane::kBulk, kNow, kContent, old_id, kNow, kNow + 1, ptrs);
  b.PutBlock(Lane::kBulk, kNow, kContent, new_id, kNow, kNow + 1, ptrs);
  ASSERT_TRUE((*store)->CommitNow(std::move(b), false).ok());
  auto scan = [&] {
    std::vector<QueueStore::EventEntry> out;
    std::string last;
    bool more = true;
    EXPECT_TRUE((*store)
                    ->ScanEvents(kContent, 0, "", 100, 1000, nullptr, &out,
                                 &last, &more)
                    .ok());
    return out;
  };
  ASSERT_EQ(scan().size(), 2u);
  ASSERT_TRUE((*store)
                  ->db()
                  ->CompactRange(rocksdb::CompactRangeOptions(),
                                 (*store)->family(KeyFamily::kBlocks), nullptr,
                                 nullptr)
                  .ok());
  const auto left = scan();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].recipient_id, new_id);
  // The blocks themselves (index, payload) are never touched by the filter.
  auto blocked = (*store)->BlockedRecipients();
  ASSERT_TRUE(blocked.ok());
  EXPECT_EQ(*blocked, 2);
}

TEST(ColumnFamiliesTest, RetentionDropsLegacyOutcomes) {
  auto store = QueueStore::Open(RetentionOptions());
  ASSERT_TRUE(store.ok()) << store.status();
  const uint64_t old_id = IdMintedAgo(2 * 3600 * 1000);
  const uint64_t new_id = IdMintedAgo(0);
  for (uint64_t id : {old_id, new_id}) {
    Outcome legacy = MakeOutcome("250 legacy");
    legacy.set_state(Outcome::DELIVERED);
    ASSERT_TRUE((*store)
                    ->db()
                    ->Put(rocksdb::WriteOptions(),
                          (*store)->family(KeyFamily::kOutcomes),
                          OutcomeKey(kContent, id), legacy.SerializeAsString())
                    .ok());
  }
  ASSERT_TRUE((*store)
                  ->db()
                  ->CompactRange(rocksdb::CompactRangeOptions(),
                                 (*store)->family(KeyFamily::kOutcomes),
                                 nullptr, nullptr)
                  .ok());
  auto gone = (*store)->GetOutcome(kContent, old_id);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_FALSE(gone->has_value());
  auto kept = (*store)->GetOutcome(kContent, new_id);
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_TRUE(kept->has_value());
  EXPECT_EQ((*kept)->reply(), "250 legacy");
}

}  // namespace
}  // namespace salvo::storage
