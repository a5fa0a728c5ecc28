// A small metrics registry that writes the Prometheus text exposition format
// (version 0.0.4). Series are found or created once (under a mutex) and then
// updated lock-free through the returned pointer, which stays valid for the
// registry's life. Any thread.
#ifndef SALVO_ENGINE_METRICS_REGISTRY_H_
#define SALVO_ENGINE_METRICS_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace salvo::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  // Cumulative counts per bound plus +Inf, and the sum.
  std::vector<int64_t> cumulative() const;
  double sum() const;
  int64_t count() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<int64_t> count_{0};
  std::atomic<uint64_t> sum_bits_{0};  // double, updated by CAS
};

class Registry {
 public:
  Registry();
  ~Registry();  // Out of line: Family is incomplete here.
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry that /metrics exposes.
  static Registry& Default();

  // Same name with a different type or help is a programming error (abort).
  Counter* GetCounter(absl::string_view name, absl::string_view help,
                      const Labels& labels = {});
  Gauge* GetGauge(absl::string_view name, absl::string_view help,
                  const Labels& labels = {});
  Histogram* GetHistogram(absl::string_view name, absl::string_view help,
                          const std::vector<double>& bounds,
                          const Labels& labels = {});

  // Text exposition format; label values escaped; families sorted by name.
  std::string Expose() const;

 private:
  struct Family;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace salvo::metrics

#endif  // SALVO_ENGINE_METRICS_REGISTRY_H_
