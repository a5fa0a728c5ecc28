// Tests of recipient events ('E') on a real RocksDB under $TEST_TMPDIR: each
// StateBatch op writes its event in the same WriteBatch as the state change,
// events sort in the order they happened, ScanEvents pages and filters, and
// compaction drops events older than the retention window.
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "storage/queue_store.h"
#include "storage/test_util.h"

namespace salvo::storage {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr uint64_t kContent = 91;

std::string FreshDir() { return storage::FreshDbPath("events"); }

std::unique_ptr<QueueStore> OpenOrDie(const std::string& path,
                                      int64_t retention_ms = 0) {
  QueueStore::Options o;
  o.path = path;
  o.num_shards = 4;
  o.event_retention_ms = retention_ms;
  auto store = QueueStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

Recipient MakeRecipient(const std::string& address) {
  Recipient rec;
  rec.set_content_id(kContent);
  rec.set_address(address);
  rec.set_accepted_ms(kNow);
  return rec;
}

Outcome MakeOutcome(uint32_t attempts, const std::string& reply,
                    const std::string& host, int64_t at_ms) {
  Outcome o;
  o.set_at_ms(at_ms);
  o.set_attempts(attempts);
  o.set_reply(reply);
  o.set_remote_host(host);
  return o;
}

// Keys a WriteBatch puts and deletes (Delete or SingleDelete; any column
// family), in order.
struct KeyLister : rocksdb::WriteBatch::Handler {
  std::vector<std::string> puts, deletes;
  rocksdb::Status PutCF(uint32_t, const rocksdb::Slice& key,
                        const rocksdb::Slice&) override {
    puts.push_back(key.ToString());
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t, const rocksdb::Slice& key) override {
    deletes.push_back(key.ToString());
    return rocksdb::Status::OK();
  }
  rocksdb::Status SingleDeleteCF(uint32_t, const rocksdb::Slice& key) override {
    deletes.push_back(key.ToString());
    return rocksdb::Status::OK();
  }
  rocksdb::Status MergeCF(uint32_t, const rocksdb::Slice&,
                          const rocksdb::Slice&) override {
    return rocksdb::Status::OK();
  }
};

KeyLister List(StateBatch& batch) {
  KeyLister l;
  EXPECT_TRUE(batch.Finish()->Iterate(&l).ok());
  return l;
}

std::vector<QueueStore::EventEntry> ScanAll(QueueStore& store,
                                            uint64_t recipient = 0) {
  std::vector<QueueStore::EventEntry> out;
  std::string last;
  bool more = true;
  EXPECT_TRUE(store.ScanEvents(kContent, recipient, "", 1000, 100000, nullptr,
                               &out, &last, &more)
                  .ok());
  EXPECT_FALSE(more);
  return out;
}

TEST(EventsTest, EachOpWritesItsEventInTheSameBatch) {
  const QueueKey key{1, Lane::kBulk, kNow, 1001};
  const Recipient rec = MakeRecipient("a@x.example");
  const Outcome o = MakeOutcome(1, "250 ok", "mx.x.example", kNow + 5);
  struct Case {
    const char* name;
    Event::State state;
    uint32_t attempt;
    std::function<void(StateBatch&)> op;
  };
  const std::vector<Case> cases = {
      {"enqueue", Event::ACCEPTED, 0,
       [&](StateBatch& b) { b.Enqueue(key, rec); }},
      {"delivered", Event::DELIVERED, 1,
       [&](StateBatch& b) { b.Delivered(key, rec, o); }},
      {"bounced", Event::BOUNCED, 1,
       [&](StateBatch& b) { b.Bounced(key, rec, o); }},
      {"expired", Event::EXPIRED, 1,
       [&](StateBatch& b) { b.Expired(key, rec, o); }},
      {"cancelled", Event::CANCELLED, 1,
       [&](StateBatch& b) { b.Cancelled(key, rec, o); }},
      {"deferred", Event::DEFERRED, 1,
       [&](StateBatch& b) { b.Defer(key, rec, kNow + 60000, o); }},
      {"suppressed_bounce", Event::SUPPRESSED, 1,
       [&](StateBatch& b) { b.SuppressedBounce(key, rec, o); }},
      {"suppressed_at_accept", Event::SUPPRESSED, 0,
       [&](StateBatch& b) {
         b.SuppressedAtAccept(kContent, 1001, "a@x.example", kNow, "listed");
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    StateBatch b;
    c.op(b);
    KeyLister l = List(b);
    const std::string event_key =
        EventKey(kContent, 1001, EventSeq(c.attempt, c.state));
    EXPECT_NE(std::find(l.puts.begin(), l.puts.end(), event_key),
              l.puts.end());
    // The state change itself (the queue entry's insert or removal) is in
    // the same batch.
    if (c.state == Event::ACCEPTED) {
      EXPECT_NE(std::find(l.puts.begin(), l.puts.end(), EncodeQueueKey(key)),
                l.puts.end());
    } else if (c.state != Event::SUPPRESSED || c.attempt != 0) {
      EXPECT_NE(std::find(l.deletes.begin(), l.deletes.end(),
                          EncodeQueueKey(key)),
                l.deletes.end());
    }
  }
}

TEST(EventsTest, LifecycleEventsSortInOrderWithTheirFields) {
  const std::string path = FreshDir();
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  const QueueKey k1{1, Lane::kBulk, kNow, 1001};
  const QueueKey k2{2, Lane::kBulk, kNow, 1002};
  const QueueKey k3{3, Lane::kBulk, kNow, 1003};
  const Recipient r1 = MakeRecipient("one@x.example");
  const Recipient r2 = MakeRecipient("two@y.example");
  const Recipient r3 = MakeRecipient("three@z.example");
  {
    StateBatch b;
    b.Enqueue(k1, r1);
    b.Enqueue(k2, r2);
    b.Enqueue(k3, r3);
    b.SuppressedAtAccept(kContent, 1004, "four@x.example", kNow,
                         "suppressed: four@x.example");
    ASSERT_TRUE(store->CommitNow(std::move(b), true).ok());
  }
  QueueKey k1b;
  {
    StateBatch b;
    Outcome o = MakeOutcome(1, "451 4.7.1 later", "mx.x.example", kNow + 10);
    o.set_tls("TLSv1.3 TLS_AES_256_GCM_SHA384");
    k1b = b.Defer(k1, r1, kNow + 60000, o);
    b.Bounced(k2, r2, MakeOutcome(1, "550 5.1.1 no", "mx.y.example", kNow + 11));
    b.SuppressedBounce(k3, r3,
                       MakeOutcome(1, "550 5.7.1 listed", "", kNow + 12));
    ASSERT_TRUE(store->CommitNow(std::move(b), false).ok());
  }
  {
    Recipient leased = r1;
    leased.set_attempts(1);
    StateBatch b;
    b.Delivered(k1b, leased,
                MakeOutcome(2, "250 2.0.0 ok", "mx.x.example", kNow + 70000));
    ASSERT_TRUE(store->CommitNow(std::move(b), false).ok());
  }
  const auto events = ScanAll(*store);
  struct Want {
    uint64_t id;
    Event::State state;
    uint32_t attempt;
    const char* reply;
  };
  const std::vector<Want> want = {
      {1001, Event::ACCEPTED, 0, ""},
      {1001, Event::DEFERRED, 1, "451 4.7.1 later"},
      {1001, Event::DELIVERED, 2, "250 2.0.0 ok"},
      {1002, Event::ACCEPTED, 0, ""},
      {1002, Event::BOUNCED, 1, "550 5.1.1 no"},
      {1003, Event::ACCEPTED, 0, ""},
      {1003, Event::SUPPRESSED, 1, "550 5.7.1 listed"},
      {1004, Event::SUPPRESSED, 0, "suppressed: four@x.example"},
  };
  ASSERT_EQ(events.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(events[i].recipient_id, want[i].id);
    EXPECT_EQ(events[i].event.state(), want[i].state);
    EXPECT_EQ(events[i].event.attempt(), want[i].attempt);
    EXPECT_EQ(events[i].event.reply(), want[i].reply);
    EXPECT_FALSE(events[i].event.address().empty());
  }
  EXPECT_EQ(events[0].event.at_ms(), kNow);
  EXPECT_EQ(events[1].event.remote_host(), "mx.x.example");
  EXPECT_EQ(events[1].event.tls(), "TLSv1.3 TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(events[2].event.at_ms(), kNow + 70000);
  EXPECT_EQ(events[4].event.address(), "two@y.example");
  // The suppressed-before-delivery recipient still counts as bounced.
  auto counts = store->GetCounts(kContent);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->accepted, 3);
  EXPECT_EQ(counts->delivered, 1);
  EXPECT_EQ(counts->bounced, 2);

  // One recipient only.
  const auto only = ScanAll(*store, 1002);
  ASSERT_EQ(only.size(), 2u);
  EXPECT_EQ(only[1].event.state(), Event::BOUNCED);
  // Another content has none.
  std::vector<QueueStore::EventEntry> none;
  std::string last;
  bool more = true;
  ASSERT_TRUE(store->ScanEvents(kContent + 1, 0, "", 10, 10, nullptr, &none,
                                &last, &more)
                  .ok());
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(more);
}

TEST(EventsTest, PagesWithCursorAndFilter) {
  auto store = OpenOrDie(FreshDir());
  ASSERT_NE(store, nullptr);
  StateBatch b;
  for (uint64_t id = 1; id <= 7; ++id) {
    b.Enqueue({0, Lane::kBulk, kNow, id}, MakeRecipient("p@x.example"));
  }
  ASSERT_TRUE(store->CommitNow(std::move(b), false).ok());
  std::vector<uint64_t> seen;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    std::vector<QueueStore::EventEntry> out;
    bool more = false;
    ASSERT_TRUE(store->ScanEvents(kContent, 0, cursor, 3, 1000, nullptr, &out,
                                  &cursor, &more)
                    .ok());
    for (const auto& e : out) seen.push_back(e.recipient_id);
    if (!more) break;
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7}));

  // A filter with a small examination budget still makes progress.
  seen.clear();
  cursor.clear();
  auto odd = [](const QueueStore::EventEntry& e) {
    return e.recipient_id % 2 == 1;
  };
  for (int page = 0; page < 10; ++page) {
    std::vector<QueueStore::EventEntry> out;
    bool more = false;
    ASSERT_TRUE(store->ScanEvents(kContent, 0, cursor, 100, 2, odd, &out,
                                  &cursor, &more)
                    .ok());
    for (const auto& e : out) seen.push_back(e.recipient_id);
    if (!more) break;
  }
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 3, 5, 7}));
}

