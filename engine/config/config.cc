// Loads Salvo's TOML configuration over the defaults in Config{}.
// In: TOML text, a file path, or "section.key=value" overrides. Out: a
// validated Config, or InvalidArgument naming the key, the expected value,
// what was found and (for files) the line. Called at start-up, any thread;
// no shared state. toml++ is used header-only with exceptions off.
#include "engine/config/config.h"

#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace salvo::config {
namespace {

// toml++ speaks std::string_view; Debian's absl::string_view is its own type.
absl::string_view Sv(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// How a value is reported: with its line when it came from a file.
struct Source {
  bool lines = true;
};

std::string Describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return absl::StrCat("\"", absl::CHexEscape(*node.value<std::string>()),
                          "\"");
    case toml::node_type::integer:
      return absl::StrCat(*node.value<int64_t>());
    case toml::node_type::floating_point:
      return absl::StrCat(*node.value<double>());
    case toml::node_type::boolean:
      return *node.value<bool>() ? "true" : "false";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date/time";
  }
}

std::string LineSuffix(const toml::node& node, const Source& src) {
  if (!src.lines || node.source().begin.line == 0) return "";
  return absl::StrCat(" (line ", node.source().begin.line, ")");
}

absl::Status Expected(absl::string_view path, absl::string_view what,
                      const toml::node& node, const Source& src) {
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": expected ", what, ", got ", Describe(node),
      LineSuffix(node, src)));
}

absl::Status Unknown(absl::string_view path, absl::string_view what,
                     const toml::node& node, const Source& src) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unknown ", what, LineSuffix(node, src)));
}

// "host:port", "[v6]:port"; with optional_port also a bare "host".
bool ValidHostPort(absl::string_view s, int min_port, bool optional_port) {
  absl::string_view host = s, port;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == absl::string_view::npos) return false;
    host = s.substr(1, close - 1);
    absl::string_view rest = s.substr(close + 1);
    if (rest.empty()) {
      if (!optional_port) return false;
    } else if (rest[0] != ':') {
      return false;
    } else {
      port = rest.substr(1);
      if (port.empty()) return false;
    }
  } else {
    size_t colon = s.rfind(':');
    if (colon == absl::string_view::npos) {
      if (!optional_port) return false;
    } else {
      host = s.substr(0, colon);
      port = s.substr(colon + 1);
      if (port.empty() || host.find(':') != absl::string_view::npos) {
        return false;
      }
    }
  }
  if (host.empty()) return false;
  for (char c : host) {
    if (absl::ascii_isspace(c)) return false;
  }
  if (port.empty()) return true;
  for (char c : port) {
    if (!absl::ascii_isdigit(c)) return false;
  }
  int p;
  return port.size() <= 5 && absl::SimpleAtoi(port, &p) && p >= min_port &&
         p <= 65535;
}

using Setter = std::function<absl::Status(const toml::node&, Config*,
                                          absl::string_view, const Source&)>;

Setter Int(int Config::*field, int64_t min, absl::string_view what) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    std::optional<int64_t> v = n.is_integer() ? n.value<int64_t>()
                                              : std::nullopt;
    if (!v || *v < min || *v > std::numeric_limits<int>::max()) {
      return Expected(path, what, n, src);
    }
    c->*field = static_cast<int>(*v);
    return absl::OkStatus();
  };
}

Setter IntRange(int Config::*field, int64_t min, int64_t max,
                absl::string_view what) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    std::optional<int64_t> v = n.is_integer() ? n.value<int64_t>()
                                              : std::nullopt;
    if (!v || *v < min || *v > max) return Expected(path, what, n, src);
    c->*field = static_cast<int>(*v);
    return absl::OkStatus();
  };
}

Setter Int64(int64_t Config::*field) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    std::optional<int64_t> v = n.is_integer() ? n.value<int64_t>()
                                              : std::nullopt;
    if (!v || *v < 1) return Expected(path, "a positive integer", n, src);
    c->*field = *v;
    return absl::OkStatus();
  };
}

