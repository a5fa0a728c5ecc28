// MxResolver on c-ares (see mx_resolver.h). c-ares runs in socket-state-
// callback mode: one uv_poll_t per c-ares socket (owned by a SocketPoll, freed
// in its close callback) and one core::Timer for ares_timeout(). Responses are
// parsed with dns_message.h to get TTLs. Loop thread only.
#include "engine/dns/mx_resolver.h"

#include <arpa/inet.h>
#include <ares.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/dns/dns_message.h"

namespace salvo::dns {
namespace {

constexpr size_t kMaxMxHosts = 10;
constexpr int kMaxCnameHops = 8;
constexpr uint32_t kNoTtl = std::numeric_limits<uint32_t>::max();
constexpr size_t kSweepEvery = 4096;

// What one DNS answer says about (name, type).
enum class Answer { kPending, kRecords, kNoData, kNxDomain, kTempFail };

struct HostWork {
  std::string name;
  uint16_t preference = 0;
  std::vector<std::array<uint8_t, 4>> v4;
  std::vector<std::array<uint8_t, 16>> v6;
  Answer v4_answer = Answer::kPending;
  Answer v6_answer = Answer::kPending;
  uint32_t ttl = kNoTtl;
  std::string error;
};

enum class Mode { kMx, kImplicit, kRoute };

struct Lookup {
  uint64_t id = 0;
  std::string key;    // cache key
  std::string qname;  // name asked for (domain, or the route's host)
  Mode mode = Mode::kMx;
  uint16_t port = 25;
  uint32_t ttl = kNoTtl;  // min TTL of MX and CNAME records used
  std::vector<HostWork> hosts;
  int outstanding = 0;
  std::vector<std::function<void(const MxResult&)>> waiters;
};

// Classifies a c-ares answer; fills `msg` when the packet parsed.
Answer Classify(int status, const unsigned char* abuf, int alen,
                DnsMessage* msg, std::string* error) {
  if (abuf != nullptr && alen > 0) {
    absl::Status s =
        ParseDnsMessage(absl::MakeConstSpan(abuf, static_cast<size_t>(alen)),
                        msg);
    if (!s.ok()) {
      *error = std::string(s.message());
      return Answer::kTempFail;
    }
    if (msg->rcode == static_cast<uint8_t>(Rcode::kNxDomain)) {
      return Answer::kNxDomain;
    }
    if (msg->rcode != 0) {
      *error = absl::StrCat("DNS rcode ", msg->rcode);
      return Answer::kTempFail;
    }
    return Answer::kRecords;
  }
  switch (status) {
    case ARES_ENOTFOUND:
      return Answer::kNxDomain;
    case ARES_ENODATA:
      return Answer::kNoData;
    default:
      *error = ares_strerror(status);
      return Answer::kTempFail;
  }
}

// The CNAME chain from `qname` through the answer section (qname first).
void CnameChain(const DnsMessage& msg, absl::string_view qname,
                std::vector<std::string>* names, uint32_t* ttl) {
  names->assign(1, std::string(qname));
  for (int hop = 0; hop < kMaxCnameHops; ++hop) {
    const ResourceRecord* next = nullptr;
    for (const ResourceRecord& rr : msg.answers) {
      if (rr.type == RrType::kCname && SameName(rr.name, names->back())) {
        next = &rr;
        break;
      }
    }
    if (next == nullptr) return;
    *ttl = std::min(*ttl, next->ttl);
    names->push_back(next->target);
  }
}

bool InChain(const std::vector<std::string>& names, absl::string_view name) {
  for (const std::string& n : names) {
    if (SameName(n, name)) return true;
  }
  return false;
}

// Adds A/AAAA records of `section` owned by one of `names` to `host`.
// Returns whether any record of `type` was found.
bool TakeAddresses(const std::vector<ResourceRecord>& section,
                   const std::vector<std::string>& names, RrType type,
                   HostWork* host) {
  bool found = false;
  for (const ResourceRecord& rr : section) {
    if (rr.type != type || !InChain(names, rr.name)) continue;
    found = true;
    host->ttl = std::min(host->ttl, rr.ttl);
    if (type == RrType::kA) {
      std::array<uint8_t, 4> a;
      std::memcpy(a.data(), rr.addr.data(), 4);
      if (std::find(host->v4.begin(), host->v4.end(), a) == host->v4.end()) {
        host->v4.push_back(a);
      }
    } else {
      if (std::find(host->v6.begin(), host->v6.end(), rr.addr) ==
          host->v6.end()) {
        host->v6.push_back(rr.addr);
      }
    }
  }
  return found;
}

sockaddr_storage V4(const uint8_t* bytes, uint16_t port) {
  sockaddr_storage ss{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  std::memcpy(&sin->sin_addr, bytes, 4);
  return ss;
}

sockaddr_storage V6(const uint8_t* bytes, uint16_t port) {
  sockaddr_storage ss{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, bytes, 16);
  return ss;
}

// Lower case, no trailing dot. False for names c-ares should never see.
bool NormalizeDomain(absl::string_view in, std::string* out) {
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.empty() || in.size() > 253) return false;
  out->clear();
  for (char c : in) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (!(absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_')) {
      return false;
    }
    out->push_back(absl::ascii_tolower(u));
  }
  return true;
}

class CaresMxResolver;

// One uv_poll_t per c-ares socket; freed in its close callback.
struct SocketPoll {
  uv_poll_t poll;
  CaresMxResolver* owner;
  ares_socket_t fd;
};

// The argument c-ares carries for one query.
struct QueryArg {
  CaresMxResolver* self;
  uint64_t lookup_id;
  int host;  // -1: the MX query
  RrType type;
};

class CaresMxResolver final : public MxResolver {
 public:
  CaresMxResolver(core::Loop& loop, const Options& options,
                  const core::Clock& clock)
      : loop_(loop),
        options_(options),
        clock_(clock),
        rng_(options.shuffle_seed != 0 ? options.shuffle_seed
                                       : std::random_device()()) {}

