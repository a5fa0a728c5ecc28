// The data a Session works on: options, timeouts, the server's extensions,
// one transaction and its per-recipient result, the peer. Plain values with
// no I/O, shared by client_fsm and session. Any thread.
#ifndef SALVO_ENGINE_SMTP_TRANSACTION_H_
#define SALVO_ENGINE_SMTP_TRANSACTION_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/smtp/reply.h"

namespace salvo::smtp {

// RFC 5321 section 4.5.3.2 defaults.
struct Timeouts {
  absl::Duration connect = absl::Seconds(30);
  absl::Duration greeting = absl::Minutes(5);
  absl::Duration ehlo = absl::Minutes(5);
  absl::Duration mail = absl::Minutes(5);
  absl::Duration rcpt = absl::Minutes(5);
  absl::Duration data_init = absl::Minutes(2);
  absl::Duration data_block = absl::Minutes(3);
  absl::Duration data_end = absl::Minutes(10);
  absl::Duration quit = absl::Seconds(30);
  absl::Duration starttls = absl::Minutes(5);  // the 220 and the handshake
};

// RFC 3207 STARTTLS policy for one connection.
enum class TlsPolicy {
  kDisabled,       // never STARTTLS
  kOpportunistic,  // STARTTLS when offered, no certificate check; a failed
                   // handshake closes with Stage::kTlsHandshake so the owner
                   // can reconnect in plaintext (see TlsFallbackMemory)
  kRequired,       // no STARTTLS or a failed handshake: transient failure
  kRequiredVerify, // kRequired + chain (CA store) and MX host name verified
};
const char* TlsPolicyName(TlsPolicy p);

class TlsClientContext;  // tls_engine.h

struct TlsOptions {
  TlsPolicy policy = TlsPolicy::kOpportunistic;
  // Not owned; one per loop thread (SSL_CTX, CA store, session cache). Null:
  // the calling thread's default (system CA store, see tls_engine.h).
  TlsClientContext* context = nullptr;
};

struct SessionOptions {
  std::string helo_name = "localhost";
  Timeouts timeouts;
  bool use_pipelining = true;  // when the server offers it
  bool use_chunking = true;    // BDAT when the server offers CHUNKING
  TlsOptions tls;
};

// What TLS the session negotiated (active == false: plaintext).
struct TlsInfo {
  bool active = false;
  bool verified = false;  // chain and host name checked (kRequiredVerify)
  bool resumed = false;   // an earlier session to this endpoint was resumed
  std::string version;    // "TLSv1.3"
  std::string cipher;     // "TLS_AES_128_GCM_SHA256"
};

// What the server said in answer to EHLO.
struct Extensions {
  bool pipelining = false;
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool chunking = false;
  bool enhanced_status_codes = false;
  bool starttls = false;
  int64_t size = -1;  // -1: not advertised; 0: advertised without a limit
};

struct Transaction {
  std::string mail_from;          // address without <>
  std::vector<std::string> rcpts; // addresses without <>
  // Message in wire form: CRLF line ends, dot-stuffed, without the final
  // ".\r\n" (the session adds it). With BDAT the session sends it
  // un-stuffed (a copy only when a line starts with "..").
  std::string data;
};

struct TransactionResult {
  Reply mail;
  std::vector<Reply> rcpts;  // one per Transaction::rcpts, same order
  Reply data;                // the 354 (or its failure)
  Reply data_end;            // the reply to "." (valid if data was 354)
  // With CHUNKING, `data` is a synthetic 354 (stage kBdat) once "BDAT <n>
  // LAST" went out and `data_end` is the reply to it, so readers need not
  // know which of DATA and BDAT carried the message.
  // The reply that applies to recipient i: MAIL's when that failed (with
  // PIPELINING the RCPTs then only got "503 need MAIL"), else its RCPT reply
  // when that failed, else DATA's when it was not 354, else the final one.
  // Fields never reached hold code 0 (transient), so a transaction cut short
  // never reads as delivered.
  const Reply& ForRecipient(size_t i) const;
  TlsInfo tls;  // of the session that ran the transaction
};

struct Endpoint {
  sockaddr_storage addr{};
  std::string host_name;  // MX name, for logs and outcomes
  std::string ToString() const;  // "mx.example.com[127.0.0.1]:25"
};

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_TRANSACTION_H_