Setter Port(uint16_t Config::*field) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    std::optional<int64_t> v = n.is_integer() ? n.value<int64_t>()
                                              : std::nullopt;
    if (!v || *v < 1 || *v > 65535) {
      return Expected(path, "a port number in 1..65535", n, src);
    }
    c->*field = static_cast<uint16_t>(*v);
    return absl::OkStatus();
  };
}

Setter Bool(bool Config::*field) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    if (!n.is_boolean()) return Expected(path, "true or false", n, src);
    c->*field = *n.value<bool>();
    return absl::OkStatus();
  };
}

// check(value) says whether a string is acceptable.
Setter String(std::string Config::*field, absl::string_view what,
              std::function<bool(absl::string_view)> check) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    if (!n.is_string() || !check(Sv(*n.value<std::string_view>()))) {
      return Expected(path, what, n, src);
    }
    c->*field = *n.value<std::string>();
    return absl::OkStatus();
  };
}

bool NonEmpty(absl::string_view s) { return !s.empty(); }
bool AnyString(absl::string_view) { return true; }
bool ValidTlsPolicy(absl::string_view s) {
  return s == "disabled" || s == "opportunistic" || s == "required" ||
         s == "required_verify";
}

Setter Duration(absl::Duration Config::*field) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    absl::Duration d;
    if (!n.is_string() ||
        !absl::ParseDuration(*n.value<std::string>(), &d) ||
        d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
      return Expected(path, "a positive duration such as \"30s\" or \"5m\"",
                      n, src);
    }
    c->*field = d;
    return absl::OkStatus();
  };
}

Setter Double(double Config::*field, double min, double max,
              absl::string_view what) {
  return [=](const toml::node& n, Config* c, absl::string_view path,
             const Source& src) -> absl::Status {
    std::optional<double> v;
    if (n.is_floating_point()) v = n.value<double>();
    if (n.is_integer()) v = static_cast<double>(*n.value<int64_t>());
    if (!v || !(*v >= min && *v <= max)) return Expected(path, what, n, src);
    c->*field = *v;
    return absl::OkStatus();
  };
}

struct Key {
  const char* section;
  const char* name;
  Setter set;
};

