// Built twice (engine/core/BUILD): linked with jemalloc, where the stats must
// follow a large allocation, and without it, where there are none.
#include "engine/core/malloc_stats.h"

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace salvo::core {
namespace {

#ifdef SALVO_EXPECT_JEMALLOC

TEST(MallocStatsTest, JemallocReportsItsVersion) {
  std::optional<std::string> v = JemallocVersion();
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->substr(0, 2), "5.");
}

TEST(MallocStatsTest, AllocatedFollowsAnAllocation) {
  constexpr int64_t kSize = 64 << 20;
  std::optional<MallocStats> before = ReadMallocStats();
  ASSERT_TRUE(before.has_value());
  char* p = static_cast<char*>(std::malloc(kSize));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kSize);  // touched: resident
  std::optional<MallocStats> during = ReadMallocStats();
  ASSERT_TRUE(during.has_value());
  EXPECT_GE(during->allocated - before->allocated, kSize);
  EXPECT_GE(during->resident - before->resident, kSize);
  EXPECT_LE(during->allocated, during->active);
  EXPECT_LE(during->active, during->resident);
  std::free(p);
  std::optional<MallocStats> after = ReadMallocStats();
  ASSERT_TRUE(after.has_value());
  EXPECT_LE(after->allocated, during->allocated - kSize);
}

#else

TEST(MallocStatsTest, NothingWithoutJemalloc) {
  EXPECT_FALSE(JemallocVersion().has_value());
  EXPECT_FALSE(ReadMallocStats().has_value());
}

#endif

}  // namespace
}  // namespace salvo::core