  ~CaresMxResolver() override { Shutdown(); }

  bool Init() {
    static std::once_flag once;
    std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
    ares_options opts{};
    opts.sock_state_cb = &CaresMxResolver::OnSockState;
    opts.sock_state_cb_data = this;
    opts.timeout = static_cast<int>(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.query_timeout)));
    opts.tries = std::max(1, options_.tries);
    opts.flags = ARES_FLAG_NOSEARCH;
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                     ARES_OPT_TRIES | ARES_OPT_FLAGS;
    if (int rc = ares_init_options(&channel_, &opts, mask);
        rc != ARES_SUCCESS) {
      channel_ = nullptr;
      init_error_ = absl::StrCat("c-ares init: ", ares_strerror(rc));
      return false;
    }
    if (!options_.servers.empty()) {
      if (int rc =
              ares_set_servers_ports_csv(channel_, options_.servers.c_str());
          rc != ARES_SUCCESS) {
        init_error_ = absl::StrCat("DNS servers '", options_.servers,
                                   "': ", ares_strerror(rc));
        ares_destroy(channel_);
        channel_ = nullptr;
        return false;
      }
    }
    timer_ = std::make_unique<core::Timer>(loop_);
    for (const StaticRoute& route : options_.routes) {
      std::string domain = absl::AsciiStrToLower(route.domain);
      if (!domain.empty() && domain.back() == '.') domain.pop_back();
      if (domain.empty()) continue;
      if (domain == "*") {
        if (wildcard_route_ < 0) wildcard_route_ = &route - &options_.routes[0];
      } else {
        routes_.emplace(domain, &route - &options_.routes[0]);
      }
    }
    for (const StaticRoute& route : options_.routes) {
      route_literals_.push_back(LiteralRoute(route));
      std::string host = absl::AsciiStrToLower(route.host);
      if (!host.empty() && host.back() == '.') host.pop_back();
      route_hosts_.push_back(host);
      route_keys_.push_back(absl::StrCat("\x01", host, ":", route.port));
    }
    return true;
  }

