#include "engine/core/loop.h"

#include <atomic>

#include "gtest/gtest.h"

namespace salvo::core {
namespace {

TEST(LoopTest, PostRunsOnLoopThreadInOrderAndClosesClean) {
  Loop loop;
  std::vector<int> seen;
  std::thread t([&] { EXPECT_EQ(loop.Run(), 0); });
  for (int i = 0; i < 100; ++i) loop.Post([&, i] {
    EXPECT_TRUE(loop.InLoopThread());
    seen.push_back(i);
  });
  loop.Post([&] { loop.Stop(); });
  t.join();
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
}

TEST(LoopTest, TimerFiresAndDiesInCloseCallback) {
  Loop loop;
  int fired = 0;
  {
    auto timer = std::make_unique<Timer>(loop);
    loop.Post([&] {
      timer->Start(5, [&] {
        ++fired;
        timer.reset();  // Destroy the owner from inside its own callback.
        loop.Stop();
      });
    });
    EXPECT_EQ(loop.Run(), 0);
  }
  EXPECT_EQ(fired, 1);
}

struct Tracked : DeferredDeletable {
  explicit Tracked(int* n) : n(n) {}
  ~Tracked() override { ++*n; }
  int* n;
};

TEST(LoopTest, DeferDeleteFreesAfterCallback) {
  Loop loop;
  int deleted = 0;
  loop.Post([&] {
    loop.DeferDelete(std::make_unique<Tracked>(&deleted));
    EXPECT_EQ(deleted, 0);
    loop.Post([&] {
      EXPECT_EQ(deleted, 1);
      loop.Stop();
    });
  });
  EXPECT_EQ(loop.Run(), 0);
  EXPECT_EQ(deleted, 1);
}

TEST(LoopTest, LeakedHandleIsReported) {
  Loop loop;
  uv_timer_t leaked;
  loop.Post([&] {
    uv_timer_init(loop.uv(), &leaked);
    loop.Stop();
  });
  EXPECT_EQ(loop.Run(), 1);
  uv_close(reinterpret_cast<uv_handle_t*>(&leaked), nullptr);
  uv_run(loop.uv(), UV_RUN_NOWAIT);
}

TEST(LoopGroupTest, StartsAndStopsAll) {
  LoopGroup group(3);
  std::atomic<int> started{0};
  group.Start([&](Loop&) { ++started; });
  std::atomic<int> ran{0};
  while (started.load() < 3) std::this_thread::yield();
  for (int i = 0; i < 3; ++i) group.at(i).Post([&] { ++ran; });
  while (ran.load() < 3) std::this_thread::yield();
  group.StopAndJoin();
  EXPECT_EQ(ran.load(), 3);
}

}  // namespace
}  // namespace salvo::core
