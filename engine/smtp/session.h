// One outbound SMTP connection: uv_tcp + client_fsm + timers. The only file
// of the SMTP client that touches a socket. Loop thread only.
//
// Life: Create() -> Connect(); on_ready fires once the greeting and EHLO (or
// HELO) are done and whenever the session is idle again. Send() runs one
// transaction (MAIL, RCPT..., DATA, body) with PIPELINING when offered and
// calls `done` with a reply per recipient. Quit() ends politely. on_closed
// fires exactly once, after which the owner may destroy the Session (from
// inside on_closed only through Loop::DeferDelete). Destroying a Session
// closes its socket; the uv handle is freed in its close callback. A
// transaction in progress when the connection dies completes with synthetic
// transient replies (never "delivered" by mistake).
#ifndef SALVO_ENGINE_SMTP_SESSION_H_
#define SALVO_ENGINE_SMTP_SESSION_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/core/loop.h"
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
};

struct SessionOptions {
  std::string helo_name = "localhost";
  Timeouts timeouts;
  bool use_pipelining = true;  // when the server offers it
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
  // ".\r\n" (the session adds it).
  std::string data;
};

struct TransactionResult {
  Reply mail;
  std::vector<Reply> rcpts;  // one per Transaction::rcpts, same order
  Reply data;                // the 354 (or its failure)
  Reply data_end;            // the reply to "." (valid if data was 354)
  // The reply that applies to recipient i: its RCPT reply when that failed,
  // else MAIL's when that failed, else DATA's, else the final one.
  const Reply& ForRecipient(size_t i) const;
};

struct Endpoint {
  sockaddr_storage addr{};
  std::string host_name;  // MX name, for logs and outcomes
  std::string ToString() const;  // "mx.example.com[127.0.0.1]:25"
};

class Session {
 public:
  struct Callbacks {
    std::function<void(Session*)> on_ready;
    // Why the session ended (a 221 for a polite QUIT, else the failure).
    std::function<void(Session*, const Reply&)> on_closed;
  };

  static std::unique_ptr<Session> Create(core::Loop& loop,
                                         const SessionOptions& options,
                                         const Endpoint& peer,
                                         Callbacks callbacks);
  virtual ~Session() = default;

  virtual void Connect() = 0;
  // Only while idle() is true.
  virtual void Send(Transaction txn,
                    std::function<void(TransactionResult)> done) = 0;
  virtual void Quit() = 0;
  // Closes at once; a transaction in flight completes with transient
  // synthetic replies before on_closed.
  virtual void Abort() = 0;

  virtual bool idle() const = 0;
  virtual const Extensions& extensions() const = 0;
  virtual const Endpoint& peer() const = 0;
  virtual int transactions() const = 0;  // completed on this connection
};

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_SESSION_H_
