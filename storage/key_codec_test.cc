// Tests of the key codec: round trips, and byte order equals numeric order.
#include "storage/key_codec.h"

#include <set>
#include <string>

#include <random>

#include "gtest/gtest.h"

namespace salvo::storage {
namespace {

TEST(KeyCodecTest, RoundTrip) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 1000; ++i) {
    QueueKey key;
    key.shard = static_cast<uint16_t>(rng());
    key.lane = (rng() & 1) ? Lane::kBulk : Lane::kTransactional;
    key.due_ms = static_cast<int64_t>(rng() >> 1);
    key.id = rng();
    std::string bytes = EncodeQueueKey(key);
    ASSERT_EQ(bytes.size(), kQueueKeySize);
    QueueKey back;
    ASSERT_TRUE(DecodeQueueKey(bytes, &back));
    EXPECT_EQ(back, key);
  }
}

TEST(KeyCodecTest, AppendsToOut) {
  std::string out = "xy";
  EncodeQueueKey(QueueKey{3, Lane::kBulk, 5, 7}, &out);
  EXPECT_EQ(out.size(), 2 + kQueueKeySize);
  EXPECT_EQ(out.substr(2), EncodeQueueKey(QueueKey{3, Lane::kBulk, 5, 7}));
}

TEST(KeyCodecTest, RejectsNonQueueKeys) {
  QueueKey key;
  EXPECT_FALSE(DecodeQueueKey("", &key));
  EXPECT_FALSE(DecodeQueueKey(ContentKey(1), &key));
  std::string bytes = EncodeQueueKey(QueueKey{1, Lane::kBulk, 2, 3});
  EXPECT_FALSE(DecodeQueueKey(bytes.substr(1), &key));
  bytes[3] = kNumLanes;  // no such lane
  EXPECT_FALSE(DecodeQueueKey(bytes, &key));
  bytes[3] = 1;
  bytes[0] = 'C';
  EXPECT_FALSE(DecodeQueueKey(bytes, &key));
}

TEST(KeyCodecTest, ByteOrderIsDueThenIdOrder) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    QueueKey a{5, Lane::kBulk, static_cast<int64_t>(rng() >> 1), rng()};
    QueueKey b{5, Lane::kBulk, static_cast<int64_t>(rng() >> 1), rng()};
    if (i % 3 == 0) b.due_ms = a.due_ms;  // exercise the id tie-break
    const bool numeric_less =
        a.due_ms < b.due_ms || (a.due_ms == b.due_ms && a.id < b.id);
    EXPECT_EQ(EncodeQueueKey(a) < EncodeQueueKey(b), numeric_less)
        << a.due_ms << "/" << a.id << " vs " << b.due_ms << "/" << b.id;
  }
  // Byte boundaries: 255 < 256, and the high byte dominates.
  EXPECT_LT(EncodeQueueKey({0, Lane::kBulk, 255, 0}),
            EncodeQueueKey({0, Lane::kBulk, 256, 0}));
  EXPECT_LT(EncodeQueueKey({0, Lane::kBulk, 1, ~0ull}),
            EncodeQueueKey({0, Lane::kBulk, 2, 0}));
}

TEST(KeyCodecTest, LanesAndShardsAreSeparateRanges) {
  const int64_t kMax = INT64_MAX;
  // Everything of lane 0 sorts before anything of lane 1 in the same shard.
  EXPECT_LT(EncodeQueueKey({9, Lane::kTransactional, kMax, ~0ull}),
            EncodeQueueKey({9, Lane::kBulk, 0, 0}));
  // Everything of shard 255 sorts before shard 256 (big-endian u16).
  EXPECT_LT(EncodeQueueKey({255, Lane::kBulk, kMax, ~0ull}),
            EncodeQueueKey({256, Lane::kTransactional, 0, 0}));
  // Prefixes: a key starts with its lane prefix and no other.
  std::string key = EncodeQueueKey({9, Lane::kBulk, 100, 1});
  EXPECT_EQ(key.compare(0, 4, QueueLanePrefix(9, Lane::kBulk)), 0);
  EXPECT_NE(key.compare(0, 4, QueueLanePrefix(9, Lane::kTransactional)), 0);
  EXPECT_NE(key.compare(0, 4, QueueLanePrefix(10, Lane::kBulk)), 0);
  EXPECT_LT(QueueLanePrefix(9, Lane::kBulk), key);
}

TEST(KeyCodecTest, OtherKeysHaveDistinctPrefixesAndOrder) {
  EXPECT_EQ(ContentKey(1)[0], 'C');
  EXPECT_EQ(CounterKey(1, 2)[0], 'N');
  EXPECT_EQ(OutcomeKey(1, 2)[0], 'O');
  EXPECT_EQ(ContentKey(1).size(), 9u);
  EXPECT_EQ(CounterKey(1, 2).size(), 10u);
  EXPECT_EQ(OutcomeKey(1, 2).size(), 17u);
  EXPECT_LT(CounterKey(1, 5), CounterKey(2, 0));
  EXPECT_LT(OutcomeKey(255, ~0ull), OutcomeKey(256, 0));
  EXPECT_NE(CounterKey(1, 0), CounterKey(1, 1));
}

TEST(KeyCodecTest, BulkLaneForIsStableAndSpreadsTenants) {
  // Stored keys depend on these values: they must never change.
  EXPECT_EQ(BulkLaneFor("default"), BulkLaneFor("default"));
  std::set<int> seen;
  for (int i = 0; i < 64; ++i) {
    Lane lane = BulkLaneFor("tenant-" + std::to_string(i));
    EXPECT_TRUE(IsBulk(lane));
    EXPECT_LT(static_cast<int>(lane), kNumLanes);
    seen.insert(static_cast<int>(lane));
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kBulkClasses));
  // A bucket's key decodes back to the same bucket.
  QueueKey key{9, BulkLaneFor("b"), 5, 6}, back;
  ASSERT_TRUE(DecodeQueueKey(EncodeQueueKey(key), &back));
  EXPECT_EQ(back, key);
}

TEST(KeyCodecTest, HexIds) {
  EXPECT_EQ(IdToHex(0), "0000000000000000");
  EXPECT_EQ(IdToHex(0x0123456789abcdefull), "0123456789abcdef");
  uint64_t id = 0;
  ASSERT_TRUE(HexToId("0123456789ABCDEF", &id));
  EXPECT_EQ(id, 0x0123456789abcdefull);
  ASSERT_TRUE(HexToId(IdToHex(~0ull), &id));
  EXPECT_EQ(id, ~0ull);
  EXPECT_FALSE(HexToId("", &id));
  EXPECT_FALSE(HexToId("123", &id));
  EXPECT_FALSE(HexToId("0123456789abcdeg", &id));
  EXPECT_FALSE(HexToId("0123456789abcdef0", &id));
}

}  // namespace
}  // namespace salvo::storage
