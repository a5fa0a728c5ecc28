// Micro-benchmarks: parsing an MX response; MxResolver cache hits and static
// routes (the per-message cost once a domain is resolved). Single thread.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/dns/dns_message.h"
#include "engine/dns/dnsmasq_fixture.h"
#include "engine/dns/mx_resolver.h"

namespace salvo::dns {
namespace {

std::vector<uint8_t> MxResponse() {
  std::vector<uint8_t> b = {0xAB, 0xCD, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 2};
  auto label = [&](const char* s, size_t n) {
    b.push_back(static_cast<uint8_t>(n));
    b.insert(b.end(), s, s + n);
  };
  label("example", 7);
  label("com", 3);
  b.insert(b.end(), {0, 0, 15, 0, 1});
  for (int i = 0; i < 2; ++i) {
    b.insert(b.end(), {0xC0, 12, 0, 15, 0, 1, 0, 0, 1, 44, 0, 8, 0,
                       static_cast<uint8_t>(10 * (i + 1))});
    label(i ? "mx2" : "mx1", 3);
    b.insert(b.end(), {0xC0, 12});
  }
  for (int i = 0; i < 2; ++i) {
    b.insert(b.end(), {0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2,
                       static_cast<uint8_t>(i + 1)});
  }
  return b;
}

void BM_ParseMxResponse(benchmark::State& state) {
  const std::vector<uint8_t> packet = MxResponse();
  DnsMessage msg;  // reused, as the resolver could
  for (auto _ : state) {
    if (!ParseDnsMessage(packet, &msg).ok()) state.SkipWithError("parse");
    benchmark::DoNotOptimize(msg.answers.data());
  }
  state.SetBytesProcessed(state.iterations() * packet.size());
}
BENCHMARK(BM_ParseMxResponse);

// A domain already in the TTL cache (primed from a real dnsmasq): the
// per-message cost once a domain is resolved. `done` runs synchronously.
void BM_ResolveCacheHit(benchmark::State& state) {
  auto dnsmasq = Dnsmasq::Start({"--local-ttl=3600",
                                 "--mx-host=example.test,mx.example.test,10",
                                 "--host-record=mx.example.test,127.0.0.5"});
  if (!dnsmasq.ok()) {
    state.SkipWithError("dnsmasq did not start");
    return;
  }
  core::Loop loop;
  core::ManualClock clock;
  MxResolver::Options options;
  options.servers = (*dnsmasq)->server();
  auto resolver = MxResolver::Create(loop, options, clock);
  bool primed = false;
  resolver->Resolve("example.test", [&](const MxResult&) { primed = true; });
  while (!primed) uv_run(loop.uv(), UV_RUN_ONCE);
  size_t hosts = 0;
  for (auto _ : state) {
    resolver->Resolve("Example.TEST",
                      [&](const MxResult& r) { hosts += r.hosts.size(); });
  }
  benchmark::DoNotOptimize(hosts);
  if (hosts != state.iterations()) state.SkipWithError("not a cache hit");
  resolver->Shutdown();  // the Loop's destructor runs the close callbacks
}
BENCHMARK(BM_ResolveCacheHit);

// A static route to an IP literal: no cache, no DNS.
void BM_ResolveStaticRoute(benchmark::State& state) {
  core::Loop loop;
  core::ManualClock clock;
  MxResolver::Options options;
  options.servers = "127.0.0.1:9";  // never asked
  options.routes = {{"*", "127.0.0.1", 2525}};
  auto resolver = MxResolver::Create(loop, options, clock);
  size_t hosts = 0;
  for (auto _ : state) {
    resolver->Resolve("Example.COM",
                      [&](const MxResult& r) { hosts += r.hosts.size(); });
  }
  benchmark::DoNotOptimize(hosts);
  resolver->Shutdown();
}
BENCHMARK(BM_ResolveStaticRoute);

}  // namespace
}  // namespace salvo::dns
