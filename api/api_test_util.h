// Test helpers for api/: a fake DeliveryHooks that records calls, and JSON
// builders for campaigns. Any thread (the fake locks).
#ifndef SALVO_API_API_TEST_UTIL_H_
#define SALVO_API_API_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "api/api.h"

namespace salvo::api {

class FakeHooks : public DeliveryHooks {
 public:
  using Call = std::tuple<uint16_t, storage::Lane, int64_t>;
  void OnEnqueued(uint16_t shard, storage::Lane lane, int64_t due) override {
    absl::MutexLock l(&mu_);
    calls_.emplace_back(shard, lane, due);
  }
  int64_t InFlight(uint64_t content_id) override {
    absl::MutexLock l(&mu_);
    auto it = in_flight_.find(content_id);
    return it == in_flight_.end() ? 0 : it->second;
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
