// MxResolver against a real dnsmasq on 127.0.0.1 (one per test, killed at
// its end). Time for the cache comes from a ManualClock; c-ares timeouts run
// on the loop's real timers. Every test checks Loop::Run() == 0.
#include "engine/dns/mx_resolver.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/dns/dnsmasq_fixture.h"
#include "gtest/gtest.h"

namespace salvo::dns {
namespace {

using Kind = MxResult::Kind;

std::string Addr(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN];
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    return absl::StrCat(buf, ":", ntohs(sin->sin_port));
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
  return absl::StrCat("[", buf, "]:", ntohs(sin6->sin6_port));
}

// "name/pref=addr,addr name/pref=addr".
std::string Describe(const MxResult& r) {
  std::string out;
  for (const MxHost& h : r.hosts) {
    if (!out.empty()) out += " ";
    absl::StrAppend(&out, h.name, "/", h.preference, "=");
    for (size_t i = 0; i < h.addrs.size(); ++i) {
      absl::StrAppend(&out, i ? "," : "", Addr(h.addrs[i]));
    }
  }
  return out;
}

std::vector<std::string> ZoneArgs() {
  return {
      "--local-ttl=60",
      "--mx-host=two.test,mx1.two.test,20",
      "--mx-host=two.test,mx2.two.test,10",
      "--host-record=mx1.two.test,127.0.0.21,::21",
      "--host-record=mx2.two.test,127.0.0.22",
      "--cname=alias.test,two.test",
      "--host-record=implicit.test,127.0.0.30,::30",
      "--dns-rr=null.test,15,000000",  // MX 0 "."
      "--server=/refused.test/#",      // no upstream: REFUSED
      "--mx-host=dangling.test,nohost.test,10",
      "--mx-host=noaddr.test,noaddr-host.test,10",
      "--mx-host=noaddr-host.test,elsewhere.test,10",  // exists, no address
      "--mx-host=equal.test,p.equal.test,5",
      "--mx-host=equal.test,e1.equal.test,10",
      "--mx-host=equal.test,e2.equal.test,10",
      "--mx-host=equal.test,e3.equal.test,10",
      "--host-record=p.equal.test,127.0.0.40",
      "--host-record=e1.equal.test,127.0.0.41",
      "--host-record=e2.equal.test,127.0.0.42",
      "--host-record=e3.equal.test,127.0.0.43",
  };
}

class MxResolverTest : public ::testing::Test {
 protected:
  // dnsmasq's own count of `type` queries for `name`, waiting up to 2 s for
  // its log to reach `expect` (it writes the log asynchronously).
  int ServerSaw(absl::string_view type, absl::string_view name, int expect) {
    int n = 0;
    for (int i = 0; i < 40; ++i) {
      n = dnsmasq_->LoggedQueries(type, name);
      if (n >= expect) break;
      usleep(50 * 1000);
    }
    return n;
  }

  void SetUp() override {
    auto d = Dnsmasq::Start(ZoneArgs());
    ASSERT_TRUE(d.ok()) << d.status();
    dnsmasq_ = std::move(*d);
    options_.servers = dnsmasq_->server();
    options_.smtp_port = 2525;
    options_.shuffle_seed = 42;
    options_.query_timeout = absl::Seconds(2);
  }

  void MakeResolver() {
    resolver_ = MxResolver::Create(loop_, options_, clock_);
    ASSERT_NE(resolver_, nullptr);
  }

  // Runs `body` on the loop; body calls `finish` when it is done, which shuts
  // the resolver down and stops the loop. Returns Loop::Run().
  int RunLoop(std::function<void(std::function<void()>)> body) {
    if (resolver_ == nullptr) MakeResolver();
    // Owned until finish(): no timer may outlive Run().
    auto watchdog = std::make_unique<core::Timer>(loop_);
    auto finish = [this, &watchdog] {
      watchdog.reset();
      resolver_->Shutdown();
      loop_.Stop();
    };
    loop_.Post([&] {
      watchdog->Start(20000, [&] {
        ADD_FAILURE() << "watchdog fired";
        finish();
      });
      body(finish);
    });
    return loop_.Run();
  }

  // Resolves one domain on a fresh loop run.
  MxResult ResolveOne(absl::string_view domain) {
    MxResult out;
    int calls = 0;
    EXPECT_EQ(RunLoop([&](std::function<void()> finish) {
                resolver_->Resolve(domain, [&, finish](const MxResult& r) {
                  ++calls;
                  out = r;
                  finish();
                });
              }),
              0);
    EXPECT_EQ(calls, 1);
    return out;
  }

