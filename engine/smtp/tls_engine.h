// TLS without I/O, on BoringSSL memory BIOs: TlsEngine is fed ciphertext from
// the network and plaintext from the SMTP client, and hands back plaintext
// and ciphertext to write; Session moves the bytes. TlsClientContext holds
// the SSL_CTX (CA store) and a TlsSessionCache (endpoint key -> resumable
// SSL_SESSION) for one loop thread. TlsFallbackMemory remembers, per
// endpoint and until a time on a Clock&, that STARTTLS failed there so the
// owner reconnects in plaintext (opportunistic policy only).
//
// Threads: a TlsEngine, a TlsClientContext and its cache, and a
// TlsFallbackMemory belong to one thread (the loop's).
#ifndef SALVO_ENGINE_SMTP_TLS_ENGINE_H_
#define SALVO_ENGINE_SMTP_TLS_ENGINE_H_

#include <openssl/ssl.h>

#include <cstddef>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/core/clock.h"
#include "engine/smtp/transaction.h"

namespace salvo::smtp {

inline constexpr char kSystemCaFile[] = "/etc/ssl/certs/ca-certificates.crt";

// Endpoint key -> the newest resumable session, at most `capacity` keys
// (least recently stored evicted first).
class TlsSessionCache {
 public:
  explicit TlsSessionCache(size_t capacity = 1024) : capacity_(capacity) {}
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;

  // Takes ownership of one reference; non-resumable sessions are dropped.
  void Put(const std::string& key, bssl::UniquePtr<SSL_SESSION> session);
  // Borrowed; valid until the next Put/Erase of `key`. Null when none.
  SSL_SESSION* Get(const std::string& key) const;
  void Erase(const std::string& key);
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    bssl::UniquePtr<SSL_SESSION> session;
    std::list<std::string>::iterator order;
  };
  size_t capacity_;
  std::list<std::string> order_;  // oldest first
  absl::flat_hash_map<std::string, Entry> map_;
};

class TlsClientContext {
 public:
  // ca_file: PEM trust anchors for kRequiredVerify (the system store by
  // default; tests pass their own). An unreadable file is an error.
  static absl::StatusOr<std::unique_ptr<TlsClientContext>> Create(
      const std::string& ca_file = kSystemCaFile);
  // This thread's lazily created default (system CA store); null if that
  // failed (then every STARTTLS fails the handshake with a reason).
  static TlsClientContext* ThreadDefault();

  SSL_CTX* ctx() const { return ctx_.get(); }
  TlsSessionCache& sessions() { return sessions_; }

 private:
  explicit TlsClientContext(bssl::UniquePtr<SSL_CTX> ctx)
      : ctx_(std::move(ctx)) {}
  bssl::UniquePtr<SSL_CTX> ctx_;
  TlsSessionCache sessions_;
};

// One TLS connection over memory BIOs, client or server side.
class TlsEngine {
 public:
  enum class Progress { kWantMore, kDone, kFailed };

  // Client: SNI and (when verify) certificate host name = host_name (an IP
  // literal or an empty name disables SNI). resume may be null.
  static absl::StatusOr<std::unique_ptr<TlsEngine>> Client(
      SSL_CTX* ctx, const std::string& host_name, bool verify,
      SSL_SESSION* resume);
  // Server (tests): ctx carries the certificate and key.
  static absl::StatusOr<std::unique_ptr<TlsEngine>> Server(SSL_CTX* ctx);
  ~TlsEngine();

  // Network bytes in (any split).
  void FeedCiphertext(absl::string_view bytes);
  // Appends everything waiting to go to the network; false if nothing.
  bool TakeCiphertext(std::string* out);
  // Drives the handshake with what has been fed. kFailed: see error().
  Progress Handshake();
  bool handshake_done() const { return done_; }
  // Encrypts all of `plain` (memory BIOs never block).
  [[nodiscard]] absl::Status WritePlaintext(absl::string_view plain);
  // Appends all plaintext decryptable so far. *peer_closed: close_notify.
  [[nodiscard]] absl::Status ReadPlaintext(std::string* out,
                                           bool* peer_closed = nullptr);
  // Queues a close_notify alert (RFC 8446 6.1) for TakeCiphertext; does
  // not wait for the peer's. False if the handshake is not done or it
  // failed.
  bool Shutdown();
  const std::string& error() const { return error_; }
  TlsInfo info() const;
  // A new resumable session the server sent (TLS 1.3 tickets arrive after
  // the handshake), or null.
  bssl::UniquePtr<SSL_SESSION> TakeNewSession() {
    return std::move(new_session_);
  }
  // SSL_CTX new-session callback (installed by TlsClientContext).
  static int OnNewSession(SSL* ssl, SSL_SESSION* session);

 private:
  explicit TlsEngine(SSL* ssl, bool verify);
  std::string ErrorText(int ret, absl::string_view what);

  SSL* ssl_;
  bool verify_;
  bool done_ = false;
  std::string error_;
  bssl::UniquePtr<SSL_SESSION> new_session_;
};

// Pure: endpoint key -> "no STARTTLS until", on a Clock&.
class TlsFallbackMemory {
 public:
  TlsFallbackMemory(const core::Clock& clock, absl::Duration ttl,
                    size_t capacity = 10000)
      : clock_(clock), ttl_(ttl), capacity_(capacity) {}
  // The handshake with `key` failed: plaintext for the next ttl.
  void Remember(const std::string& key);
  // True while `key` should be tried without STARTTLS.
  bool ShouldSkipTls(const std::string& key);
  void Forget(const std::string& key) { until_.erase(key); }
  size_t size() const { return until_.size(); }

 private:
  const core::Clock& clock_;
  absl::Duration ttl_;
  size_t capacity_;
  absl::flat_hash_map<std::string, absl::Time> until_;
};

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_TLS_ENGINE_H_
