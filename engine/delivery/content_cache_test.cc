// Tests of ContentCache on a real RocksDB under $TEST_TMPDIR: the number of
// cached contents never exceeds the capacity however many contents pass
// through, the least recently used goes first, an evicted entry stays valid
// for its holder, and state changes reach cached entries.
#include "engine/delivery/content_cache.h"

#include <stdlib.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "storage/test_util.h"

namespace salvo::delivery {
namespace {

std::string FreshDir() { return storage::FreshDbPath("cache"); }

class ContentCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::QueueStore::Options o;
    o.path = FreshDir();
    o.num_shards = 2;
    auto store = storage::QueueStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // Stores `n` transactional contents with ids 1..n.
  void PutContents(int n) {
    storage::StateBatch batch;
    for (int i = 1; i <= n; ++i) {
      storage::Content c;
      c.set_id(i);
      c.set_tenant("t");
      c.set_transactional(true);
      c.set_from("app@example.com");
      c.set_envelope_from("app@example.com");
      c.set_subject("Message " + std::to_string(i));
      c.set_text("Hello");
      batch.PutContent(c);
    }
    ASSERT_TRUE(store_->CommitNow(std::move(batch), true).ok());
  }

  std::unique_ptr<storage::QueueStore> store_;
};

TEST_F(ContentCacheTest, SizeStaysWithinCapacity) {
  PutContents(500);
  ContentCache cache(store_.get(), 16);
  for (int round = 0; round < 2; ++round) {
    for (uint64_t id = 1; id <= 500; ++id) {
      auto got = cache.Get(id);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ((*got)->content.id(), id);
      EXPECT_LE(cache.size(), 16u);
    }
  }
  EXPECT_EQ(cache.size(), 16u);
  EXPECT_EQ(cache.loads(), 1000);  // a scan larger than the cache misses
}

TEST_F(ContentCacheTest, LeastRecentlyUsedGoesFirst) {
  PutContents(4);
  ContentCache cache(store_.get(), 3);
  ASSERT_TRUE(cache.Get(1).ok());
  ASSERT_TRUE(cache.Get(2).ok());
  ASSERT_TRUE(cache.Get(3).ok());
  ASSERT_TRUE(cache.Get(1).ok());  // 1 is now the most recent; 2 the least
  EXPECT_EQ(cache.loads(), 3);
  ASSERT_TRUE(cache.Get(4).ok());  // evicts 2
  EXPECT_EQ(cache.loads(), 4);
  ASSERT_TRUE(cache.Get(1).ok());
  ASSERT_TRUE(cache.Get(3).ok());
  EXPECT_EQ(cache.loads(), 4);     // 1 and 3 were still cached
  ASSERT_TRUE(cache.Get(2).ok());
  EXPECT_EQ(cache.loads(), 5);     // 2 had gone
}

TEST_F(ContentCacheTest, EvictedEntryStaysValidForItsHolder) {
  PutContents(3);
  ContentCache cache(store_.get(), 1);
  auto held = cache.Get(1);
  ASSERT_TRUE(held.ok());
  std::shared_ptr<const CachedContent> mine = *held;
  ASSERT_TRUE(cache.Get(2).ok());
  ASSERT_TRUE(cache.Get(3).ok());
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(mine->content.subject(), "Message 1");
  ASSERT_NE(mine->compiled, nullptr);
}

TEST_F(ContentCacheTest, StateReachesCachedAndReloadedEntries) {
  PutContents(2);
  ContentCache cache(store_.get(), 1);
  auto one = cache.Get(1);
  ASSERT_TRUE(one.ok());
  storage::StateBatch batch;
  batch.SetContentState(1, storage::ContentState::kPaused);
  ASSERT_TRUE(store_->CommitNow(std::move(batch), true).ok());
  cache.SetState(1, storage::ContentState::kPaused);
  EXPECT_EQ((*one)->State(), storage::ContentState::kPaused);
  ASSERT_TRUE(cache.Get(2).ok());  // evicts 1
  auto again = cache.Get(1);       // reloaded with its stored state
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->State(), storage::ContentState::kPaused);
}

}  // namespace
}  // namespace salvo::delivery