  std::unique_ptr<Dnsmasq> dnsmasq_;
  core::Loop loop_;
  core::ManualClock clock_;
  MxResolver::Options options_;
  std::unique_ptr<MxResolver> resolver_;
};

TEST_F(MxResolverTest, MxHostsInPreferenceOrderIpv4First) {
  const MxResult r = ResolveOne("two.test");
  ASSERT_EQ(r.kind, Kind::kOk) << r.error;
  EXPECT_EQ(Describe(r),
            "mx2.two.test/10=127.0.0.22:2525 "
            "mx1.two.test/20=127.0.0.21:2525,[::21]:2525");
  EXPECT_EQ(r.expires, clock_.Now() + absl::Seconds(60));
  // dnsmasq puts both A records and mx1's AAAA in the additional section,
  // so only mx2's AAAA is asked for.
  EXPECT_EQ(resolver_->stats().mx_queries, 1u);
  EXPECT_EQ(resolver_->stats().address_queries, 1u);
}

TEST_F(MxResolverTest, FollowsCnameToMx) {
  const MxResult r = ResolveOne("Alias.Test.");
  ASSERT_EQ(r.kind, Kind::kOk) << r.error;
  EXPECT_EQ(Describe(r),
            "mx2.two.test/10=127.0.0.22:2525 "
            "mx1.two.test/20=127.0.0.21:2525,[::21]:2525");
}

TEST_F(MxResolverTest, ImplicitMxUsesTheDomainsAddresses) {
  const MxResult r = ResolveOne("implicit.test");
  ASSERT_EQ(r.kind, Kind::kOk) << r.error;
  EXPECT_EQ(Describe(r), "implicit.test/0=127.0.0.30:2525,[::30]:2525");
  EXPECT_EQ(resolver_->stats().address_queries, 2u);
}

TEST_F(MxResolverTest, NullMx) {
  const MxResult r = ResolveOne("null.test");
  EXPECT_EQ(r.kind, Kind::kNullMx) << r.error;
  EXPECT_TRUE(r.hosts.empty());
  EXPECT_EQ(resolver_->stats().address_queries, 0u);
}

TEST_F(MxResolverTest, NxDomainIsCachedForNegativeTtl) {
  options_.negative_ttl = absl::Minutes(7);
  const MxResult r = ResolveOne("nx.test");
  EXPECT_EQ(r.kind, Kind::kNoDomain) << r.error;
  EXPECT_EQ(r.expires, clock_.Now() + absl::Minutes(7));
}

TEST_F(MxResolverTest, MxHostsThatDoNotExistMeanNoDomain) {
  const MxResult r = ResolveOne("dangling.test");
  EXPECT_EQ(r.kind, Kind::kNoDomain) << r.error;
}

TEST_F(MxResolverTest, MxHostsWithoutAddressesAreTemporary) {
  const MxResult r = ResolveOne("noaddr.test");
  EXPECT_EQ(r.kind, Kind::kTempFail) << r.error;
}

TEST_F(MxResolverTest, RefusedIsTemporaryAndCachedForTempFailTtl) {
  options_.temp_fail_ttl = absl::Seconds(17);
  const MxResult r = ResolveOne("refused.test");
  EXPECT_EQ(r.kind, Kind::kTempFail);
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(r.expires, clock_.Now() + absl::Seconds(17));
}

TEST_F(MxResolverTest, TimeoutIsTemporary) {
  // A UDP socket that never answers.
  const int silent = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  socklen_t len = sizeof(sin);
  getsockname(silent, reinterpret_cast<sockaddr*>(&sin), &len);
  options_.servers = absl::StrCat("127.0.0.1:", ntohs(sin.sin_port));
  options_.query_timeout = absl::Milliseconds(100);
  options_.tries = 1;
  const MxResult r = ResolveOne("two.test");
  close(silent);
  EXPECT_EQ(r.kind, Kind::kTempFail);
  EXPECT_NE(r.error.find("two.test"), std::string::npos) << r.error;
}

TEST_F(MxResolverTest, TtlHonouredThenQueriesAgain) {
  const absl::Time start = clock_.Now();
  std::vector<std::string> log;
  EXPECT_EQ(RunLoop([&](std::function<void()> finish) {
              resolver_->Resolve("two.test", [&, finish](const MxResult& r) {
                EXPECT_EQ(r.expires, start + absl::Seconds(60));
                // Within the TTL: a cache hit, answered before Resolve returns.
                clock_.Advance(absl::Seconds(59));
                bool sync = false;
                resolver_->Resolve("TWO.test", [&](const MxResult& r2) {
                  sync = true;
                  EXPECT_EQ(r2.kind, Kind::kOk);
                });
                EXPECT_TRUE(sync);
                EXPECT_EQ(resolver_->stats().mx_queries, 1u);
                EXPECT_EQ(resolver_->stats().cache_hits, 1u);
                // Past the TTL: asked again.
                clock_.Advance(absl::Seconds(2));
                bool async_done = false;
                resolver_->Resolve("two.test", [&, finish](const MxResult& r3) {
                  async_done = true;
                  EXPECT_EQ(r3.kind, Kind::kOk);
                  EXPECT_EQ(r3.expires, clock_.Now() + absl::Seconds(60));
                  EXPECT_EQ(resolver_->stats().mx_queries, 2u);
                  finish();
                });
                EXPECT_FALSE(async_done);
              });
            }),
            0);
  EXPECT_EQ(resolver_->stats().mx_queries, 2u);
  EXPECT_EQ(ServerSaw("MX", "two.test", 2), 2);
}

TEST_F(MxResolverTest, TtlClampedToMax) {
  options_.max_ttl = absl::Seconds(30);
  const MxResult r = ResolveOne("two.test");
  EXPECT_EQ(r.expires, clock_.Now() + absl::Seconds(30));
}

TEST_F(MxResolverTest, ConcurrentLookupsShareOneQuery) {
  std::vector<std::string> seen;
  EXPECT_EQ(RunLoop([&](std::function<void()> finish) {
              auto done = [&, finish](const MxResult& r) {
                seen.push_back(Describe(r));
                if (seen.size() == 3) finish();
              };
              resolver_->Resolve("two.test", done);
              resolver_->Resolve("two.test", done);
              resolver_->Resolve("Two.Test", done);
              EXPECT_TRUE(seen.empty());
            }),
            0);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], seen[1]);
  EXPECT_EQ(seen[0], seen[2]);
  EXPECT_EQ(resolver_->stats().mx_queries, 1u);
  EXPECT_EQ(resolver_->stats().address_queries, 1u);
  EXPECT_EQ(resolver_->stats().joined, 2u);
  EXPECT_EQ(ServerSaw("MX", "two.test", 1), 1);
}