const std::vector<Key>& Keys() {
  static const auto* keys = new std::vector<Key>{
      {"server", "http_listen",
       String(&Config::http_listen, "host:port with a port in 0..65535",
              [](absl::string_view s) { return ValidHostPort(s, 0, false); })},
      {"server", "loops", Int(&Config::loops, 0, "an integer >= 0")},
      {"server", "hostname",
       String(&Config::hostname, "a non-empty string", NonEmpty)},
      {"spool", "path",
       String(&Config::spool_path, "a non-empty string", NonEmpty)},
      {"spool", "shards",
       IntRange(&Config::shards, 1, 4096, "an integer in 1..4096")},
      {"spool", "sync", Bool(&Config::spool_sync)},
      {"spool", "min_free_bytes", Int64(&Config::spool_min_free_bytes)},
      {"spool", "outcome_sync_interval",
       Duration(&Config::outcome_sync_interval)},
      {"spool", "expand_window",
       Int(&Config::expand_window, 0, "an integer >= 0")},
      {"limits", "max_request_bytes", Int64(&Config::max_request_bytes)},
      {"limits", "max_message_bytes", Int64(&Config::max_message_bytes)},
      {"limits", "max_recipients_per_message",
       Int(&Config::max_recipients_per_message, 1, "a positive integer")},
      {"limits", "upload_chunk_recipients",
       Int(&Config::upload_chunk_recipients, 1, "a positive integer")},
      {"limits", "upload_window",
       Int(&Config::upload_window, 1, "a positive integer")},
      {"delivery", "smtp_port", Port(&Config::smtp_port)},
      {"delivery", "max_connections_per_host",
       Int(&Config::max_connections_per_host, 1, "a positive integer")},
      {"delivery", "max_messages_per_connection",
       Int(&Config::max_messages_per_connection, 1, "a positive integer")},
      {"delivery", "max_recipients_per_transaction",
       Int(&Config::max_recipients_per_transaction, 1, "a positive integer")},
      {"delivery", "idle_timeout", Duration(&Config::idle_timeout)},
      {"delivery", "connect_timeout", Duration(&Config::connect_timeout)},
      {"delivery", "greeting_timeout", Duration(&Config::greeting_timeout)},
      {"delivery", "ehlo_timeout", Duration(&Config::ehlo_timeout)},
      {"delivery", "mail_timeout", Duration(&Config::mail_timeout)},
      {"delivery", "rcpt_timeout", Duration(&Config::rcpt_timeout)},
      {"delivery", "data_init_timeout", Duration(&Config::data_init_timeout)},
      {"delivery", "data_block_timeout",
       Duration(&Config::data_block_timeout)},
      {"delivery", "data_end_timeout", Duration(&Config::data_end_timeout)},
      {"delivery", "max_in_flight_per_loop",
       Int(&Config::max_in_flight_per_loop, 1, "a positive integer")},
      {"delivery", "in_flight_resume_fraction",
       Double(&Config::in_flight_resume_fraction, 0.0, 1.0,
              "a number in 0..1")},
      {"delivery", "transactional_in_flight_reserve",
       Int(&Config::transactional_in_flight_reserve, 0, "an integer >= 0")},
      {"delivery", "max_ready_per_domain",
       Int(&Config::max_ready_per_domain, 1, "a positive integer")},
      {"delivery", "content_cache_entries",
       Int(&Config::content_cache_entries, 1, "a positive integer")},
      {"delivery", "reserved_connections",
       Int(&Config::reserved_connections, 0, "an integer >= 0")},
      {"delivery", "bulk_quantum",
       Int(&Config::bulk_quantum, 1, "a positive integer")},
      {"delivery", "full_destination_requeue_after",
       Duration(&Config::full_destination_requeue_after)},
      {"retry", "initial", Duration(&Config::retry_initial)},
      {"retry", "max", Duration(&Config::retry_max)},
      {"retry", "multiplier",
       Double(&Config::retry_multiplier, 1.0, 1000.0, "a number in 1..1000")},
      {"retry", "jitter",
       Double(&Config::retry_jitter, 0.0, 1.0, "a number in 0..1")},
      {"retry", "expiry", Duration(&Config::expiry)},
      {"dns", "servers",
       String(&Config::dns_servers,
              "\"\" or comma-separated host[:port] with ports in 1..65535",
              [](absl::string_view s) {
                if (s.empty()) return true;
                for (absl::string_view part : absl::StrSplit(s, ',')) {
                  if (!ValidHostPort(absl::StripAsciiWhitespace(part), 1,
                                     true)) {
                    return false;
                  }
                }
                return true;
              })},
      {"tls", "policy",
       String(&Config::tls_policy,
              "\"disabled\", \"opportunistic\", \"required\" or "
              "\"required_verify\"",
              ValidTlsPolicy)},
      {"tls", "fallback_ttl", Duration(&Config::tls_fallback_ttl)},
      {"tls", "ca_file",
       String(&Config::tls_ca_file, "\"\" or a PEM file path", AnyString)},
      {"hygiene", "unsubscribe_secret",
       String(&Config::unsubscribe_secret, "a string", AnyString)},
      {"hygiene", "unsubscribe_base_url",
       String(&Config::unsubscribe_base_url, "\"\" or an https:// URL",
              [](absl::string_view s) {
                return s.empty() || absl::StartsWith(s, "https://") ||
                       absl::StartsWith(s, "http://");
              })},
      {"hygiene", "unsubscribe_mailto_domain",
       String(&Config::unsubscribe_mailto_domain, "a domain", AnyString)},
      {"hygiene", "bounce_domain",
       String(&Config::bounce_domain, "a domain", AnyString)},
      {"events", "retention_hours",
       Int(&Config::events_retention_hours, 1, "a positive integer")},
      {"events", "log_path",
       String(&Config::events_log_path, "a path or \"\"", AnyString)},
      {"events", "log_max_bytes", Int64(&Config::events_log_max_bytes)},
      {"dns", "min_ttl", Duration(&Config::dns_min_ttl)},
      {"dns", "max_ttl", Duration(&Config::dns_max_ttl)},
      {"dns", "negative_ttl", Duration(&Config::dns_negative_ttl)},
  };
  return *keys;
}

