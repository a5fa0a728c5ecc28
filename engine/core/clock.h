// Clocks. Everything that reasons about time (backoff, TTLs, throttles) takes a
// Clock& so tests drive time by hand. RealClock is thread-safe; ManualClock is
// for a single test thread.
#ifndef SALVO_ENGINE_CORE_CLOCK_H_
#define SALVO_ENGINE_CORE_CLOCK_H_

#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace salvo::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  int64_t NowMillis() const { return absl::ToUnixMillis(Now()); }
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  static RealClock& Get() {
    static RealClock clock;
    return clock;
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }
  void Set(absl::Time t) { now_ = t; }

 private:
  absl::Time now_;
};

}  // namespace salvo::core

#endif  // SALVO_ENGINE_CORE_CLOCK_H_
