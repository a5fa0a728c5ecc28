// kill -9 durability: a child process (queue_durability_child) commits
// durable batches and reports each acknowledged id on a pipe; the test kills
// it with SIGKILL after a seeded random number of acknowledgements, reopens
// the store and checks that every acknowledged id is queued, and that the
// accepted counter matches the entries (batches are atomic). Three rounds on
// one store, so recovery runs on top of recovered data.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "storage/queue_store.h"

namespace salvo::storage {
namespace {

std::string ChildPath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  return std::string(srcdir ? srcdir : ".") + "/" + (ws ? ws : "salvo") +
         "/storage/queue_durability_child";
}

// Runs the child until `kill_after` ids are acknowledged, SIGKILLs it, and
// returns every id it acknowledged (including any read after the kill).
std::set<uint64_t> RunAndKill(const std::string& db, size_t kill_after) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  const std::string child = ChildPath();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(child.c_str(), child.c_str(), db.c_str(), nullptr);
    _exit(127);
  }
  EXPECT_GT(pid, 0);
  close(fds[1]);
  std::set<uint64_t> acked;
  std::string buf;
  bool killed = false;
  char chunk[4096];
  for (;;) {
    ssize_t n = read(fds[0], chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      uint64_t id;
      EXPECT_TRUE(HexToId(buf.substr(0, pos), &id)) << buf.substr(0, pos);
      acked.insert(id);
      buf.erase(0, pos + 1);
    }
    if (!killed && acked.size() >= kill_after) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  close(fds[0]);
  int wstatus = 0;
  EXPECT_EQ(waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
      << "child did not die by SIGKILL; status " << wstatus;
  EXPECT_TRUE(buf.empty()) << "partial line from child";
  return acked;
}

TEST(QueueDurabilityTest, AcknowledgedIdsSurviveKill9) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ = std::string(tmp ? tmp : "/tmp") + "/durable_XXXXXX";
  ASSERT_NE(mkdtemp(templ.data()), nullptr);
  const std::string db = templ + "/db";

  std::mt19937 rng(20240601);
  std::set<uint64_t> all_acked;
  for (int round = 0; round < 3; ++round) {
    const size_t kill_after = std::uniform_int_distribution<size_t>(30, 900)(rng);
    std::set<uint64_t> acked = RunAndKill(db, kill_after);
    ASSERT_GE(acked.size(), kill_after) << "round " << round;
    all_acked.insert(acked.begin(), acked.end());

    QueueStore::Options o;
    o.path = db;
    o.num_shards = 8;
    auto store = QueueStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    std::set<uint64_t> present;
    int64_t queued = 0;
    for (uint16_t shard = 0; shard < 8; ++shard) {
      std::string cursor;
      std::vector<QueueEntry> out;
      ASSERT_TRUE((*store)->ScanDue(shard, Lane::kBulk, INT64_MAX, 1 << 30,
                                    &cursor, &out).ok());
      for (const QueueEntry& e : out) {
        EXPECT_EQ(e.key.shard, e.key.id % 8);
        EXPECT_EQ(e.rec.address(),
                  "r" + std::to_string(e.key.id) + "@example.com");
        present.insert(e.key.id);
      }
      queued += *(*store)->CountQueued(shard);
    }
    size_t missing = 0;
    for (uint64_t id : all_acked) missing += present.count(id) == 0;
    EXPECT_EQ(missing, 0u) << "round " << round << ": " << missing << " of "
                           << all_acked.size() << " acknowledged ids lost";
    auto counts = (*store)->GetCounts(1);
    ASSERT_TRUE(counts.ok());
    EXPECT_EQ(counts->accepted, queued);  // entries and counter in one batch
    EXPECT_EQ(queued % 3, 0);             // 3-recipient batches are atomic
    std::printf("round %d: killed after %zu acks; %zu acked in total, %lld "
                "queued after recovery\n",
                round, acked.size(), all_acked.size(),
                static_cast<long long>(queued));
  }
}

}  // namespace
}  // namespace salvo::storage