const Key* FindKey(absl::string_view section, absl::string_view name) {
  for (const Key& k : Keys()) {
    if (section == k.section && name == k.name) return &k;
  }
  return nullptr;
}

bool IsSection(absl::string_view section) {
  for (const Key& k : Keys()) {
    if (section == k.section) return true;
  }
  return false;
}

// Reads a required non-empty string field of an array element.
absl::Status ElementString(const toml::table& t, const toml::node& element,
                           absl::string_view path, const char* name,
                           const Source& src, std::string* out) {
  const toml::node* n = t.get(name);
  std::string key = absl::StrCat(path, ".", name);
  if (n == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": missing", LineSuffix(element, src)));
  }
  if (!n->is_string() || n->value<std::string_view>()->empty()) {
    return Expected(key, "a non-empty string", *n, src);
  }
  *out = *n->value<std::string>();
  return absl::OkStatus();
}

absl::Status CheckElementKeys(const toml::table& t, absl::string_view path,
                              std::initializer_list<absl::string_view> allowed,
                              const Source& src) {
  for (const auto& [k, v] : t) {
    bool known = false;
    for (absl::string_view a : allowed) known = known || Sv(k.str()) == a;
    if (!known) {
      return Unknown(absl::StrCat(path, ".", Sv(k.str())), "key", v, src);
    }
  }
  return absl::OkStatus();
}

const toml::array* ArrayOfTables(const toml::node& n) {
  const toml::array* a = n.as_array();
  if (a == nullptr) return nullptr;
  for (const toml::node& e : *a) {
    if (!e.is_table()) return nullptr;
  }
  return a;
}

absl::Status SetRoutes(const toml::node& n, Config* c, const Source& src) {
  const toml::array* a = ArrayOfTables(n);
  if (a == nullptr) {
    return Expected("routes", "an array of tables ([[routes]])", n, src);
  }
  std::vector<Route> routes;
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    const toml::table& t = *e.as_table();
    std::string path = absl::StrCat("routes[", i, "]");
    if (absl::Status s = CheckElementKeys(t, path, {"domain", "host", "port"},
                                          src);
        !s.ok()) {
      return s;
    }
    Route r;
    if (absl::Status s = ElementString(t, e, path, "domain", src, &r.domain);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ElementString(t, e, path, "host", src, &r.host);
        !s.ok()) {
      return s;
    }
    if (const toml::node* p = t.get("port")) {
      std::optional<int64_t> v =
          p->is_integer() ? p->value<int64_t>() : std::nullopt;
      if (!v || *v < 1 || *v > 65535) {
        return Expected(path + ".port", "a port number in 1..65535", *p, src);
      }
      r.port = static_cast<uint16_t>(*v);
    }
    for (size_t j = 0; j < routes.size(); ++j) {
      if (routes[j].domain == r.domain) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ".domain: duplicate of routes[", j, "].domain \"",
            absl::CHexEscape(r.domain), "\"", LineSuffix(e, src)));
      }
    }
    routes.push_back(std::move(r));
  }
  c->routes = std::move(routes);
  return absl::OkStatus();
}

