// Asynchronous MX then A/AAAA resolution with c-ares on a libuv loop, a cache
// that honours TTLs, the implicit MX (RFC 5321 5.1) and null MX (RFC 7505).
// Static routes send a domain (or "*" for all) to a fixed host:port without
// DNS. Loop thread only; one resolver per loop.
#ifndef SALVO_ENGINE_DNS_MX_RESOLVER_H_
#define SALVO_ENGINE_DNS_MX_RESOLVER_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/time/time.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"

namespace salvo::dns {

struct MxHost {
  std::string name;
  uint16_t preference = 0;
  // Addresses with the SMTP port set (IPv4 first, then IPv6).
  std::vector<sockaddr_storage> addrs;
};

struct MxResult {
  enum class Kind {
    kOk,         // hosts holds at least one host with addresses
    kNullMx,     // RFC 7505: the domain accepts no mail (permanent)
    kNoDomain,   // NXDOMAIN or no MX and no address (permanent)
    kTempFail,   // SERVFAIL, timeout, ... (transient)
  };
  Kind kind = Kind::kTempFail;
  // Ascending preference; hosts of equal preference in random order.
  std::vector<MxHost> hosts;
  std::string error;      // human text for outcomes when not kOk
  absl::Time expires;     // cache expiry
};

struct StaticRoute {
  std::string domain;  // "example.com" or "*"
  std::string host;    // IP literal or name
  uint16_t port = 25;
};

class MxResolver {
 public:
  struct Options {
    // "127.0.0.1:5353" or a comma list; empty: /etc/resolv.conf.
    std::string servers;
    uint16_t smtp_port = 25;
    std::vector<StaticRoute> routes;
    absl::Duration min_ttl = absl::Seconds(5);
    absl::Duration max_ttl = absl::Hours(6);
    absl::Duration negative_ttl = absl::Minutes(5);
    absl::Duration temp_fail_ttl = absl::Seconds(30);
    absl::Duration query_timeout = absl::Seconds(5);
    int tries = 2;
    // Seed for shuffling hosts of equal preference; 0: seeded from entropy.
    uint64_t shuffle_seed = 0;
  };

  // Counters since Create (loop thread).
  struct Stats {
    uint64_t mx_queries = 0;       // MX queries sent
    uint64_t address_queries = 0;  // A and AAAA queries sent
    uint64_t cache_hits = 0;
    uint64_t joined = 0;  // lookups that joined a query already in flight
  };

  // Never nullptr. If c-ares cannot be set up or `servers` does not parse,
  // every lookup answers kTempFail at once with that error.
  static std::unique_ptr<MxResolver> Create(core::Loop& loop,
                                            const Options& options,
                                            const core::Clock& clock);
  virtual ~MxResolver() = default;

  // Cache hits call `done` before returning; misses call it later on the
  // loop. Concurrent lookups of one domain share one query.
  virtual void Resolve(absl::string_view domain,
                       std::function<void(const MxResult&)> done) = 0;
  // Fails pending lookups (kTempFail) and closes every handle. The resolver
  // must be shut down before its loop stops.
  // May be called from inside `done`; then c-ares is torn down as soon as
  // it returns. Do not destroy the resolver from inside `done`.
  virtual void Shutdown() = 0;

  virtual Stats stats() const { return Stats(); }
};

}  // namespace salvo::dns

#endif  // SALVO_ENGINE_DNS_MX_RESOLVER_H_
