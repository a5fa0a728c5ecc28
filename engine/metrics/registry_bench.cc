// Micro-benchmarks of the metrics hot path: counter increments (one and
// several threads), histogram observations, series lookup, and Expose().
// Run: bazel run //engine/metrics:registry_bench
#include <string>

#include "benchmark/benchmark.h"
#include "engine/metrics/metric_names.h"
#include "engine/metrics/registry.h"

namespace salvo::metrics {
namespace {

Registry& BenchRegistry() {
  static Registry* r = new Registry();
  return *r;
}

void BM_CounterInc(benchmark::State& state) {
  Counter* c = BenchRegistry().GetCounter("salvo_bench_total", "B.",
                                          {{"domain", "example.com"}});
  for (auto _ : state) c->Inc();
  benchmark::DoNotOptimize(c->value());
}
BENCHMARK(BM_CounterInc)->Threads(1)->Threads(2);

void BM_HistogramObserve(benchmark::State& state) {
  std::vector<double> bounds(std::begin(kDeliveryLatencyBounds),
                             std::end(kDeliveryLatencyBounds));
  Histogram* h = BenchRegistry().GetHistogram(
      "salvo_bench_seconds", "B.", bounds);
  double v = 0;
  for (auto _ : state) {
    h->Observe(v);
    v = v > 100 ? 0 : v + 0.37;
  }
}
BENCHMARK(BM_HistogramObserve)->Threads(1)->Threads(2);

void BM_GetCounterExisting(benchmark::State& state) {
  Registry r;
  Labels labels = {{"domain", "example.com"}, {"result", "delivered"}};
  r.GetCounter("salvo_deliveries_total", "D.", labels);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        r.GetCounter("salvo_deliveries_total", "D.", labels));
  }
}
BENCHMARK(BM_GetCounterExisting);

void BM_Expose(benchmark::State& state) {
  Registry r;
  for (int i = 0; i < state.range(0); ++i) {
    r.GetCounter("salvo_deliveries_total", "D.",
                 {{"domain", "d" + std::to_string(i) + ".example"},
                  {"result", "delivered"}})
        ->Inc(i);
  }
  r.GetHistogram("salvo_delivery_latency_seconds", "L.",
                 std::vector<double>(std::begin(kDeliveryLatencyBounds),
                                     std::end(kDeliveryLatencyBounds)))
      ->Observe(1);
  size_t bytes = 0;
  for (auto _ : state) bytes += r.Expose().size();
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_Expose)->Arg(100)->Arg(1000);

}  // namespace
}  // namespace salvo::metrics
