// Tests for config loading: the embedded default file equals Config{}, every
// key is documented in deploy/salvo.toml, every validation error names its
// key, and command-line overrides.
#include "engine/config/config.h"

#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace salvo::config {
namespace {

// Every key of the file, as "section.key". Keep in step with Config.
const std::vector<std::string> kKeys = {
    "server.http_listen", "server.loops", "server.hostname",
    "spool.path", "spool.shards", "spool.sync", "spool.min_free_bytes",
    "spool.outcome_sync_interval", "spool.expand_window",
    "tls.policy", "tls.fallback_ttl", "tls.ca_file", "hygiene.unsubscribe_secret",
    "hygiene.unsubscribe_base_url", "hygiene.unsubscribe_mailto_domain",
    "hygiene.bounce_domain",
    "events.retention_hours", "events.log_path", "events.log_max_bytes",
    "limits.max_request_bytes", "limits.max_message_bytes",
    "limits.max_recipients_per_message", "limits.upload_chunk_recipients",
    "limits.upload_window",
    "delivery.smtp_port", "delivery.max_connections_per_host",
    "delivery.max_messages_per_connection",
    "delivery.max_recipients_per_transaction", "delivery.idle_timeout",
    "delivery.connect_timeout", "delivery.greeting_timeout",
    "delivery.ehlo_timeout", "delivery.mail_timeout", "delivery.rcpt_timeout",
    "delivery.data_init_timeout", "delivery.data_block_timeout",
    "delivery.data_end_timeout", "delivery.max_in_flight_per_loop",
    "delivery.in_flight_resume_fraction",
    "delivery.transactional_in_flight_reserve",
    "delivery.content_cache_entries",
    "delivery.max_ready_per_domain", "delivery.bulk_quantum",
    "delivery.full_destination_requeue_after",
    "delivery.reserved_connections",
    "retry.initial", "retry.max", "retry.multiplier", "retry.jitter",
    "retry.expiry",
    "dns.servers", "dns.min_ttl", "dns.max_ttl", "dns.negative_ttl",
};

std::string Str(absl::Duration d) { return absl::FormatDuration(d); }

// Every field of Config by name, for field-by-field comparison.
std::vector<std::pair<std::string, std::string>> Fields(const Config& c) {
  std::string routes, keys;
  for (const Route& r : c.routes) {
    absl::StrAppend(&routes, r.domain, "->", r.host, ":", r.port, ";");
  }
  std::set<std::string> sorted;
  for (const auto& [k, t] : c.api_keys) sorted.insert(k + "=" + t);
  for (const std::string& s : sorted) absl::StrAppend(&keys, s, ";");
  return {
      {"http_listen", c.http_listen},
      {"loops", absl::StrCat(c.loops)},
      {"hostname", c.hostname},
      {"spool_path", c.spool_path},
      {"shards", absl::StrCat(c.shards)},
      {"spool_sync", absl::StrCat(c.spool_sync)},
      {"spool_min_free_bytes", absl::StrCat(c.spool_min_free_bytes)},
      {"outcome_sync_interval", Str(c.outcome_sync_interval)},
      {"expand_window", absl::StrCat(c.expand_window)},
      {"tls_policy", c.tls_policy},
      {"tls_fallback_ttl", Str(c.tls_fallback_ttl)},
      {"tls_ca_file", c.tls_ca_file},
      {"unsubscribe_secret", c.unsubscribe_secret},
      {"unsubscribe_base_url", c.unsubscribe_base_url},
      {"unsubscribe_mailto_domain", c.unsubscribe_mailto_domain},
      {"bounce_domain", c.bounce_domain},
      {"events_retention_hours", absl::StrCat(c.events_retention_hours)},
      {"events_log_path", c.events_log_path},
      {"events_log_max_bytes", absl::StrCat(c.events_log_max_bytes)},
      {"max_request_bytes", absl::StrCat(c.max_request_bytes)},
      {"max_message_bytes", absl::StrCat(c.max_message_bytes)},
      {"max_recipients_per_message",
       absl::StrCat(c.max_recipients_per_message)},
      {"upload_chunk_recipients", absl::StrCat(c.upload_chunk_recipients)},
      {"upload_window", absl::StrCat(c.upload_window)},
      {"smtp_port", absl::StrCat(c.smtp_port)},
      {"max_connections_per_host", absl::StrCat(c.max_connections_per_host)},
      {"max_messages_per_connection",
       absl::StrCat(c.max_messages_per_connection)},
      {"max_recipients_per_transaction",
       absl::StrCat(c.max_recipients_per_transaction)},
      {"idle_timeout", Str(c.idle_timeout)},
      {"connect_timeout", Str(c.connect_timeout)},
      {"greeting_timeout", Str(c.greeting_timeout)},
      {"ehlo_timeout", Str(c.ehlo_timeout)},
      {"mail_timeout", Str(c.mail_timeout)},
      {"rcpt_timeout", Str(c.rcpt_timeout)},
      {"data_init_timeout", Str(c.data_init_timeout)},
      {"data_block_timeout", Str(c.data_block_timeout)},
      {"data_end_timeout", Str(c.data_end_timeout)},
      {"max_in_flight_per_loop", absl::StrCat(c.max_in_flight_per_loop)},
      {"in_flight_resume_fraction", absl::StrCat(c.in_flight_resume_fraction)},
      {"transactional_in_flight_reserve",
       absl::StrCat(c.transactional_in_flight_reserve)},
      {"max_ready_per_domain", absl::StrCat(c.max_ready_per_domain)},
      {"content_cache_entries", absl::StrCat(c.content_cache_entries)},
      {"bulk_quantum", absl::StrCat(c.bulk_quantum)},
      {"full_destination_requeue_after",
       Str(c.full_destination_requeue_after)},
      {"reserved_connections", absl::StrCat(c.reserved_connections)},
      {"retry_initial", Str(c.retry_initial)},
      {"retry_max", Str(c.retry_max)},
      {"retry_multiplier", absl::StrCat(c.retry_multiplier)},
      {"retry_jitter", absl::StrCat(c.retry_jitter)},
      {"expiry", Str(c.expiry)},
      {"dns_servers", c.dns_servers},
      {"dns_min_ttl", Str(c.dns_min_ttl)},
      {"dns_max_ttl", Str(c.dns_max_ttl)},
      {"dns_negative_ttl", Str(c.dns_negative_ttl)},
      {"routes", routes},
      {"api_keys", keys},
  };
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Error(absl::string_view text) {
  absl::StatusOr<Config> c = ParseConfig(text);
  EXPECT_FALSE(c.ok()) << text;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

std::string OverrideError(absl::string_view assignment) {
  Config c;
  absl::Status s = ApplyOverride(assignment, &c);
  EXPECT_FALSE(s.ok()) << assignment;
  EXPECT_EQ(Fields(c), Fields(Config{})) << "failed override changed config";
  return std::string(s.message());
}

TEST(ConfigTest, EmbeddedDefaultEqualsStructDefaults) {
  absl::StatusOr<Config> parsed = ParseConfig(DefaultToml());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  Config expected;
  expected.api_keys["salvo-demo-key"] = "demo";
  auto got = Fields(*parsed);
  auto want = Fields(expected);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << want[i].first;
  }
  EXPECT_TRUE(parsed->routes.empty());
}

TEST(ConfigTest, EmbeddedDefaultIsTheDeployFile) {
  EXPECT_EQ(DefaultToml(), ReadFile("deploy/salvo.toml"));
  EXPECT_EQ(DefaultToml().substr(0, 1), "#");
}

TEST(ConfigTest, EveryKeyIsDocumentedInTheDeployFile) {
  std::string text = ReadFile("deploy/salvo.toml");
  toml::parse_result parsed = toml::parse(text);
  ASSERT_TRUE(parsed) << parsed.error().description();
  std::set<std::string> in_file;
  for (const auto& [section, node] : parsed.table()) {
    if (section.str() == "api_keys") continue;
    ASSERT_TRUE(node.is_table()) << section.str();
    for (const auto& [key, value] : *node.as_table()) {
      in_file.insert(std::string(section.str()) + "." + std::string(key.str()));
    }
  }
  EXPECT_EQ(in_file, std::set<std::string>(kKeys.begin(), kKeys.end()));
  EXPECT_EQ(kKeys.size() + 2, Fields(Config{}).size())
      << "a Config field has no key in this test's list";
  // Each key line carries a comment; the routes keys are documented too.
  std::istringstream lines(text);
  std::string line;
  int key_lines = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    ++key_lines;
    EXPECT_NE(line.find(" # "), std::string::npos) << line;
  }
  EXPECT_EQ(key_lines, static_cast<int>(kKeys.size()) + 2);  // + key, tenant
  for (const char* doc : {"# [[routes]]", "# domain = ", "# host = ",
                          "# port = "}) {
    EXPECT_NE(text.find(doc), std::string::npos) << doc;
  }
}

TEST(ConfigTest, EveryKeyOverridesExactlyOneField) {
  const Config defaults;
  for (const std::string& key : kKeys) {
    Config c;
    std::string value = "7";
    if (key.find("timeout") != std::string::npos ||
        key.find("ttl") != std::string::npos || key == "retry.expiry" ||
        key == "spool.outcome_sync_interval" ||
        key == "delivery.full_destination_requeue_after" ||
        key == "retry.initial" || key == "retry.max") {
      value = key == "retry.initial" || key == "dns.min_ttl" ? "1s" : "7h";
    }
    if (key == "spool.sync") value = "false";
    if (key == "retry.jitter" ||
        key == "delivery.in_flight_resume_fraction") {
      value = "0.5";
    }
    if (key == "server.http_listen") value = "127.0.0.1:0";
    if (key == "server.hostname" || key == "spool.path") value = "x";
    if (key == "dns.servers") value = "127.0.0.1:5353";
    if (key == "tls.policy") value = "required";
    if (key == "tls.ca_file") value = "ca.pem";
    if (key == "hygiene.unsubscribe_base_url") value = "https://x.example";
    if (absl::StartsWith(key, "hygiene.") && value == "7") value = "x";
    if (key == "events.log_path") value = "x.jsonl";
    absl::Status s = ApplyOverride(key + "=" + value, &c);
    ASSERT_TRUE(s.ok()) << key << ": " << s;
    auto before = Fields(defaults), after = Fields(c);
    int changed = 0;
    for (size_t i = 0; i < before.size(); ++i) changed += before[i] != after[i];
    EXPECT_EQ(changed, 1) << key;
  }
}

TEST(ConfigTest, FileOverridesDefaults) {
  absl::StatusOr<Config> c = ParseConfig(R"(
[server]
loops = 2
[delivery]
connect_timeout = "250ms"
[retry]
multiplier = 3      # integers are accepted for numbers
jitter = 0
[[routes]]
domain = "*"
host = "127.0.0.1"
port = 2525
[[routes]]
domain = "example.com"
host = "relay.local"
[[api_keys]]
key = "k1"
tenant = "t1"
[[api_keys]]
key = "k2"
tenant = "t1"
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->loops, 2);
  EXPECT_EQ(c->connect_timeout, absl::Milliseconds(250));
  EXPECT_EQ(c->retry_multiplier, 3.0);
  EXPECT_EQ(c->retry_jitter, 0.0);
  EXPECT_EQ(c->shards, 64);  // untouched default
  ASSERT_EQ(c->routes.size(), 2u);
  EXPECT_EQ(c->routes[0].port, 2525);
  EXPECT_EQ(c->routes[1].host, "relay.local");
  EXPECT_EQ(c->routes[1].port, 25);
  EXPECT_EQ(c->api_keys.size(), 2u);
  EXPECT_EQ(c->api_keys.at("k2"), "t1");
}

TEST(ConfigTest, DkimKeys) {
  auto c = ParseConfig(R"(
[[dkim]]
domain = "shop.example"
selector = "s1"
algorithm = "ed25519-sha256"
key_file = "/k/ed.pem"
[[dkim]]
domain = "shop.example"
selector = "s2"
algorithm = "rsa-sha256"
key_file = "/k/rsa.pem"
headers = ["from", "subject"]
)");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->dkim.size(), 2u);
  EXPECT_EQ(c->dkim[0].algorithm, "ed25519-sha256");
  EXPECT_TRUE(c->dkim[0].headers.empty());
  EXPECT_EQ(c->dkim[1].headers, (std::vector<std::string>{"from", "subject"}));
  EXPECT_EQ(Error("[[dkim]]\ndomain = \"d\"\nselector = \"s\"\n"
                  "algorithm = \"md5\"\nkey_file = \"/k\"\n"),
            "dkim[0].algorithm: expected \"rsa-sha256\" or \"ed25519-sha256\", "
            "got \"md5\" (line 4)");
  EXPECT_EQ(Error("[[dkim]]\ndomain = \"d\"\n"),
            "dkim[0].selector: missing (line 1)");
}

TEST(ConfigTest, ErrorsNameTheKeyAndLine) {
  EXPECT_EQ(Error("[delivery]\nmax_connections_per_host = -3\n"),
            "delivery.max_connections_per_host: expected a positive integer, "
            "got -3 (line 2)");
  EXPECT_EQ(Error("[server]\nloops = 1\n\n[bogus]\nx = 1\n"),
            "bogus: unknown section (line 4)");
  EXPECT_EQ(Error("[server]\nloops = 1\nfoo = 1\n"),
            "server.foo: unknown key (line 3)");
  EXPECT_EQ(Error("[spool]\nsync = \"yes\"\n"),
            "spool.sync: expected true or false, got \"yes\" (line 2)");
  EXPECT_EQ(Error("[spool]\nshards = \"8\"\n"),
            "spool.shards: expected an integer in 1..4096, got \"8\" (line 2)");
  EXPECT_EQ(Error("server = 5\n"),
            "server: expected a table, got 5 (line 1)");
  EXPECT_EQ(Error("[server]\nloops = [1]\n"),
            "server.loops: expected an integer >= 0, got an array (line 2)");
  EXPECT_NE(Error("[server\n").find("TOML syntax: "), std::string::npos);
}

TEST(ConfigTest, RangeErrors) {
  EXPECT_EQ(Error("[limits]\nmax_message_bytes = -1"),
            "limits.max_message_bytes: expected a positive integer, got -1 "
            "(line 2)");
  EXPECT_EQ(Error("[limits]\nmax_recipients_per_message = 0"),
            "limits.max_recipients_per_message: expected a positive integer, "
            "got 0 (line 2)");
  EXPECT_EQ(Error("[server]\nloops = -1"),
            "server.loops: expected an integer >= 0, got -1 (line 2)");
  EXPECT_TRUE(ParseConfig("[server]\nloops = 0").ok());
  EXPECT_EQ(Error("[spool]\nshards = 0"),
            "spool.shards: expected an integer in 1..4096, got 0 (line 2)");
  EXPECT_EQ(Error("[spool]\nshards = 4097"),
            "spool.shards: expected an integer in 1..4096, got 4097 (line 2)");
  EXPECT_EQ(ParseConfig("[spool]\nshards = 4096")->shards, 4096);
  EXPECT_EQ(ParseConfig("[spool]\nshards = 1")->shards, 1);
  EXPECT_EQ(Error("[delivery]\nsmtp_port = 65536"),
            "delivery.smtp_port: expected a port number in 1..65535, got "
            "65536 (line 2)");
  EXPECT_EQ(Error("[delivery]\nsmtp_port = 0"),
            "delivery.smtp_port: expected a port number in 1..65535, got 0 "
            "(line 2)");
  EXPECT_EQ(Error("[server]\nhttp_listen = \"127.0.0.1:65536\""),
            "server.http_listen: expected host:port with a port in 0..65535, "
            "got \"127.0.0.1:65536\" (line 2)");
  EXPECT_NE(Error("[server]\nhttp_listen = \"127.0.0.1\""), "");
  EXPECT_EQ(ParseConfig("[server]\nhttp_listen = \"[::1]:0\"")->http_listen,
            "[::1]:0");
  EXPECT_EQ(Error("[dns]\nservers = \"127.0.0.1:5353,127.0.0.2:0\""),
            "dns.servers: expected \"\" or comma-separated host[:port] with "
            "ports in 1..65535, got \"127.0.0.1:5353,127.0.0.2:0\" (line 2)");
  EXPECT_EQ(Error("[retry]\njitter = 1.5"),
            "retry.jitter: expected a number in 0..1, got 1.5 (line 2)");
  EXPECT_EQ(Error("[retry]\njitter = -0.1"),
            "retry.jitter: expected a number in 0..1, got -0.1 (line 2)");
  EXPECT_EQ(Error("[retry]\njitter = nan"),
            "retry.jitter: expected a number in 0..1, got nan (line 2)");
  EXPECT_EQ(ParseConfig("[retry]\njitter = 1")->retry_jitter, 1.0);
  EXPECT_EQ(Error("[retry]\nmultiplier = 0.5"),
            "retry.multiplier: expected a number in 1..1000, got 0.5 (line 2)");
  EXPECT_EQ(Error("[routes]\ndomain = \"*\""),
            "routes: expected an array of tables ([[routes]]), got a table "
            "(line 1)");
  EXPECT_EQ(Error("[[routes]]\ndomain = \"*\"\nhost = \"h\"\nport = 0"),
            "routes[0].port: expected a port number in 1..65535, got 0 "
            "(line 4)");
  EXPECT_EQ(Error("[[routes]]\ndomain = \"*\""), "routes[0].host: missing (line 1)");
  EXPECT_EQ(Error("[[routes]]\ndomain = \"*\"\nhost = \"h\"\nweight = 1"),
            "routes[0].weight: unknown key (line 4)");
  EXPECT_EQ(Error("[retry]\ninitial = \"2h\"\nmax = \"1h\""),
            "retry.max: must be >= retry.initial (1h < 2h)");
  EXPECT_EQ(Error("[dns]\nmin_ttl = \"7h\""),
            "dns.max_ttl: must be >= dns.min_ttl (6h < 7h)");
}

TEST(ConfigTest, DurationErrors) {
  for (const char* bad : {"\"5 minutes\"", "\"-5s\"", "\"0s\"", "30", "\"inf\""}) {
    EXPECT_EQ(Error(absl::StrCat("[delivery]\nidle_timeout = ", bad)),
              absl::StrCat("delivery.idle_timeout: expected a positive "
                           "duration such as \"30s\" or \"5m\", got ",
                           bad, " (line 2)"));
  }
  EXPECT_EQ(ParseConfig("[delivery]\nidle_timeout = \"1h30m\"")->idle_timeout,
            absl::Minutes(90));
}

TEST(ConfigTest, DuplicateApiKeyIsRejectedWithoutEchoingIt) {
  std::string err = Error(R"([[api_keys]]
key = "secret-1"
tenant = "a"
[[api_keys]]
key = "secret-1"
tenant = "b"
)");
  EXPECT_EQ(err, "api_keys[1].key: duplicate of api_keys[0].key (line 5)");
  EXPECT_EQ(Error("[[api_keys]]\nkey = \"\"\ntenant = \"a\""),
            "api_keys[0].key: expected a non-empty string, got \"\" (line 2)");
  EXPECT_EQ(Error("[[api_keys]]\nkey = \"k\""),
            "api_keys[0].tenant: missing (line 1)");
}

TEST(ConfigTest, Overrides) {
  Config c;
  ASSERT_TRUE(ApplyOverride("dns.servers=127.0.0.1:5353", &c).ok());
  EXPECT_EQ(c.dns_servers, "127.0.0.1:5353");
  ASSERT_TRUE(ApplyOverride("spool.shards = 8", &c).ok());
  EXPECT_EQ(c.shards, 8);
  ASSERT_TRUE(ApplyOverride("delivery.idle_timeout=250ms", &c).ok());
  EXPECT_EQ(c.idle_timeout, absl::Milliseconds(250));
  ASSERT_TRUE(ApplyOverride("server.hostname=\"mx.example\"", &c).ok());
  EXPECT_EQ(c.hostname, "mx.example");
  ASSERT_TRUE(ApplyOverride("server.hostname=mx2.example", &c).ok());
  EXPECT_EQ(c.hostname, "mx2.example");
  ASSERT_TRUE(ApplyOverride("spool.sync=false", &c).ok());
  EXPECT_FALSE(c.spool_sync);
  ASSERT_TRUE(ApplyOverride(
                  "routes=[{domain=\"*\",host=\"127.0.0.1\",port=2525}]", &c)
                  .ok());
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].port, 2525);
  ASSERT_TRUE(
      ApplyOverride("api_keys=[{key=\"k\",tenant=\"t\"}]", &c).ok());
  EXPECT_EQ(c.api_keys.at("k"), "t");
  // A value that only parses because of a second line is still one string.
  ASSERT_TRUE(ApplyOverride("server.hostname=1\nx=2", &c).ok());
  EXPECT_EQ(c.hostname, "1\nx=2");
}