TEST_F(MxResolverTest, EqualPreferencesShuffledBySeed) {
  const MxResult r = ResolveOne("equal.test");
  ASSERT_EQ(r.kind, Kind::kOk) << r.error;
  ASSERT_EQ(r.hosts.size(), 4u);
  EXPECT_EQ(r.hosts[0].name, "p.equal.test");
  std::set<std::string> orders;
  std::set<std::string> same_seed;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    for (int rep = 0; rep < 2; ++rep) {
      core::Loop loop;
      MxResolver::Options o = options_;
      o.shuffle_seed = seed;
      auto resolver = MxResolver::Create(loop, o, clock_);
      ASSERT_NE(resolver, nullptr);
      std::string order;
      loop.Post([&] {
        resolver->Resolve("equal.test", [&](const MxResult& res) {
          for (const MxHost& h : res.hosts) {
            if (h.preference == 10) order += h.name.substr(0, 2);
          }
          EXPECT_EQ(res.hosts[0].preference, 5);
          resolver->Shutdown();
          loop.Stop();
        });
      });
      EXPECT_EQ(loop.Run(), 0);
      EXPECT_EQ(order.size(), 6u);
      orders.insert(order);
      if (seed == 3) same_seed.insert(order);
    }
  }
  EXPECT_EQ(same_seed.size(), 1u);  // deterministic per seed
  EXPECT_GT(orders.size(), 1u);     // but shuffled
}

TEST_F(MxResolverTest, StaticRouteToIpLiteralNeedsNoDns) {
  options_.routes = {{"static.test", "127.0.0.99", 2600},
                     {"v6.test", "::1", 2601}};
  EXPECT_EQ(RunLoop([&](std::function<void()> finish) {
              int calls = 0;
              resolver_->Resolve("STATIC.test", [&](const MxResult& r) {
                ++calls;
                EXPECT_EQ(r.kind, Kind::kOk);
                EXPECT_EQ(Describe(r), "127.0.0.99/0=127.0.0.99:2600");
              });
              resolver_->Resolve("v6.test", [&](const MxResult& r) {
                ++calls;
                EXPECT_EQ(Describe(r), "::1/0=[::1]:2601");
              });
              EXPECT_EQ(calls, 2);  // synchronous
              finish();
            }),
            0);
  EXPECT_EQ(resolver_->stats().mx_queries, 0u);
  EXPECT_EQ(resolver_->stats().address_queries, 0u);
}