absl::Status SetDkim(const toml::node& n, Config* c, const Source& src) {
  const toml::array* a = ArrayOfTables(n);
  if (a == nullptr) {
    return Expected("dkim", "an array of tables ([[dkim]])", n, src);
  }
  std::vector<DkimKey> keys;
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    const toml::table& t = *e.as_table();
    std::string path = absl::StrCat("dkim[", i, "]");
    if (absl::Status s = CheckElementKeys(
            t, path, {"domain", "selector", "algorithm", "key_file", "headers"},
            src);
        !s.ok()) {
      return s;
    }
    DkimKey k;
    for (auto [name, out] : {std::pair<const char*, std::string*>{"domain", &k.domain},
                             {"selector", &k.selector},
                             {"algorithm", &k.algorithm},
                             {"key_file", &k.key_file}}) {
      if (absl::Status s = ElementString(t, e, path, name, src, out); !s.ok()) {
        return s;
      }
    }
    if (k.algorithm != "rsa-sha256" && k.algorithm != "ed25519-sha256") {
      return Expected(path + ".algorithm", "\"rsa-sha256\" or \"ed25519-sha256\"",
                      *t.get("algorithm"), src);
    }
    if (const toml::node* h = t.get("headers")) {
      const toml::array* ha = h->as_array();
      if (ha == nullptr) {
        return Expected(path + ".headers", "an array of header names", *h, src);
      }
      for (const toml::node& name : *ha) {
        if (!name.is_string() || name.value<std::string_view>()->empty()) {
          return Expected(path + ".headers", "an array of header names", *h,
                          src);
        }
        k.headers.push_back(*name.value<std::string>());
      }
    }
    keys.push_back(std::move(k));
  }
  c->dkim = std::move(keys);
  return absl::OkStatus();
}

absl::Status SetTlsPolicies(const toml::node& n, Config* c,
                            const Source& src) {
  const toml::array* a = ArrayOfTables(n);
  if (a == nullptr) {
    return Expected("tls_policies", "an array of tables ([[tls_policies]])", n,
                    src);
  }
  std::vector<TlsDomainPolicy> out;
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    const toml::table& t = *e.as_table();
    std::string path = absl::StrCat("tls_policies[", i, "]");
    if (absl::Status s = CheckElementKeys(t, path, {"domain", "policy"}, src);
        !s.ok()) {
      return s;
    }
    TlsDomainPolicy p;
    if (absl::Status s = ElementString(t, e, path, "domain", src, &p.domain);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ElementString(t, e, path, "policy", src, &p.policy);
        !s.ok()) {
      return s;
    }
    if (!ValidTlsPolicy(p.policy)) {
      return Expected(path + ".policy",
                      "\"disabled\", \"opportunistic\", \"required\" or "
                      "\"required_verify\"",
                      *t.get("policy"), src);
    }
    out.push_back(std::move(p));
  }
  c->tls_policies = std::move(out);
  return absl::OkStatus();
}

absl::Status SetApiKeys(const toml::node& n, Config* c, const Source& src) {
  const toml::array* a = ArrayOfTables(n);
  if (a == nullptr) {
    return Expected("api_keys", "an array of tables ([[api_keys]])", n, src);
  }
  absl::flat_hash_map<std::string, std::string> keys;
  absl::flat_hash_map<std::string, size_t> index;
  for (size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    const toml::table& t = *e.as_table();
    std::string path = absl::StrCat("api_keys[", i, "]");
    if (absl::Status s = CheckElementKeys(t, path, {"key", "tenant"}, src);
        !s.ok()) {
      return s;
    }
    std::string key, tenant;
    if (absl::Status s = ElementString(t, e, path, "key", src, &key); !s.ok()) {
      return s;
    }
    if (absl::Status s = ElementString(t, e, path, "tenant", src, &tenant);
        !s.ok()) {
      return s;
    }
    auto [it, inserted] = index.emplace(key, i);
    if (!inserted) {
      // The secret itself is not repeated in the message.
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".key: duplicate of api_keys[", it->second,
                       "].key", LineSuffix(*t.get("key"), src)));
    }
    keys.emplace(std::move(key), std::move(tenant));
  }
  c->api_keys = std::move(keys);
  return absl::OkStatus();
}

// Relations between keys, checked after every change.
absl::Status CrossCheck(const Config& c) {
  if (c.retry_max < c.retry_initial) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry.max: must be >= retry.initial (",
        absl::FormatDuration(c.retry_max), " < ",
        absl::FormatDuration(c.retry_initial), ")"));
  }
  if (c.dns_max_ttl < c.dns_min_ttl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dns.max_ttl: must be >= dns.min_ttl (",
        absl::FormatDuration(c.dns_max_ttl), " < ",
        absl::FormatDuration(c.dns_min_ttl), ")"));
  }
  return absl::OkStatus();
}

