// Loop writes (QueueStore::WriteUnsynced) during a WAL sync, on a real
// RocksDB whose WAL fsyncs a test file system holds open: with room on the
// disk they go through at once (an outcome that waited for the fsync would be
// lost to a kill -9 meanwhile and its message sent again); with the free
// space unknown (min_free_bytes 0) or tight they are refused, to be handed
// to Commit(), so no append can fail while the WAL is synced.
#include <stdlib.h>
#include <sys/statvfs.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "rocksdb/file_system.h"
#include "storage/fault_env.h"
#include "storage/queue_store.h"
#include "storage/test_util.h"

namespace salvo::storage {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;

constexpr int64_t kNow = 1'700'000'000'000;

// Holds every WAL (*.log) Sync/Fsync until Release(), after saying so.
class HeldSyncFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit HeldSyncFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}
  static const char* kClassName() { return "SalvoHeldSyncFileSystem"; }
  const char* Name() const override { return kClassName(); }

  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  // Waits (bounded) until a WAL sync is being held.
  bool WaitForHeldSync() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10),
                        [this] { return waiting_ > 0; });
  }

  IOStatus NewWritableFile(const std::string& f,
                           const rocksdb::FileOptions& opts,
                           std::unique_ptr<rocksdb::FSWritableFile>* r,
                           IODebugContext* dbg) override {
    IOStatus s = target()->NewWritableFile(f, opts, r, dbg);
    if (s.ok() && absl::EndsWith(f, ".log")) {
      *r = std::make_unique<File>(std::move(*r), this);
    }
    return s;
  }

 private:
  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> t, HeldSyncFileSystem* fs)
        : FSWritableFileOwnerWrapper(std::move(t)), fs_(fs) {}
    IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
      fs_->WaitWhileHeld();
      return target()->Sync(o, dbg);
    }
    IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
      fs_->WaitWhileHeld();
      return target()->Fsync(o, dbg);
    }

   private:
    HeldSyncFileSystem* const fs_;
  };

  void WaitWhileHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !held_; });
    --waiting_;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  int waiting_ = 0;
};

std::string FreshDir() { return storage::FreshDbPath("gate"); }

StateBatch OneEntry(QueueStore& store, const std::string& address) {
  Recipient rec;
  rec.set_content_id(5);
  rec.set_address(address);
  rec.set_accepted_ms(kNow);
  StateBatch b;
  b.Enqueue(QueueKey{0, Lane::kBulk, kNow, store.NextId()}, rec);
  return b;
}

// Opens a store on a held-sync file system, starts a WAL sync (SyncThen
// after a write) and holds it; returns the status of a loop write made while
// the sync is held, then lets the sync finish.
absl::Status WriteDuringHeldSync(uint64_t min_free_bytes,
                                 int64_t* refused_after) {
  auto fs = std::make_shared<HeldSyncFileSystem>(
      rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = NewEnvOnFileSystem(fs);
  QueueStore::Options o;
  o.path = FreshDir();
  o.num_shards = 2;
  o.env = env.get();
  o.min_free_bytes = min_free_bytes;
  o.unsynced_sync_ms = 0;  // only the SyncThen below syncs
  auto opened = QueueStore::Open(o);
  EXPECT_TRUE(opened.ok()) << opened.status();
  if (!opened.ok()) return opened.status();
  std::unique_ptr<QueueStore> store = std::move(*opened);

  StateBatch first = OneEntry(*store, "a@d.com");
  EXPECT_TRUE(store->CommitNow(std::move(first), /*durable=*/false).ok());
  fs->Hold();
  std::mutex mu;
  std::condition_variable cv;
  bool synced = false;
  store->SyncThen([&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    std::lock_guard<std::mutex> lock(mu);
    synced = true;
    cv.notify_one();
  });
  EXPECT_TRUE(fs->WaitForHeldSync());
  StateBatch during = OneEntry(*store, "b@d.com");
  const absl::Status written = store->WriteUnsynced(during);
  *refused_after = store->unsynced_refused();
  fs->Release();
  {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(10),
                            [&] { return synced; }));
  }
  store.reset();
  return written;
}

TEST(SyncGateTest, LoopWritesGoOnDuringAWalSyncWhenTheDiskHasRoom) {
  int64_t refused = -1;
  // One byte of required space: any test disk has kRoomyFactor times that.
  const absl::Status s = WriteDuringHeldSync(1, &refused);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(refused, 0);
}

TEST(SyncGateTest, LoopWritesWaitOutAWalSyncWhenFreeSpaceIsUnknown) {
  int64_t refused = -1;
  const absl::Status s = WriteDuringHeldSync(0, &refused);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(refused, 1);
}

TEST(SyncGateTest, LoopWritesWaitOutAWalSyncWhenTheDiskIsNearlyFull) {
  // Half of the free space required: enough to stay healthy, too little
  // for kRoomyFactor (4) times it.
  const char* tmp = getenv("TEST_TMPDIR");
  struct statvfs v;
  ASSERT_EQ(::statvfs(tmp ? tmp : "/tmp", &v), 0);
  const uint64_t free_bytes =
      static_cast<uint64_t>(v.f_bavail) * static_cast<uint64_t>(v.f_frsize);
  int64_t refused = -1;
  const absl::Status s = WriteDuringHeldSync(free_bytes / 2, &refused);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(refused, 1);
}

}  // namespace
}  // namespace salvo::storage