  void Resolve(absl::string_view domain,
               std::function<void(const MxResult&)> done) override {
    if (shut_down_ || !init_error_.empty()) {
      MxResult r;
      r.kind = MxResult::Kind::kTempFail;
      r.error = shut_down_ ? "resolver shut down" : init_error_;
      r.expires = clock_.Now();
      done(r);
      return;
    }
    if (!NormalizeDomain(domain, &key_buf_)) {
      MxResult r;
      r.kind = MxResult::Kind::kNoDomain;
      r.error = absl::StrCat("invalid domain '", domain, "'");
      r.expires = clock_.Now();
      done(r);
      return;
    }
    // Static routes: exact domain, then "*".
    int route = wildcard_route_;
    if (auto it = routes_.find(key_buf_); it != routes_.end()) {
      route = it->second;
    }
    Mode mode = Mode::kMx;
    uint16_t port = options_.smtp_port;
    if (route >= 0) {
      if (route_literals_[route] != nullptr) {
        done(*route_literals_[route]);
        return;
      }
      key_buf_ = route_keys_[route];
      mode = Mode::kRoute;
      port = options_.routes[route].port;
    }
    if (auto it = cache_.find(key_buf_); it != cache_.end()) {
      if (clock_.Now() < it->second->expires) {
        ++stats_.cache_hits;
        std::shared_ptr<const MxResult> hold = it->second;
        done(*hold);
        return;
      }
      cache_.erase(it);
    }
    if (auto it = inflight_.find(key_buf_); it != inflight_.end()) {
      ++stats_.joined;
      it->second->waiters.push_back(std::move(done));
      return;
    }
    auto owned = std::make_unique<Lookup>();
    Lookup* l = owned.get();
    l->id = next_id_++;
    l->key = key_buf_;
    l->mode = mode;
    l->port = port;
    l->waiters.push_back(std::move(done));
    by_id_[l->id] = l;
    inflight_.emplace(l->key, std::move(owned));
    if (mode == Mode::kRoute) {
      l->qname = route_hosts_[route];
      l->hosts.emplace_back();
      l->hosts.back().name = l->qname;
      QueryAddresses(l);
    } else {
      l->qname = l->key;
      l->outstanding = 1;
      Query(l, -1, RrType::kMx);
    }
  }

  void Shutdown() override {
    if (shut_down_) return;
    shut_down_ = true;
    // Fail whatever is pending; waiters may call back into Resolve().
    absl::flat_hash_map<std::string, std::unique_ptr<Lookup>> pending;
    pending.swap(inflight_);
    by_id_.clear();
    MxResult r;
    r.kind = MxResult::Kind::kTempFail;
    r.error = "resolver shut down";
    r.expires = clock_.Now();
    for (auto& [key, lookup] : pending) {
      for (auto& done : lookup->waiters) done(r);
    }
    if (depth_ > 0) {
      teardown_pending_ = true;  // inside c-ares: finish after it returns
    } else {
      Teardown();
    }
  }

  Stats stats() const override { return stats_; }

 private:
  std::shared_ptr<const MxResult> LiteralRoute(const StaticRoute& route) {
    std::array<uint8_t, 16> bytes;
    MxHost host;
    host.name = route.host;
    if (inet_pton(AF_INET, route.host.c_str(), bytes.data()) == 1) {
      host.addrs.push_back(V4(bytes.data(), route.port));
    } else if (inet_pton(AF_INET6, route.host.c_str(), bytes.data()) == 1) {
      host.addrs.push_back(V6(bytes.data(), route.port));
    } else {
      return nullptr;
    }
    auto result = std::make_shared<MxResult>();
    result->kind = MxResult::Kind::kOk;
    result->hosts.push_back(std::move(host));
    result->expires = absl::InfiniteFuture();
    return result;
  }

  void Teardown() {
    teardown_pending_ = false;
    if (channel_ != nullptr) {
      ares_channel channel = channel_;
      ares_destroy(channel);  // EDESTRUCTION callbacks only free their args
      channel_ = nullptr;
    }
    for (auto& [fd, poll] : polls_) ClosePoll(poll);
    polls_.clear();
    timer_.reset();
  }

  // Sends one query; `l->outstanding` must already count it.
  void Query(Lookup* l, int host, RrType type) {
    if (type == RrType::kMx) {
      ++stats_.mx_queries;
    } else {
      ++stats_.address_queries;
    }
    const std::string& name = host < 0 ? l->qname : l->hosts[host].name;
    auto* arg = new QueryArg{this, l->id, host, type};
    ++depth_;
    ares_query(channel_, name.c_str(), /*dnsclass=*/1,
               static_cast<int>(type), &CaresMxResolver::OnAnswer, arg);
    --depth_;
    AfterAres();
  }

