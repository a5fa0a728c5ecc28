// Micro-benchmarks of the per-recipient hygiene work: signing a token into a
// List-Unsubscribe value, verifying a token, building a VERP address.
//   bazel run //engine/hygiene:hygiene_bench
#include <string>

#include "benchmark/benchmark.h"
#include "engine/hygiene/list_unsubscribe.h"
#include "engine/hygiene/verp.h"

namespace salvo::hygiene {
namespace {

HygieneOptions Options() {
  HygieneOptions o;
  o.unsubscribe_secret = "0123456789abcdef0123456789abcdef";
  o.unsubscribe_base_url = "https://mail.example.com";
  o.unsubscribe_mailto_domain = "unsub.example.com";
  return o;
}

void BM_ListUnsubscribeValue(benchmark::State& state) {
  const HygieneOptions o = Options();
  std::string out;
  uint64_t id = 1;
  for (auto _ : state) {
    out.clear();
    if (!AppendListUnsubscribe(o, {"tenant1", id++, "someone@example.com"},
                               &out)
             .ok()) {
      state.SkipWithError("sign failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_ListUnsubscribeValue);

void BM_VerifyToken(benchmark::State& state) {
  const HygieneOptions o = Options();
  const std::string tok =
      *SignUnsubscribeToken(o.unsubscribe_secret,
                            {"tenant1", 42, "someone@example.com"});
  for (auto _ : state) {
    auto v = VerifyUnsubscribeToken(o.unsubscribe_secret, tok);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_VerifyToken);

void BM_AppendVerp(benchmark::State& state) {
  std::string out;
  uint64_t id = 1;
  for (auto _ : state) {
    out.clear();
    AppendVerp({id, id + 1}, "bounce.example.com", &out);
    ++id;
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_AppendVerp);

}  // namespace
}  // namespace salvo::hygiene
