// Salvo's configuration: one TOML file, every key with a documented default.
// The defaults live in deploy/salvo.toml, which is also compiled into the
// binary (salvo with no --config runs on exactly that file). Loaded once at
// start-up, validated, then handed out read-only. Any thread after load.
#ifndef SALVO_ENGINE_CONFIG_CONFIG_H_
#define SALVO_ENGINE_CONFIG_CONFIG_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace salvo::config {

struct Route {
  std::string domain;  // "example.com" or "*"
  std::string host;
  uint16_t port = 25;
};

// A DKIM signing key for one sending domain ([[dkim]]). A domain may have
// several (e.g. one RSA and one Ed25519): each adds a signature.
struct DkimKey {
  std::string domain;     // d=, and the From domain it signs for
  std::string selector;   // s=
  std::string algorithm;  // "rsa-sha256" or "ed25519-sha256"
  std::string key_file;   // PEM private key
  std::vector<std::string> headers;  // empty: the signer's default list
};

struct TlsDomainPolicy {
  std::string domain;
  std::string policy;
};

struct Config {
  // [server]
  std::string http_listen = "127.0.0.1:8025";  // host:port; port 0 = any
  int loops = 0;                               // 0: one per core
  std::string hostname = "localhost";          // EHLO name, Message-ID host

  // [spool]
  std::string spool_path = "./salvo-spool";
  int shards = 64;
  bool spool_sync = true;  // fsync the WAL before acknowledging
  // Refuse intake (503) while the spool's disk has less free than this.
  int64_t spool_min_free_bytes = 64 << 20;
  // Outcomes are written at once without fsync; the WAL is synced this soon.
  absl::Duration outcome_sync_interval = absl::Milliseconds(50);
  // Upload chunks are stored as recipient blocks and expanded into queue
  // entries while the queue depth (less the entries waiting for a retry) is
  // below this; 0: no blocks.
  int expand_window = 200000;

  // [limits]
  int64_t max_request_bytes = 256 << 20;
  int64_t max_message_bytes = 10 << 20;  // a rendered or raw message
  int max_recipients_per_message = 1000;  // POST /v1/messages
  int upload_chunk_recipients = 10000;  // per durable commit of an upload
  int upload_window = 2;  // commits outstanding before a streamed upload
                          // stops reading its socket

  // [delivery]
  uint16_t smtp_port = 25;                // port of MX hosts found in DNS
  int max_connections_per_host = 16;      // per loop
  int reserved_connections = 1;  // per host and loop, transactional only
  int max_messages_per_connection = 1000;
  // Recipients of identical (non-personalized) content per transaction.
  int max_recipients_per_transaction = 50;
  absl::Duration idle_timeout = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(30);
  // RFC 5321 4.5.3.2 timeouts.
  absl::Duration greeting_timeout = absl::Minutes(5);
  absl::Duration ehlo_timeout = absl::Minutes(5);
  absl::Duration mail_timeout = absl::Minutes(5);
  absl::Duration rcpt_timeout = absl::Minutes(5);
  absl::Duration data_init_timeout = absl::Minutes(2);
  absl::Duration data_block_timeout = absl::Minutes(3);
  absl::Duration data_end_timeout = absl::Minutes(10);
  int max_in_flight_per_loop = 20000;   // recipients leased into memory
  // At max_in_flight_per_loop the bulk lanes are not read until in flight
  // falls to this fraction of it; transactional lanes may lease this many
  // more on top of the bound.
  double in_flight_resume_fraction = 0.75;
  int transactional_in_flight_reserve = 1000;
  int max_ready_per_domain = 5000;      // per destination and lane
  int bulk_quantum = 128;  // deficit round robin between tenants' bulk
  // A full destination blocks its scan lane at most this long, then its
  // entries are requeued.
  absl::Duration full_destination_requeue_after = absl::Seconds(2);
  // Compiled contents kept in memory (least recently used goes first).
  int content_cache_entries = 10000;

  // [retry]
  absl::Duration retry_initial = absl::Minutes(1);
  absl::Duration retry_max = absl::Hours(1);
  double retry_multiplier = 2.0;
  double retry_jitter = 0.2;           // +-20%
  absl::Duration expiry = absl::Hours(72);

  // [dns]
  std::string dns_servers;             // "127.0.0.1:5353"; empty = system
  absl::Duration dns_min_ttl = absl::Seconds(5);
  absl::Duration dns_max_ttl = absl::Hours(6);
  absl::Duration dns_negative_ttl = absl::Minutes(5);
  std::vector<Route> routes;           // [[routes]]

  std::vector<DkimKey> dkim;           // [[dkim]]

  // [tls]: STARTTLS policy "disabled", "opportunistic", "required" or
  // "required_verify" (system CA store + MX host name).
  std::string tls_policy = "opportunistic";
  absl::Duration tls_fallback_ttl = absl::Hours(1);  // plaintext after a
                                                     // failed opportunistic
                                                     // handshake
  // PEM trust anchors for required_verify; "" = the system CA store. The
  // engine refuses to start when the file cannot be loaded.
  std::string tls_ca_file;
  std::vector<TlsDomainPolicy> tls_policies;  // [[tls_policies]]

  // [hygiene]: one-click unsubscribe and VERP (empty: off).
  std::string unsubscribe_secret;
  std::string unsubscribe_base_url;
  std::string unsubscribe_mailto_domain;
  std::string bounce_domain;

  // [events]: recipient events ('E' records) and their JSON-lines log.
  int events_retention_hours = 168;
  // Relative paths are under spool_path; "" disables the log.
  std::string events_log_path = "events.jsonl";
  int64_t events_log_max_bytes = 1ll << 30;  // then renamed to <path>.1

  // [[api_keys]]: key -> tenant
  absl::flat_hash_map<std::string, std::string> api_keys;
};

// The embedded default file's text (deploy/salvo.toml).
absl::string_view DefaultToml();

// Parses TOML text over the defaults. InvalidArgument naming the key (and
// line) for unknown keys, wrong types, or bad values.
absl::StatusOr<Config> ParseConfig(absl::string_view toml_text);
absl::StatusOr<Config> LoadConfigFile(const std::string& path);
// Applies "section.key=value" overrides (value in TOML syntax, bare strings
// accepted), e.g. "dns.servers=127.0.0.1:5353".
absl::Status ApplyOverride(absl::string_view assignment, Config* config);

}  // namespace salvo::config

#endif  // SALVO_ENGINE_CONFIG_CONFIG_H_
