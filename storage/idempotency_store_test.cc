// IdempotencyStore against a real QueueStore (RocksDB in $TEST_TMPDIR): a
// record committed with a submission's batch is read back (also after a
// reopen), tenants are kept apart, the window expires records, and a record
// is never visible without the queue entries of its batch.
#include "storage/idempotency_store.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace salvo::storage {
namespace {

constexpr int64_t kWindow = 24 * 3600 * 1000;

class IdempotencyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    path_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/idem_", ++n);
    Open();
  }
  void Open() {
    idem_.reset();
    queue_.reset();
    QueueStore::Options o;
    o.path = path_;
    o.num_shards = 4;
    auto q = QueueStore::Open(o);
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = std::move(*q);
    idem_ = std::make_unique<IdempotencyStore>(queue_.get());
  }
  static IdempotencyRecord Record(int64_t created_ms) {
    IdempotencyRecord r;
    r.body_hash = std::string(32, 'h');
    r.status = 201;
    r.response = "{\"id\":\"00ff\"}";
    r.created_ms = created_ms;
    return r;
  }
  std::string path_;
  std::unique_ptr<QueueStore> queue_;
  std::unique_ptr<IdempotencyStore> idem_;
};

TEST_F(IdempotencyStoreTest, CommittedWithTheSubmissionAndReadBack) {
  StateBatch batch;
  Recipient rec;
  rec.set_content_id(7);
  rec.set_address("a@example.com");
  QueueKey key{1, Lane::kBulk, 1000, 42};
  batch.Enqueue(key, rec);
  IdempotencyStore::Put("t1", "key-1", Record(1000), &batch);
  rec.set_address("b@example.com");
  key.id = 43;
  batch.Enqueue(key, rec);  // after the Put: still counted
  ASSERT_TRUE(queue_->CommitNow(std::move(batch), true).ok());

  auto got = idem_->Get("t1", "key-1", 2000, kWindow);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->status, 201);
  EXPECT_EQ((*got)->response, "{\"id\":\"00ff\"}");
  EXPECT_EQ((*got)->body_hash, std::string(32, 'h'));
  EXPECT_EQ((*got)->created_ms, 1000);
  auto counts = queue_->GetCounts(7);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->accepted, 2);
  EXPECT_EQ(queue_->CountQueued(1).value_or(-1), 2);

  // Other tenant, other key: nothing.
  EXPECT_FALSE(idem_->Get("t2", "key-1", 2000, kWindow)->has_value());
  EXPECT_FALSE(idem_->Get("t1", "key-2", 2000, kWindow)->has_value());
  // Survives a reopen.
  Open();
  EXPECT_TRUE(idem_->Get("t1", "key-1", 2000, kWindow)->has_value());
}

TEST_F(IdempotencyStoreTest, ExpiresAfterTheWindowAndIsOverwritten) {
  StateBatch batch;
  IdempotencyStore::Put("t1", "k", Record(1000), &batch);
  ASSERT_TRUE(queue_->CommitNow(std::move(batch), true).ok());
  EXPECT_TRUE(idem_->Get("t1", "k", 1000 + kWindow - 1, kWindow)->has_value());
  EXPECT_FALSE(idem_->Get("t1", "k", 1000 + kWindow, kWindow)->has_value());

  IdempotencyRecord newer = Record(1000 + kWindow);
  newer.status = 200;
  StateBatch again;
  IdempotencyStore::Put("t1", "k", newer, &again);
  ASSERT_TRUE(queue_->CommitNow(std::move(again), true).ok());
  auto got = idem_->Get("t1", "k", 1000 + kWindow, kWindow);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->status, 200);
}

TEST_F(IdempotencyStoreTest, UncommittedBatchLeavesNoRecord) {
  {
    StateBatch batch;
    IdempotencyStore::Put("t1", "k", Record(1000), &batch);
  }  // dropped, as when validation fails after the Put
  EXPECT_FALSE(idem_->Get("t1", "k", 1000, kWindow)->has_value());
}

TEST_F(IdempotencyStoreTest, CheckKey) {
  EXPECT_TRUE(IdempotencyStore::CheckKey("t", "abc-123_XYZ").ok());
  EXPECT_FALSE(IdempotencyStore::CheckKey("t", "").ok());
  EXPECT_FALSE(IdempotencyStore::CheckKey("t", "a b").ok());
  EXPECT_FALSE(IdempotencyStore::CheckKey("t", std::string(256, 'a')).ok());
  EXPECT_FALSE(IdempotencyStore::CheckKey("", "k").ok());
}

}  // namespace
}  // namespace salvo::storage
