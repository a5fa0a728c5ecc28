// The JSON-lines event log (see event_log.h): a bounded queue filled from
// any thread, drained by one writer thread that owns the file.
#include "engine/events/event_log.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/events/event_json.h"
#include "engine/metrics/metric_names.h"

namespace salvo::events {

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(
    const Options& options, metrics::Registry* registry) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("events log path is empty");
  }
  FILE* file = std::fopen(options.path.c_str(), "a");
  if (file == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "open events log ", options.path, ": ", std::strerror(errno)));
  }
  struct stat st;
  const uint64_t size =
      ::fstat(fileno(file), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return std::unique_ptr<EventLog>(
      new EventLog(options, file, size, registry));
}

EventLog::EventLog(const Options& options, FILE* file, uint64_t size,
                   metrics::Registry* registry)
    : options_(options), file_(file), size_(size) {
  if (registry == nullptr) {
    own_registry_ = std::make_unique<metrics::Registry>();
    registry = own_registry_.get();
  }
  logged_ = registry->GetCounter(
      metrics::kEventsLoggedTotal,
      metrics::HelpOf(metrics::kEventsLoggedTotal), {});
  dropped_ = registry->GetCounter(
      metrics::kEventsLogDroppedTotal,
      metrics::HelpOf(metrics::kEventsLogDroppedTotal), {});
  writer_ = std::thread([this] { Run(); });
}

EventLog::~EventLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
  if (file_ != nullptr) std::fclose(file_);
}

void EventLog::Append(absl::string_view tenant,
                      std::vector<storage::StateBatch::BatchEvent> events) {
  if (events.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_ &&
        queued_events_ + events.size() <= options_.max_queued_events) {
      const bool wake = queued_events_ < kWakeEvents &&
                        queued_events_ + events.size() >= kWakeEvents;
      queued_events_ += events.size();
      queue_.push_back(Group{std::string(tenant), std::move(events)});
      if (wake) cv_.notify_one();
      return;
    }
  }
  dropped_->Inc(static_cast<int64_t>(events.size()));
}

void EventLog::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  drain_wanted_ = true;
  cv_.notify_one();
  drained_cv_.wait(lock, [this] { return queue_.empty() && !writing_; });
}

void EventLog::Run() {
  std::string buf;
  std::deque<Group> round;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, std::chrono::milliseconds(kWriteIntervalMs), [this] {
      return stop_ || drain_wanted_ || queued_events_ >= kWakeEvents;
    });
    drain_wanted_ = false;
    if (queue_.empty()) {
      drained_cv_.notify_all();
      if (stop_) break;
      continue;
    }
    round.swap(queue_);
    queued_events_ = 0;
    writing_ = true;
    lock.unlock();
    for (const Group& group : round) Write(group, &buf);
    round.clear();
    if (file_ != nullptr) std::fflush(file_);
    lock.lock();
    writing_ = false;
    if (queue_.empty()) drained_cv_.notify_all();
  }
  drained_cv_.notify_all();
}

void EventLog::Write(const Group& group, std::string* buf) {
  for (const auto& e : group.events) {
    buf->clear();
    if (e.packed != nullptr) {
      if (!AppendPackedAcceptedJson(group.tenant, e.content_id, *e.packed,
                                    buf)) {
        dropped_->Inc();
        continue;
      }
    } else {
      AppendEventJson(group.tenant, e.content_id, e.recipient_id, e.event,
                      buf);
    }
    buf->push_back('\n');
    if (file_ != nullptr && size_ > 0 && size_ + buf->size() > options_.max_bytes) {
      std::fclose(file_);
      const std::string rotated = options_.path + ".1";
      std::rename(options_.path.c_str(), rotated.c_str());
      file_ = std::fopen(options_.path.c_str(), "a");
      size_ = 0;
      if (file_ == nullptr) {
        std::fprintf(stderr, "salvo: reopening events log %s failed: %s\n",
                     options_.path.c_str(), std::strerror(errno));
      }
    }
    if (file_ == nullptr ||
        std::fwrite(buf->data(), 1, buf->size(), file_) != buf->size()) {
      dropped_->Inc();
      continue;
    }
    size_ += buf->size();
    logged_->Inc();
  }
}

}  // namespace salvo::events
