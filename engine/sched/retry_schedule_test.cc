#include "engine/sched/retry_schedule.h"

#include "gtest/gtest.h"

namespace salvo::sched {
namespace {

TEST(RetryScheduleTest, GrowsExponentiallyWithinJitterAndCaps) {
  RetrySchedule::Options o;
  o.initial = absl::Seconds(10);
  o.max = absl::Seconds(100);
  o.multiplier = 2.0;
  o.jitter = 0.2;
  RetrySchedule r(o, 42);
  const double expect[] = {10, 20, 40, 80, 100, 100, 100};
  for (int i = 0; i < 7; ++i) {
    double got = absl::ToDoubleSeconds(r.DelayAfter(i + 1));
    EXPECT_GE(got, expect[i] * 0.8 - 0.001) << "attempt " << i + 1;
    EXPECT_LE(got, expect[i] * 1.2 + 0.001) << "attempt " << i + 1;
  }
}

TEST(RetryScheduleTest, JitterSpreadsRetries) {
  RetrySchedule::Options o;
  o.initial = absl::Seconds(60);
  RetrySchedule r(o, 7);
  double lo = 1e9, hi = 0;
  for (int i = 0; i < 200; ++i) {
    double s = absl::ToDoubleSeconds(r.DelayAfter(1));
    lo = std::min(lo, s);
    hi = std::max(hi, s);
  }
  EXPECT_LT(lo, 52);
  EXPECT_GT(hi, 68);
}

TEST(RetryScheduleTest, NoJitterIsExact) {
  RetrySchedule::Options o;
  o.initial = absl::Seconds(1);
  o.jitter = 0;
  RetrySchedule r(o, 1);
  EXPECT_EQ(r.DelayAfter(3), absl::Seconds(4));
}

TEST(RetryScheduleTest, ExpiresInsteadOfRetryingPastExpiry) {
  RetrySchedule::Options o;
  o.initial = absl::Seconds(60);
  o.jitter = 0;
  RetrySchedule r(o, 1);
  EXPECT_EQ(r.NextDueMs(1, 1000, 1000 + 60000), 61000);
  EXPECT_EQ(r.NextDueMs(1, 1000, 1000 + 59999), -1);
}

}  // namespace
}  // namespace salvo::sched
