// Disk full: QueueStore on a real 64 MiB ext4 file system (loop mount in the
// test's temp dir; skipped with the reason when not root or mount fails).
// A filler file takes all free space; submissions go on until one fails,
// which must report the cause (Unavailable, "disk full") with healthy()
// latched false. No acknowledged id may be lost; once the
// filler is removed the store must recover by itself and accept again within
// 10 s, and everything acknowledged must still be there after a reopen.
// Unmounts in every case: LoopMount's destructor, and a private mount
// namespace that takes the mount with it if the process dies.
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/queue_store.h"

namespace salvo::storage {
namespace {

constexpr int kShards = 4;
constexpr int kBatch = 3;

// Runs a shell command quietly; true when it exits 0.
bool Shell(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

// A loop-mounted ext4 image under `dir`; unmounted and deleted on
// destruction.
class LoopMount {
 public:
  static std::unique_ptr<LoopMount> Create(const std::string& dir, int mib,
                                           std::string* why_not) {
    if (geteuid() != 0) {
      *why_not = "not root: cannot mount a loop file system";
      return nullptr;
    }
    // A private mount namespace: the mount dies with this process even if it
    // aborts before the destructor runs (mount -o loop auto-clears the loop
    // device). Threads started later (RocksDB's) inherit it.
    if (unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      *why_not = absl::StrCat("private mount namespace: ",
                              std::strerror(errno));
      return nullptr;
    }
    auto m = std::unique_ptr<LoopMount>(new LoopMount(dir));
    if (!Shell(absl::StrCat("dd if=/dev/zero of=", m->image_,
                            " bs=1M count=", mib))) {
      *why_not = "dd failed";
      return nullptr;
    }
    if (!Shell(absl::StrCat("mkfs.ext4 -q -F -m 0 -b 4096 ", m->image_))) {
      *why_not = "mkfs.ext4 failed";
      return nullptr;
    }
    mkdir(m->mount_point_.c_str(), 0755);
    if (!Shell(absl::StrCat("mount -o loop ", m->image_, " ",
                            m->mount_point_))) {
      *why_not = "mount -o loop not permitted here";
      return nullptr;
    }
    m->mounted_ = true;
    return m;
  }

  ~LoopMount() {
    if (mounted_ && !Shell("umount " + mount_point_)) {
      Shell("umount -l " + mount_point_);  // busy: detach lazily
    }
    unlink(image_.c_str());
    rmdir(mount_point_.c_str());
  }

  const std::string& path() const { return mount_point_; }

 private:
  explicit LoopMount(const std::string& dir)
      : image_(dir + "/fs.img"), mount_point_(dir + "/mnt") {}
  const std::string image_;
  const std::string mount_point_;
  bool mounted_ = false;
};

// Writes `path` until the file system refuses; returns bytes written.
int64_t FillDisk(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  if (fd < 0) return 0;
  std::vector<char> chunk(1 << 20, 'f');
  int64_t total = 0;
  for (size_t size = chunk.size(); size >= 512; size /= 2) {
    for (;;) {
      const ssize_t n = write(fd, chunk.data(), size);
      if (n <= 0) break;
      total += n;
    }
  }
  fsync(fd);
  close(fd);
  return total;
}

std::string Address(uint64_t id) {
  return "r" + std::to_string(id) + "@example.com";
}

// One durable 3-recipient batch (about 24 KB); its ids go to *ids.
absl::Status Submit(QueueStore* store, std::vector<uint64_t>* ids) {
  StateBatch batch;
  ids->clear();
  for (int i = 0; i < kBatch; ++i) {
    const uint64_t id = store->NextId();
    Recipient rec;
    rec.set_content_id(1);
    rec.set_address(Address(id));
    rec.set_last_reply(std::string(8000, 'x'));  // bulk, to fill the disk
    batch.Enqueue({static_cast<uint16_t>(id % kShards), Lane::kBulk,
                   static_cast<int64_t>(id >> 20), id},
                  rec);
    ids->push_back(id);
  }
  return store->CommitNow(std::move(batch), /*durable=*/true);
}

// Every acknowledged id is queued and the counter matches the entries.
void ExpectAllPresent(QueueStore* store, const std::set<uint64_t>& acked,
                      const char* when) {
  std::set<uint64_t> present;
  int64_t queued = 0;
  for (uint16_t shard = 0; shard < kShards; ++shard) {
    std::string cursor;
    std::vector<QueueEntry> out;
    ASSERT_TRUE(store->ScanDue(shard, Lane::kBulk, INT64_MAX, 1 << 30,
                               &cursor, &out).ok());
    for (const QueueEntry& e : out) present.insert(e.key.id);
    queued += static_cast<int64_t>(out.size());
  }
  int64_t lost = 0;
  for (uint64_t id : acked) lost += present.count(id) == 0;
  EXPECT_EQ(lost, 0) << when << ": " << lost << " of " << acked.size()
                     << " acknowledged ids lost";
  auto counts = store->GetCounts(1);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->accepted, queued) << when;
  EXPECT_EQ(queued % kBatch, 0) << when << ": a batch was torn";
}

TEST(DiskFullTest, ShedsWithClearErrorLosesNothingAndRecovers) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/diskfull_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  std::string why_not;
  std::unique_ptr<LoopMount> mount = LoopMount::Create(dir, 64, &why_not);
  if (mount == nullptr) GTEST_SKIP() << why_not;