TEST_F(MxResolverTest, StaticRouteToNameLooksUpAddressesOnly) {
  options_.routes = {{"named.test", "mx1.two.test", 2601}};
  const MxResult r = ResolveOne("named.test");
  ASSERT_EQ(r.kind, Kind::kOk) << r.error;
  EXPECT_EQ(Describe(r), "mx1.two.test/0=127.0.0.21:2601,[::21]:2601");
  EXPECT_EQ(resolver_->stats().mx_queries, 0u);
  EXPECT_EQ(resolver_->stats().address_queries, 2u);
}

TEST_F(MxResolverTest, WildcardRouteLosesToExactRoute) {
  options_.routes = {{"*", "127.0.0.98", 2700},
                     {"two.test", "127.0.0.97", 2701}};
  EXPECT_EQ(RunLoop([&](std::function<void()> finish) {
              resolver_->Resolve("two.test", [&](const MxResult& r) {
                EXPECT_EQ(Describe(r), "127.0.0.97/0=127.0.0.97:2701");
              });
              resolver_->Resolve("other.example", [&](const MxResult& r) {
                EXPECT_EQ(Describe(r), "127.0.0.98/0=127.0.0.98:2700");
              });
              finish();
            }),
            0);
  EXPECT_EQ(resolver_->stats().mx_queries, 0u);
}

TEST_F(MxResolverTest, InvalidDomainIsRejectedWithoutDns) {
  const MxResult r = ResolveOne("bad domain!");
  EXPECT_EQ(r.kind, Kind::kNoDomain);
  EXPECT_EQ(resolver_->stats().mx_queries, 0u);
}

TEST_F(MxResolverTest, BadServersAnswerTempFailWithTheReason) {
  options_.servers = "not an address";
  const MxResult r = ResolveOne("two.test");
  EXPECT_EQ(r.kind, Kind::kTempFail);
  EXPECT_NE(r.error.find("not an address"), std::string::npos) << r.error;
}

TEST_F(MxResolverTest, ShutdownFailsPendingLookup) {
  const int silent = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(silent, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  socklen_t len = sizeof(sin);
  getsockname(silent, reinterpret_cast<sockaddr*>(&sin), &len);
  options_.servers = absl::StrCat("127.0.0.1:", ntohs(sin.sin_port));
  MakeResolver();
  int calls = 0;
  auto later = std::make_unique<core::Timer>(loop_);
  loop_.Post([&] {
    resolver_->Resolve("two.test", [&](const MxResult& r) {
      ++calls;
      EXPECT_EQ(r.kind, Kind::kTempFail);
      EXPECT_EQ(r.error, "resolver shut down");
    });
    // Let the query reach the socket, then shut down with it pending.
    later->Start(50, [&] {
      later.reset();
      EXPECT_EQ(calls, 0);
      resolver_->Shutdown();
      EXPECT_EQ(calls, 1);
      // After Shutdown, lookups fail at once.
      resolver_->Resolve("two.test", [&](const MxResult& r) {
        ++calls;
        EXPECT_EQ(r.kind, Kind::kTempFail);
      });
      EXPECT_EQ(calls, 2);
      loop_.Stop();
    });
  });
  const int open = loop_.Run();
  close(silent);
  EXPECT_EQ(open, 0);
  EXPECT_EQ(calls, 2);
}

TEST_F(MxResolverTest, ShutdownFromInsideACallback) {
  MakeResolver();
  int calls = 0;
  loop_.Post([&] {
    resolver_->Resolve("two.test", [&](const MxResult& r) {
      ++calls;
      EXPECT_EQ(r.kind, Kind::kOk);
      resolver_->Shutdown();  // c-ares is still on the stack here
      loop_.Stop();
    });
    resolver_->Resolve("implicit.test", [&](const MxResult& r) {
      ++calls;  // answered first or failed by the shutdown
    });
  });
  EXPECT_EQ(loop_.Run(), 0);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace salvo::dns