TEST(ConfigTest, OverrideErrorsLeaveConfigUnchanged) {
  EXPECT_EQ(OverrideError("spool.shards=0"),
            "spool.shards: expected an integer in 1..4096, got 0");
  EXPECT_EQ(OverrideError("spool.shards=many"),
            "spool.shards: expected an integer in 1..4096, got \"many\"");
  EXPECT_EQ(OverrideError("delivery.max_connections_per_host=-3"),
            "delivery.max_connections_per_host: expected a positive integer, "
            "got -3");
  EXPECT_EQ(OverrideError("retry.jitter=2"),
            "retry.jitter: expected a number in 0..1, got 2");
  EXPECT_EQ(OverrideError("spool.nope=1"), "spool.nope: unknown key");
  EXPECT_EQ(OverrideError("bogus.x=1"), "bogus.x: unknown section or key");
  EXPECT_EQ(OverrideError("shards"),
            "override \"shards\": expected section.key=value");
  EXPECT_EQ(OverrideError("retry.initial=2h"),
            "retry.max: must be >= retry.initial (1h < 2h)");
  EXPECT_EQ(OverrideError("api_keys=[{key=\"k\",tenant=\"a\"},"
                          "{key=\"k\",tenant=\"b\"}]"),
            "api_keys[1].key: duplicate of api_keys[0].key");
}

TEST(ConfigTest, LoadConfigFile) {
  std::string path = absl::StrCat(std::getenv("TEST_TMPDIR"), "/salvo.toml");
  std::ofstream(path) << "[spool]\nshards = 3\n";
  absl::StatusOr<Config> c = LoadConfigFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->shards, 3);
  std::ofstream(path) << "[spool]\nshards = -3\n";
  c = LoadConfigFile(path);
  EXPECT_EQ(c.status().message(),
            path + ": spool.shards: expected an integer in 1..4096, got -3 "
                   "(line 2)");
  c = LoadConfigFile(path + ".missing");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  // The deploy file itself loads.
  EXPECT_TRUE(LoadConfigFile("deploy/salvo.toml").ok());
}

}  // namespace
}  // namespace salvo::config