  // A and AAAA for every host that still needs them, in parallel.
  void QueryAddresses(Lookup* l) {
    const uint64_t id = l->id;
    ++l->outstanding;  // keeps `l` alive while queries go out
    for (size_t i = 0; i < l->hosts.size(); ++i) {
      for (RrType type : {RrType::kA, RrType::kAaaa}) {
        Lookup* live = Find(id);
        if (live == nullptr) return;
        HostWork& h = live->hosts[i];
        if ((type == RrType::kA ? h.v4_answer : h.v6_answer) !=
            Answer::kPending) {
          continue;
        }
        ++live->outstanding;
        Query(live, static_cast<int>(i), type);
      }
    }
    if (Lookup* live = Find(id)) Release(live);
  }

  Lookup* Find(uint64_t id) {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
  }

  static void OnAnswer(void* raw, int status, int /*timeouts*/,
                       unsigned char* abuf, int alen) {
    std::unique_ptr<QueryArg> arg(static_cast<QueryArg*>(raw));
    if (status == ARES_EDESTRUCTION) return;
    CaresMxResolver* self = arg->self;
    Lookup* l = self->Find(arg->lookup_id);
    if (l == nullptr) return;  // failed by Shutdown()
    DnsMessage msg;
    std::string error;
    const Answer answer = Classify(status, abuf, alen, &msg, &error);
    if (arg->host < 0) {
      self->OnMx(l, answer, msg, error);
    } else {
      self->OnAddress(l, arg->host, arg->type, answer, msg, error);
    }
  }

  void OnMx(Lookup* l, Answer answer, const DnsMessage& msg,
            const std::string& error) {
    if (answer == Answer::kNxDomain) {
      return Finish(l, Negative(MxResult::Kind::kNoDomain,
                                absl::StrCat(l->qname, ": NXDOMAIN")));
    }
    if (answer == Answer::kTempFail) {
      return Finish(l, TempFail(absl::StrCat("MX ", l->qname, ": ", error)));
    }
    std::vector<std::string> names;
    uint32_t ttl = kNoTtl;
    size_t mx_count = 0;
    size_t null_count = 0;
    uint32_t null_ttl = kNoTtl;
    if (answer == Answer::kRecords) {
      CnameChain(msg, l->qname, &names, &ttl);
      for (const ResourceRecord& rr : msg.answers) {
        if (rr.type != RrType::kMx || !InChain(names, rr.name)) continue;
        ++mx_count;
        if (rr.target.empty()) {  // RFC 7505 null MX
          ++null_count;
          null_ttl = std::min(null_ttl, rr.ttl);
          continue;
        }
        ttl = std::min(ttl, rr.ttl);
        auto same = std::find_if(
            l->hosts.begin(), l->hosts.end(),
            [&](const HostWork& h) { return SameName(h.name, rr.target); });
        if (same != l->hosts.end()) {
          same->preference = std::min(same->preference, rr.preference);
        } else if (l->hosts.size() < kMaxMxHosts) {
          l->hosts.emplace_back();
          l->hosts.back().name = rr.target;
          l->hosts.back().preference = rr.preference;
        }
      }
    }
    if (mx_count > 0 && null_count == mx_count) {
      auto r = std::make_shared<MxResult>();
      r->kind = MxResult::Kind::kNullMx;
      r->error = absl::StrCat(l->qname, " accepts no mail (null MX)");
      r->expires = clock_.Now() + ClampTtl(null_ttl);
      return Finish(l, std::move(r));
    }
    if (l->hosts.empty()) {
      // RFC 5321 5.1: no MX, so the domain itself is the implicit MX.
      l->mode = Mode::kImplicit;
      l->hosts.emplace_back();
      l->hosts.back().name = l->qname;
    } else {
      l->ttl = ttl;
      // Use addresses from the additional section where it has them.
      std::vector<std::string> host_names(1);
      for (HostWork& h : l->hosts) {
        host_names[0] = h.name;
        if (TakeAddresses(msg.additional, host_names, RrType::kA, &h)) {
          h.v4_answer = Answer::kRecords;
        }
        if (TakeAddresses(msg.additional, host_names, RrType::kAaaa, &h)) {
          h.v6_answer = Answer::kRecords;
        }
      }
    }
    const uint64_t id = l->id;
    QueryAddresses(l);  // holds its own count
    if (Lookup* live = Find(id)) Release(live);  // the MX query's count
  }

