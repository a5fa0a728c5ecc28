// Pure: attempt number -> delay before the next attempt. Exponential backoff
// with jitter, capped, and the expiry decision. The RNG is injected so tests
// are deterministic. Not thread-safe (one per loop).
#ifndef SALVO_ENGINE_SCHED_RETRY_SCHEDULE_H_
#define SALVO_ENGINE_SCHED_RETRY_SCHEDULE_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace salvo::sched {

class RetrySchedule {
 public:
  struct Options {
    absl::Duration initial = absl::Minutes(1);
    absl::Duration max = absl::Hours(1);
    double multiplier = 2.0;
    double jitter = 0.2;  // the delay is scaled by a factor in [1-j, 1+j]
  };

  RetrySchedule(const Options& options, uint64_t seed);

  // Delay after the `attempts`-th failed attempt (attempts >= 1).
  absl::Duration DelayAfter(uint32_t attempts);

  // When to try again after a transient failure at `now_ms`, or -1 when that
  // would be past `expires_ms` (the recipient expires instead).
  int64_t NextDueMs(uint32_t attempts, int64_t now_ms, int64_t expires_ms);

 private:
  Options options_;
  std::mt19937_64 rng_;
};

}  // namespace salvo::sched

#endif  // SALVO_ENGINE_SCHED_RETRY_SCHEDULE_H_