  QueueStore::Options o;
  o.path = mount->path() + "/spool";
  o.num_shards = kShards;
  o.block_cache_bytes = 1 << 20;
  // RocksDB resumes once a write buffer's worth of space is free.
  o.write_buffer_bytes = 4 << 20;
  o.min_free_bytes = 16 << 20;
  std::set<uint64_t> acked;
  std::vector<uint64_t> ids;
  {
    auto opened = QueueStore::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status();
    std::unique_ptr<QueueStore> store = std::move(*opened);
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(Submit(store.get(), &ids).ok());
      acked.insert(ids.begin(), ids.end());
    }
    EXPECT_TRUE(store->healthy());

    const std::string filler = mount->path() + "/filler";
    const int64_t filled = FillDisk(filler);
    absl::Status failure;
    int accepted_while_full = 0;
    for (int i = 0; i < 20000 && failure.ok(); ++i) {
      failure = Submit(store.get(), &ids);
      if (failure.ok()) {
        acked.insert(ids.begin(), ids.end());
        ++accepted_while_full;
      }
    }
    ASSERT_FALSE(failure.ok()) << "the disk never filled";
    EXPECT_FALSE(store->healthy());  // latched before the callback ran
    EXPECT_TRUE(absl::IsUnavailable(failure)) << failure;
    EXPECT_TRUE(absl::StrContains(failure.message(), "disk full"))
        << failure;
    // While full, writes are refused at once, naming the cause.
    absl::Status shed = Submit(store.get(), &ids);
    if (shed.ok()) {
      acked.insert(ids.begin(), ids.end());
    } else {
      EXPECT_TRUE(absl::IsUnavailable(shed)) << shed;
    }
    ExpectAllPresent(store.get(), acked, "while full");

    ASSERT_EQ(unlink(filler.c_str()), 0);
    const auto freed = std::chrono::steady_clock::now();
    absl::Status resumed = absl::UnknownError("not tried");
    while (!resumed.ok() &&
           std::chrono::steady_clock::now() - freed < std::chrono::seconds(10)) {
      resumed = Submit(store.get(), &ids);
      if (resumed.ok()) {
        acked.insert(ids.begin(), ids.end());
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    const auto recovery_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - freed)
            .count();
    ASSERT_TRUE(resumed.ok()) << "intake did not resume within 10 s after "
                                 "space was freed: " << resumed;
    EXPECT_TRUE(store->healthy());
    // The free-space guard shed before RocksDB ever saw ENOSPC.
    EXPECT_EQ(store->recoveries(), 0);
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(Submit(store.get(), &ids).ok());
      acked.insert(ids.begin(), ids.end());
    }
    ExpectAllPresent(store.get(), acked, "after recovery");
    std::printf("filler %lld bytes; %d batches accepted while filling; first "
                "failure: %s; intake resumed %lld ms after the filler was "
                "removed (%lld recoveries); %zu ids acknowledged\n",
                static_cast<long long>(filled), accepted_while_full,
                failure.ToString().c_str(),
                static_cast<long long>(recovery_ms),
                static_cast<long long>(store->recoveries()), acked.size());
  }
  auto reopened = QueueStore::Open(o);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ExpectAllPresent(reopened->get(), acked, "after reopen");
}

}  // namespace
}  // namespace salvo::storage
