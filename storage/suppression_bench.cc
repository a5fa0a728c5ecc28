// SuppressionStore lookups on a real RocksDB (in /tmp, removed at exit):
// IsSuppressed miss and hit (the delivery-time check), and CheckMany over a
// 10k-recipient submission for a tenant with and without entries.
//   bazel run //storage:suppression_bench
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "storage/suppression_store.h"

namespace salvo::storage {
namespace {

struct Fixture {
  Fixture() {
    char tmpl[] = "/tmp/suppression_bench_XXXXXX";
    dir = mkdtemp(tmpl);
    QueueStore::Options o;
    o.path = dir + "/db";
    o.num_shards = 8;
    queue = std::move(*QueueStore::Open(o));
    sup = std::make_unique<SuppressionStore>(queue.get());
    std::vector<std::string> entries;
    for (int i = 0; i < 100000; ++i) {
      entries.push_back(absl::StrCat("user", i, "@d", i % 100, ".example"));
    }
    for (int i = 0; i < 100; ++i) entries.push_back(absl::StrCat("@s", i, ".example"));
    if (!sup->AddNow("busy", entries, SuppressionReason::kApi, 1).ok()) std::abort();
  }
  ~Fixture() {
    sup.reset();
    queue.reset();
    std::system(absl::StrCat("rm -rf ", dir).c_str());
  }
  std::string dir;
  std::unique_ptr<QueueStore> queue;
  std::unique_ptr<SuppressionStore> sup;
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

void BM_IsSuppressedMiss(benchmark::State& state) {
  SuppressionStore& s = *F().sup;
  int i = 0;
  std::string addr;
  for (auto _ : state) {
    addr = absl::StrCat("nobody", i++ % 1000, "@d7.example");
    benchmark::DoNotOptimize(s.IsSuppressed("busy", addr));
  }
}
BENCHMARK(BM_IsSuppressedMiss);

void BM_IsSuppressedHit(benchmark::State& state) {
  SuppressionStore& s = *F().sup;
  int i = 0;
  std::string addr;
  SuppressionEntry m;
  for (auto _ : state) {
    addr = absl::StrCat("user", (i++ * 7919) % 100000, "@d", 0, ".example");
    benchmark::DoNotOptimize(s.IsSuppressed("busy", addr, &m));
  }
}
BENCHMARK(BM_IsSuppressedHit);

void BM_CheckMany10k(benchmark::State& state) {
  SuppressionStore& s = *F().sup;
  const char* tenant = state.range(0) ? "busy" : "quiet";
  std::vector<std::string> addrs;
  for (int i = 0; i < 10000; ++i) {
    addrs.push_back(absl::StrCat("user", i * 13, "@d", i % 100, ".example"));
  }
  std::vector<absl::string_view> views(addrs.begin(), addrs.end());
  std::vector<std::pair<size_t, std::string>> hits;
  for (auto _ : state) {
    hits.clear();
    if (!s.CheckMany(tenant, views, &hits).ok()) state.SkipWithError("failed");
  }
  state.SetItemsProcessed(state.iterations() * 10000);
  state.counters["hits"] = static_cast<double>(hits.size());
}
BENCHMARK(BM_CheckMany10k)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace salvo::storage
