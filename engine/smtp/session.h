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
//
// TLS (SessionOptions::tls): STARTTLS runs TlsEngine over memory BIOs; this
// file only moves ciphertext. A failed handshake closes with a reply of
// stage kTlsHandshake (opportunistic owners reconnect with kDisabled and
// remember it in a TlsFallbackMemory); sessions are resumed per endpoint
// through the context's TlsSessionCache (key: TlsCacheKey()). Under TLS the
// body is copied once into the TLS engine.
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
#include "engine/smtp/transaction.h"

namespace salvo::smtp {

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
  // What TLS is in use (active == false: plaintext so far).
  virtual const TlsInfo& tls() const = 0;
};

// The TlsSessionCache key of `peer` under `policy` (verified and unverified
// sessions never mix).
std::string TlsCacheKey(const Endpoint& peer, TlsPolicy policy);

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_SESSION_H_
