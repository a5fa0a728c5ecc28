// The running engine: the durable queue, one loop per core with its HTTP
// listener and its DeliveryCore, and the shard -> loop map (shard % loops).
// Start() and Stop() are called from the main thread; OnEnqueued() and
// InFlight() from any thread.
#ifndef SALVO_ENGINE_ENGINE_H_
#define SALVO_ENGINE_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "api/api.h"
#include "engine/events/event_log.h"
#include "api/http_server.h"
#include "engine/config/config.h"
#include "engine/core/loop.h"
#include "engine/delivery/content_cache.h"
#include "engine/delivery/delivery_core.h"
#include "storage/block_expander.h"
#include "storage/queue_store.h"
#include "storage/suppression_store.h"

namespace salvo {

class Engine : public api::DeliveryHooks {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Start(
      const config::Config& config);
  ~Engine() override;

  uint16_t http_port() const { return http_port_; }
  int loops() const { return loops_->size(); }
  // Graceful: stop accepting, let transactions in flight finish, commit,
  // close every handle. Returns the number of handles left open (0 = clean).
  int Stop();

  void OnEnqueued(uint16_t shard, storage::Lane lane, int64_t due_ms,
                  uint64_t after_id) override;
  int64_t InFlight(uint64_t content_id) override;
  // After a campaign's state record was committed: every loop sees it; a
  // resume rescans, a cancel sweeps the queued entries.
  void OnContentState(uint64_t content_id,
                      storage::ContentState state) override;
  // Every loop moves the entries of its shards; `done` runs on the loop
  // that finishes last, with the sum (or the first error).
  void Reschedule(uint64_t content_id, const storage::Reschedule& r,
                  std::function<void(absl::StatusOr<int64_t>)> done) override;
  // Wakes the expander thread (upload chunks stored as blocks).
  void OnBlocksAdded() override;

 private:
  // The loops' part of Reschedule (queue entries of their shards).
  void RescheduleQueued(uint64_t content_id, const storage::Reschedule& r,
                        std::function<void(absl::StatusOr<int64_t>)> done);
  // The expander thread: runs posted tasks (block cancel, reschedule), then
  // a BlockExpander pass; woken by OnBlocksAdded or every kExpandPollMs.
  void ExpanderLoop();
  void PostExpanderTask(std::function<void()> task);
  // Cancels a content's blocks kCancelBlocksPerTask at a time (re-posts).
  void CancelBlocks(uint64_t content_id);
  static constexpr size_t kCancelBlocksPerTask = 8;
  static constexpr int kExpandPollMs = 100;
  explicit Engine(const config::Config& config) : config_(config) {}
  absl::Status StartLoops();
  void StatsLoop();

  const config::Config config_;
  // Before store_: outlives the commit callbacks that append to it.
  std::unique_ptr<events::EventLog> event_log_;
  std::unique_ptr<storage::QueueStore> store_;
  std::unique_ptr<delivery::ContentCache> contents_;
  std::unique_ptr<storage::SuppressionStore> suppressions_;
  delivery::InFlightTable in_flight_;
  std::unique_ptr<api::Api> api_;
  std::unique_ptr<core::LoopGroup> loops_;
  std::vector<std::unique_ptr<delivery::DeliveryCore>> cores_;
  std::vector<std::unique_ptr<api::HttpServer>> servers_;
  std::vector<std::thread> threads_;
  std::vector<int> open_handles_;
  uint16_t http_port_ = 0;
  bool stopped_ = false;

  std::unique_ptr<storage::BlockExpander> expander_;  // null: no blocks
  std::thread expander_thread_;
  std::mutex expander_mu_;
  std::condition_variable expander_cv_;
  std::deque<std::function<void()>> expander_tasks_;
  bool expander_wake_ = false;
  bool expander_stop_ = false;

  std::thread stats_thread_;
  std::mutex stats_mu_;
  std::condition_variable stats_cv_;
  bool stats_stop_ = false;
};

}  // namespace salvo

#endif  // SALVO_ENGINE_ENGINE_H_