  void OnAddress(Lookup* l, int host, RrType type, Answer answer,
                 const DnsMessage& msg, const std::string& error) {
    HostWork& h = l->hosts[host];
    if (answer == Answer::kRecords) {
      std::vector<std::string> names;
      uint32_t chain_ttl = kNoTtl;
      CnameChain(msg, h.name, &names, &chain_ttl);
      if (TakeAddresses(msg.answers, names, type, &h)) {
        h.ttl = std::min(h.ttl, chain_ttl);
      } else {
        answer = Answer::kNoData;
      }
    } else if (answer == Answer::kTempFail) {
      h.error = error;
    }
    (type == RrType::kA ? h.v4_answer : h.v6_answer) = answer;
    Release(l);
  }

  void Release(Lookup* l) {
    if (--l->outstanding > 0) return;
    Finish(l, Assemble(l));
  }

  // Turns a lookup whose queries all answered into a result.
  std::shared_ptr<MxResult> Assemble(Lookup* l) {
    auto r = std::make_shared<MxResult>();
    uint32_t ttl = l->ttl;
    bool all_nx = true;
    bool any_temp = false;
    std::string first_error;
    for (HostWork& h : l->hosts) {
      if (h.v4.empty() && h.v6.empty()) {
        const bool nx = (h.v4_answer == Answer::kNxDomain ||
                         h.v6_answer == Answer::kNxDomain) &&
                        h.v4_answer != Answer::kTempFail &&
                        h.v6_answer != Answer::kTempFail;
        all_nx = all_nx && nx;
        if (h.v4_answer == Answer::kTempFail ||
            h.v6_answer == Answer::kTempFail) {
          any_temp = true;
          if (first_error.empty()) {
            first_error = absl::StrCat(h.name, ": ", h.error);
          }
        }
        continue;
      }
      MxHost host;
      host.name = std::move(h.name);
      host.preference = h.preference;
      host.addrs.reserve(h.v4.size() + h.v6.size());
      for (const auto& a : h.v4) host.addrs.push_back(V4(a.data(), l->port));
      for (const auto& a : h.v6) host.addrs.push_back(V6(a.data(), l->port));
      ttl = std::min(ttl, h.ttl);
      r->hosts.push_back(std::move(host));
    }
    if (!r->hosts.empty()) {
      std::stable_sort(r->hosts.begin(), r->hosts.end(),
                       [](const MxHost& a, const MxHost& b) {
                         return a.preference < b.preference;
                       });
      for (auto it = r->hosts.begin(); it != r->hosts.end();) {
        auto end = std::find_if(it, r->hosts.end(), [&](const MxHost& h) {
          return h.preference != it->preference;
        });
        std::shuffle(it, end, rng_);
        it = end;
      }
      r->kind = MxResult::Kind::kOk;
      r->expires = clock_.Now() + ClampTtl(ttl);
      return r;
    }
    switch (l->mode) {
      case Mode::kImplicit:
        if (any_temp) return TempFail(first_error);
        return Negative(MxResult::Kind::kNoDomain,
                        absl::StrCat(l->qname, ": no MX and no address"));
      case Mode::kMx:
        if (all_nx) {
          return Negative(MxResult::Kind::kNoDomain,
                          absl::StrCat(l->qname, ": no MX host exists"));
        }
        return TempFail(first_error.empty()
                            ? absl::StrCat(l->qname, ": MX hosts have no address")
                            : first_error);
      case Mode::kRoute:
        break;
    }
    return TempFail(first_error.empty()
                        ? absl::StrCat("static route ", l->qname,
                                       ": no address")
                        : first_error);
  }

  std::shared_ptr<MxResult> Negative(MxResult::Kind kind, std::string error) {
    auto r = std::make_shared<MxResult>();
    r->kind = kind;
    r->error = std::move(error);
    r->expires = clock_.Now() + options_.negative_ttl;
    return r;
  }

  std::shared_ptr<MxResult> TempFail(std::string error) {
    auto r = std::make_shared<MxResult>();
    r->kind = MxResult::Kind::kTempFail;
    r->error = std::move(error);
    r->expires = clock_.Now() + options_.temp_fail_ttl;
    return r;
  }

  absl::Duration ClampTtl(uint32_t ttl) const {
    absl::Duration d = ttl == kNoTtl ? options_.min_ttl : absl::Seconds(ttl);
    return std::clamp(d, options_.min_ttl, options_.max_ttl);
  }

