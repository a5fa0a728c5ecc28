// The append-only JSON-lines log of recipient events, for shipping elsewhere.
// RocksDB ('E' keys, storage/queue_store.h) is the source of truth: events
// reach the log only after their batch committed, and a crash (or a full
// queue) can lose the tail of the log, never a stored event.
//
// In:  Append() from any thread (loops after DeliveryCore commits, the
//      committer thread after API submissions). Out: one JSON object per line
//      (event_json.h, with "tenant") appended to Options::path by one writer
//      thread. A bounded queue: when it is full, Append drops the events and
//      counts them (salvo_events_log_dropped_total) instead of blocking.
// The writer works in rounds: it wakes every kWriteIntervalMs, or sooner when
// kWakeEvents are queued or someone Drain()s, writes everything queued and
// flushes once (a wake-up and a write(2) per committed batch cost the loops
// a third of their throughput).
// Rotation: a line that would take the file past max_bytes first renames
// it to <path>.1 (replacing an older one) and starts a new file.
#ifndef SALVO_ENGINE_EVENTS_EVENT_LOG_H_
#define SALVO_ENGINE_EVENTS_EVENT_LOG_H_

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/metrics/registry.h"
#include "storage/queue_store.h"

namespace salvo::events {

class EventLog {
 public:
  static constexpr int kWriteIntervalMs = 100;
  static constexpr size_t kWakeEvents = 16384;
  struct Options {
    std::string path;
    uint64_t max_bytes = 1ull << 30;
    size_t max_queued_events = 1 << 20;
  };
  // Opens (appends to) `path`. `registry` may be null.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(
      const Options& options, metrics::Registry* registry);
  ~EventLog();  // writes what is queued, stops the writer, closes

  // Any thread. Events of one tenant.
  void Append(absl::string_view tenant,
              std::vector<storage::StateBatch::BatchEvent> events);
  // Blocks until everything appended so far is written (tests, shutdown).
  void Drain();

  int64_t logged() const { return logged_->value(); }
  int64_t dropped() const { return dropped_->value(); }

 private:
  struct Group {
    std::string tenant;
    std::vector<storage::StateBatch::BatchEvent> events;
  };
  EventLog(const Options& options, FILE* file, uint64_t size,
           metrics::Registry* registry);
  void Run();
  void Write(const Group& group, std::string* buf);

  const Options options_;
  FILE* file_;
  uint64_t size_;
  std::unique_ptr<metrics::Registry> own_registry_;  // when none was given
  metrics::Counter* logged_;
  metrics::Counter* dropped_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable drained_cv_;
  std::deque<Group> queue_;
  size_t queued_events_ = 0;
  bool drain_wanted_ = false;
  bool writing_ = false;
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace salvo::events

#endif  // SALVO_ENGINE_EVENTS_EVENT_LOG_H_