absl::Status ApplyTable(const toml::table& root, Config* c,
                        const Source& src) {
  for (const auto& [k, v] : root) {
    absl::string_view section = Sv(k.str());
    if (section == "routes") {
      if (absl::Status s = SetRoutes(v, c, src); !s.ok()) return s;
      continue;
    }
    if (section == "api_keys") {
      if (absl::Status s = SetApiKeys(v, c, src); !s.ok()) return s;
      continue;
    }
    if (section == "dkim") {
      if (absl::Status s = SetDkim(v, c, src); !s.ok()) return s;
      continue;
    }
    if (section == "tls_policies") {
      if (absl::Status s = SetTlsPolicies(v, c, src); !s.ok()) return s;
      continue;
    }
    if (!IsSection(section)) return Unknown(section, "section", v, src);
    const toml::table* t = v.as_table();
    if (t == nullptr) return Expected(section, "a table", v, src);
    for (const auto& [name, value] : *t) {
      std::string path = absl::StrCat(section, ".", Sv(name.str()));
      const Key* key = FindKey(section, Sv(name.str()));
      if (key == nullptr) return Unknown(path, "key", value, src);
      if (absl::Status s = key->set(value, c, path, src); !s.ok()) return s;
    }
  }
  return CrossCheck(*c);
}

}  // namespace

absl::StatusOr<Config> ParseConfig(absl::string_view toml_text) {
  toml::parse_result result =
      toml::parse(std::string_view(toml_text.data(), toml_text.size()));
  if (!result) {
    const toml::parse_error& e = result.error();
    return absl::InvalidArgumentError(
        absl::StrCat("TOML syntax: ", Sv(e.description()), " (line ",
                     e.source().begin.line, ")"));
  }
  Config config;
  if (absl::Status s = ApplyTable(result.table(), &config, Source{});
      !s.ok()) {
    return s;
  }
  return config;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<Config> config = ParseConfig(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::Status ApplyOverride(absl::string_view assignment, Config* config) {
  size_t eq = assignment.find('=');
  if (eq == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "override \"", absl::CHexEscape(assignment),
        "\": expected section.key=value"));
  }
  absl::string_view path = absl::StripAsciiWhitespace(assignment.substr(0, eq));
  absl::string_view text = absl::StripAsciiWhitespace(assignment.substr(eq + 1));

  // The value as TOML when it is a single TOML value, else a bare string.
  toml::parse_result parsed =
      toml::parse(absl::StrCat("v = ", text, "\n"));
  std::unique_ptr<toml::node> bare;
  const toml::node* value = nullptr;
  if (parsed && parsed.table().size() == 1) value = parsed.table().get("v");
  if (value == nullptr) {
    bare = std::make_unique<toml::value<std::string>>(std::string(text));
    value = bare.get();
  }

  Config updated = *config;
  Source src{/*lines=*/false};
  absl::Status status;
  std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
  if (parts.size() == 1 && path == "routes") {
    status = SetRoutes(*value, &updated, src);
  } else if (parts.size() == 1 && path == "api_keys") {
    status = SetApiKeys(*value, &updated, src);
  } else if (parts.size() == 1 && path == "dkim") {
    status = SetDkim(*value, &updated, src);
  } else if (parts.size() == 1 && path == "tls_policies") {
    status = SetTlsPolicies(*value, &updated, src);
  } else if (parts.size() == 2 && IsSection(parts[0])) {
    const Key* key = FindKey(parts[0], parts[1]);
    if (key == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": unknown key"));
    }
    status = key->set(*value, &updated, path, src);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unknown section or key"));
  }
  if (status.ok()) status = CrossCheck(updated);
  if (!status.ok()) return status;
  *config = std::move(updated);
  return absl::OkStatus();
}

}  // namespace salvo::config
