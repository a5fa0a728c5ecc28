// Exponential backoff with jitter (see retry_schedule.h).
#include "engine/sched/retry_schedule.h"

#include <algorithm>
#include <cmath>

namespace salvo::sched {

RetrySchedule::RetrySchedule(const Options& options, uint64_t seed)
    : options_(options), rng_(seed) {}

absl::Duration RetrySchedule::DelayAfter(uint32_t attempts) {
  if (attempts < 1) attempts = 1;
  double base = absl::ToDoubleSeconds(options_.initial) *
                std::pow(options_.multiplier, static_cast<double>(attempts - 1));
  base = std::min(base, absl::ToDoubleSeconds(options_.max));
  double j = std::clamp(options_.jitter, 0.0, 1.0);
  std::uniform_real_distribution<double> dist(1.0 - j, 1.0 + j);
  double seconds = base * dist(rng_);
  return absl::Milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

int64_t RetrySchedule::NextDueMs(uint32_t attempts, int64_t now_ms,
                                 int64_t expires_ms) {
  int64_t due = now_ms + absl::ToInt64Milliseconds(DelayAfter(attempts));
  if (expires_ms > 0 && due > expires_ms) return -1;
  return due;
}

}  // namespace salvo::sched