  // Caches `result`, retires the lookup and calls its waiters.
  void Finish(Lookup* l, std::shared_ptr<MxResult> result) {
    std::shared_ptr<const MxResult> hold = std::move(result);
    auto node = inflight_.extract(l->key);
    by_id_.erase(l->id);
    std::unique_ptr<Lookup> owned = std::move(node.mapped());
    if (++inserts_ % kSweepEvery == 0) {
      const absl::Time now = clock_.Now();
      absl::erase_if(cache_, [&](const auto& kv) {
        return kv.second->expires <= now;
      });
    }
    cache_[owned->key] = hold;
    for (auto& done : owned->waiters) done(*hold);
  }

  // --- c-ares <-> libuv ---

  static void OnSockState(void* data, ares_socket_t fd, int readable,
                          int writable) {
    auto* self = static_cast<CaresMxResolver*>(data);
    auto it = self->polls_.find(fd);
    if (!readable && !writable) {
      if (it != self->polls_.end()) {
        ClosePoll(it->second);
        self->polls_.erase(it);
      }
      return;
    }
    SocketPoll* p;
    if (it == self->polls_.end()) {
      p = new SocketPoll{};
      p->owner = self;
      p->fd = fd;
      if (uv_poll_init_socket(self->loop_.uv(), &p->poll, fd) != 0) {
        delete p;  // c-ares times the query out
        return;
      }
      p->poll.data = p;
      self->polls_.emplace(fd, p);
    } else {
      p = it->second;
    }
    uv_poll_start(&p->poll,
                  (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  &CaresMxResolver::OnPoll);
  }

  static void ClosePoll(SocketPoll* p) {
    uv_poll_stop(&p->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->poll), [](uv_handle_t* h) {
      delete static_cast<SocketPoll*>(h->data);
    });
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    auto* p = static_cast<SocketPoll*>(handle->data);
    CaresMxResolver* self = p->owner;
    const ares_socket_t fd = p->fd;
    if (self->channel_ == nullptr) return;
    ++self->depth_;
    if (status < 0) {
      ares_process_fd(self->channel_, fd, fd);  // let c-ares see the error
    } else {
      ares_process_fd(self->channel_,
                      (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                      (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
    }
    --self->depth_;
    self->AfterAres();
  }

  void OnTimer() {
    if (channel_ == nullptr) return;
    ++depth_;
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    --depth_;
    AfterAres();
  }

  void AfterAres() {
    if (depth_ > 0) return;
    if (teardown_pending_) return Teardown();
    if (channel_ == nullptr || timer_ == nullptr) return;
    timeval tv;
    timeval* next = ares_timeout(channel_, nullptr, &tv);
    if (next == nullptr) {
      timer_->Stop();
      return;
    }
    const uint64_t ms = static_cast<uint64_t>(next->tv_sec) * 1000 +
                        (static_cast<uint64_t>(next->tv_usec) + 999) / 1000;
    timer_->Start(ms, [this] { OnTimer(); });
  }

  core::Loop& loop_;
  const Options options_;
  const core::Clock& clock_;
  std::mt19937_64 rng_;
  ares_channel channel_ = nullptr;
  std::unique_ptr<core::Timer> timer_;
  absl::flat_hash_map<ares_socket_t, SocketPoll*> polls_;
  absl::flat_hash_map<std::string, int> routes_;  // domain -> route index
  int wildcard_route_ = -1;
  std::vector<std::shared_ptr<const MxResult>> route_literals_;
  std::vector<std::string> route_hosts_;  // lower case, no trailing dot
  std::vector<std::string> route_keys_;   // cache keys of name routes
  absl::flat_hash_map<std::string, std::shared_ptr<const MxResult>> cache_;
  absl::flat_hash_map<std::string, std::unique_ptr<Lookup>> inflight_;
  absl::flat_hash_map<uint64_t, Lookup*> by_id_;
  uint64_t next_id_ = 1;
  uint64_t inserts_ = 0;
  int depth_ = 0;  // > 0 while inside a c-ares call
  bool shut_down_ = false;
  bool teardown_pending_ = false;
  std::string key_buf_;
  std::string init_error_;  // set when c-ares could not be set up
  Stats stats_;
};

}  // namespace

std::unique_ptr<MxResolver> MxResolver::Create(core::Loop& loop,
                                               const Options& options,
                                               const core::Clock& clock) {
  auto resolver = std::make_unique<CaresMxResolver>(loop, options, clock);
  resolver->Init();  // on failure every lookup answers kTempFail
  return resolver;
}

}  // namespace salvo::dns
