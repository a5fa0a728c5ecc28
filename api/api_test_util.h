// Test helpers for api/: a fake DeliveryHooks that records calls, and JSON
// builders for campaigns. Any thread (the fake locks).
#ifndef SALVO_API_API_TEST_UTIL_H_
#define SALVO_API_API_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <cstdlib>
#include <memory>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "api/api.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/metrics/registry.h"
#include "gtest/gtest.h"
#include "storage/queue_store.h"

namespace salvo::api {

class FakeHooks : public DeliveryHooks {
 public:
  using Call = std::tuple<uint16_t, storage::Lane, int64_t>;
  void OnEnqueued(uint16_t shard, storage::Lane lane, int64_t due,
                  uint64_t /*after_id*/) override {
    absl::MutexLock l(&mu_);
    calls_.emplace_back(shard, lane, due);
  }
  int64_t InFlight(uint64_t content_id) override {
    absl::MutexLock l(&mu_);
    auto it = in_flight_.find(content_id);
    return it == in_flight_.end() ? 0 : it->second;
  }
  // Records the request and answers `reschedule_answer` (settable).
  void Reschedule(uint64_t content_id, const storage::Reschedule& r,
                  std::function<void(absl::StatusOr<int64_t>)> done) override {
    absl::StatusOr<int64_t> answer;
    {
      absl::MutexLock l(&mu_);
      reschedules_.emplace_back(content_id, r);
      answer = reschedule_answer_;
    }
    done(answer);
  }
  void SetRescheduleAnswer(absl::StatusOr<int64_t> a) {
    absl::MutexLock l(&mu_);
    reschedule_answer_ = a;
  }
  std::vector<std::pair<uint64_t, storage::Reschedule>> reschedules() {
    absl::MutexLock l(&mu_);
    return reschedules_;
  }
  void SetInFlight(uint64_t id, int64_t n) {
    absl::MutexLock l(&mu_);
    in_flight_[id] = n;
  }
  std::vector<Call> calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Call> calls_;
  absl::flat_hash_map<uint64_t, int64_t> in_flight_;
  std::vector<std::pair<uint64_t, storage::Reschedule>> reschedules_;
  absl::StatusOr<int64_t> reschedule_answer_ = int64_t{0};
};

// An Api over a real QueueStore in $TEST_TMPDIR, a ManualClock, FakeHooks
// and a loop on its own thread. Set config_ in SetUp, then StartApi(); the
// loop must close cleanly (Run() == 0) at TearDown.
class ApiFixture : public ::testing::Test {
 protected:
  void StartApi(const std::string& name, int num_shards) {
    static int n = 0;
    storage::QueueStore::Options o;
    o.path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name, "_", ++n);
    o.num_shards = num_shards;
    auto store = storage::QueueStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    api_ = std::make_unique<Api>(config_, store_.get(), &hooks_, &registry_,
                                 clock_);
  }
  void StartLoop() {
    thread_ = std::thread([this] { run_result_ = loop_.Run(); });
  }

  void TearDown() override {
    loop_.Stop();
    if (thread_.joinable()) thread_.join();
    EXPECT_EQ(run_result_, 0);
    store_.reset();
  }

  // Handles one request on the loop and waits for its answer.
  HttpResponse Call(const std::string& method, const std::string& path,
                    std::string body = "", const std::string& key = "k1",
                    const std::string& query = "") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.query = query;
    req.body = std::move(body);
    if (!key.empty()) req.headers.emplace_back("authorization", "Bearer " + key);
    HttpResponse out;
    absl::Notification done;
    loop_.Post([&, req = std::move(req)]() mutable {
      api_->Handle(loop_, std::move(req), [&](HttpResponse r) {
        EXPECT_TRUE(loop_.InLoopThread());
        out = std::move(r);
        done.Notify();
      });
    });
    done.WaitForNotification();
    return out;
  }

  // Queue entries over every shard.
  int64_t TotalQueued() {
    int64_t total = 0;
    for (int s = 0; s < store_->num_shards(); ++s) {
      auto n = store_->CountQueued(s);
      EXPECT_TRUE(n.ok());
      total += n.value_or(0);
    }
    return total;
  }

  config::Config config_;
  core::ManualClock clock_;
  metrics::Registry registry_;
  FakeHooks hooks_;
  std::unique_ptr<storage::QueueStore> store_;
  std::unique_ptr<Api> api_;
  core::Loop loop_;
  std::thread thread_;
  int run_result_ = -1;
};

// A campaign body with `n` recipients user<i>@d<i % domains>.example.com,
// each with data {"name": "N<i>"}; the subject uses {{name}}.
inline std::string CampaignJson(int n, int domains = 7) {
  std::string s =
      "{\"name\":\"spring\",\"from\":\"Shop <news@shop.example.com>\","
      "\"subject\":\"Hi {{name}}\",\"html\":\"<p>Hello {{name}}</p>\","
      "\"text\":\"Hello {{name}}\",\"tags\":[\"promo\"],\"recipients\":[";
  s.reserve(s.size() + static_cast<size_t>(n) * 64);
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&s, i ? "," : "", "{\"email\":\"user", i, "@d",
                    i % domains, ".example.com\",\"data\":{\"name\":\"N", i,
                    "\"}}");
  }
  s += "]}";
  return s;
}

}  // namespace salvo::api

#endif  // SALVO_API_API_TEST_UTIL_H_