TEST(EventsTest, CollectedEventsMatchWhatWasWritten) {
  StateBatch b;
  b.set_collect_events(true);
  b.Enqueue({0, Lane::kBulk, kNow, 5}, MakeRecipient("c@x.example"));
  b.SuppressedAtAccept(kContent, 6, "d@x.example", kNow, "listed");
  auto events = b.TakeEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].recipient_id, 5u);
  EXPECT_EQ(events[0].event.state(), Event::ACCEPTED);
  EXPECT_EQ(events[1].event.address(), "d@x.example");
  StateBatch off;
  off.Enqueue({0, Lane::kBulk, kNow, 7}, MakeRecipient("e@x.example"));
  EXPECT_TRUE(off.TakeEvents().empty());
}

TEST(EventsTest, CompactionDropsEventsOlderThanRetention) {
  auto store = OpenOrDie(FreshDir(), /*retention_ms=*/3600 * 1000);
  ASSERT_NE(store, nullptr);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const uint64_t old_id = static_cast<uint64_t>(now - 2 * 3600 * 1000) << 20;
  const uint64_t new_id = static_cast<uint64_t>(now) << 20;
  StateBatch b;
  b.Enqueue({0, Lane::kBulk, kNow, old_id}, MakeRecipient("old@x.example"));
  b.Enqueue({0, Lane::kBulk, kNow, new_id}, MakeRecipient("new@x.example"));
  ASSERT_TRUE(store->CommitNow(std::move(b), false).ok());
  ASSERT_EQ(ScanAll(*store).size(), 2u);
  ASSERT_TRUE(store->db()
                  ->CompactRange(rocksdb::CompactRangeOptions(),
                                 store->family(KeyFamily::kEvents), nullptr,
                                 nullptr)
                  .ok());
  const auto left = ScanAll(*store);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].recipient_id, new_id);
  // Queue entries are never touched by the filter.
  std::vector<QueueEntry> entries;
  std::string cursor;
  ASSERT_TRUE(store->ScanDue(0, Lane::kBulk, kNow, 10, &cursor, &entries).ok());
  EXPECT_EQ(entries.size(), 2u);
}

}  // namespace
}  // namespace salvo::storage
