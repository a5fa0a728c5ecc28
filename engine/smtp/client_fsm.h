// ClientFsm: the SMTP client session as a pure state machine. No I/O and no
// clock: it is fed events (connected, server bytes or parsed replies,
// timeout, connection closed, Send(txn), Quit(), Abort()) and appends
// actions (write bytes, arm/stop the one timer, transaction done, ready,
// close) to a caller-owned vector. Loop thread of the owning Session only.
//
// Commands live in one table; `sent_` and `acked_` are two cursors over it,
// so replies map to commands in order and the timer always covers the oldest
// unanswered command with that command's RFC 5321 timeout. With PIPELINING
// (RFC 2920) MAIL, every RCPT and DATA go out in one write and the body plus
// "." in one more after the 354; without it, one command per round trip.
// EHLO falls back to HELO on 5xx. RSET follows a failed transaction in which
// MAIL was accepted; that transaction's result is reported when RSET is
// answered (a desync there makes it all transient). Session failures (timeout, close, 421, desync, malformed
// reply) complete a transaction in flight with synthetic transient replies.
//
// STARTTLS (RFC 3207, per SessionOptions::tls): after EHLO, "STARTTLS"; on
// 220 the FSM emits kStartTls and waits for OnTlsEstablished() (then EHLO
// again, extensions from the new reply) or OnTlsFailed() (close, stage
// kTlsHandshake). Bytes after the 220 in the same read (CVE-2021-38371) are
// a protocol violation: close. A reply that arrives in the same read as the
// reply that made us send its command (the server answered before it could
// have read the command), or a 3xx to anything but DATA, or a 2xx to DATA,
// is a desync: close, transient for all.
// Extensions: SIZE (too big: 552 5.3.4 locally, nothing sent), SMTPUTF8
// (non-ASCII addresses only when offered, else 553 5.6.7 locally for those
// addresses), BODY=8BITMIME for 8-bit bodies when offered, CHUNKING (after
// the RCPT replies, "BDAT <n> LAST" + the un-dot-stuffed body in one write).
#ifndef SALVO_ENGINE_SMTP_CLIENT_FSM_H_
#define SALVO_ENGINE_SMTP_CLIENT_FSM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/smtp/reply.h"
#include "engine/smtp/reply_parser.h"
#include "engine/smtp/transaction.h"

namespace salvo::smtp {

struct FsmAction {
  enum class Type {
    kWrite,            // write `bytes`, then `body`, then `tail`, in order
    kArmTimer,         // (re)arm the session timer: `timeout` for `stage`
    kStopTimer,
    kTransactionDone,  // `result` for the transaction given to Send()
    kReady,            // idle: Send() or Quit() may be called
    kClose,            // close the connection; `reply` says why
    kStartTls,         // start the TLS handshake; no more plaintext reads
  };
  Type type = Type::kWrite;
  std::string bytes;
  std::string body;        // the Transaction's data, moved (never copied)
  absl::string_view tail;  // static storage
  Stage stage = Stage::kConnect;
  absl::Duration timeout;
  TransactionResult result;
  Reply reply;
};
using FsmActions = std::vector<FsmAction>;

class ClientFsm {
 public:
  explicit ClientFsm(const SessionOptions& options);

  // The socket connect is starting: arms the connect timer.
  void Start(FsmActions* out);
  void OnConnected(FsmActions* out);
  // Server bytes, in any split.
  void OnData(absl::string_view bytes, FsmActions* out);
  // One parsed reply (OnData calls this; tests may too).
  void OnReply(Reply reply, FsmActions* out);
  // The armed timer fired.
  void OnTimeout(FsmActions* out);
  // EOF, read/write error or failed connect.
  void OnConnectionClosed(absl::string_view why, FsmActions* out);
  // After kStartTls: the handshake completed / failed (`why`: the TLS error).
  void OnTlsEstablished(FsmActions* out);
  void OnTlsFailed(absl::string_view why, FsmActions* out);
  // The session saw something the FSM cannot (e.g. plaintext where TLS
  // records were due): close with `why`.
  void OnProtocolViolation(absl::string_view why, FsmActions* out);

  // Only while idle(); otherwise `done` follows at once with a synthetic
  // transient result.
  void Send(Transaction txn, FsmActions* out);
  // QUIT now if idle, else as soon as the session is idle.
  void Quit(FsmActions* out);
  // Close at once; a transaction in flight fails with transient replies.
  void Abort(absl::string_view why, FsmActions* out);

  bool idle() const { return phase_ == Phase::kIdle; }
  bool closed() const { return phase_ == Phase::kClosed; }
  bool tls_active() const { return tls_active_; }
  const Extensions& extensions() const { return ext_; }
  int transactions() const { return transactions_; }

 private:
  enum class Phase {
    kNew, kHandshake, kTls, kIdle, kBusy, kQuitting, kClosed
  };
  struct Command {
    Stage stage;
    int rcpt;      // index into the transaction's rcpts for kRcpt
    uint64_t seq;  // identity, to know when the timer must move
  };

  void Push(Stage stage, int rcpt = -1);
  void AppendCommand(const Command& c, std::string* buf);
  void SendNextCommand(FsmActions* out);
  void SendCommandNow(Stage stage, FsmActions* out);
  void SyncTimer(FsmActions* out);
  void OnTxnReply(const Command& c, Reply* r, FsmActions* out);
  void SendBody(FsmActions* out);
  void SendBdat(FsmActions* out);
  void AfterEhlo(Stage stage, FsmActions* out);
  bool TlsRequired() const;
  // Completes `txn` at once with `reply` for MAIL and every recipient.
  void FailLocally(const Transaction& txn, const Reply& reply,
                   FsmActions* out);
  void FinishTxn(bool rset, FsmActions* out);
  void GoIdle(FsmActions* out);
  void DoQuit(FsmActions* out);
  // Quits politely; `why` is what the session reports when it closes.
  void QuitBecause(Reply why, FsmActions* out);
  void FailSession(Reply reason, FsmActions* out);
  // Reports the result held until RSET's reply; all transient (with
  // `protocol_error`'s text) when the server turned out to be out of step.
  void ReleaseHeld(const Reply* protocol_error, FsmActions* out);
  void Close(Reply reason, FsmActions* out);
  void ParseExtensions(absl::string_view ehlo_text);
  Stage CurrentStage() const;
  absl::Duration TimeoutFor(Stage s) const;
  Reply Synthetic(Stage stage, absl::string_view text) const;

  const SessionOptions options_;
  Phase phase_ = Phase::kNew;
  ReplyParser parser_;
  Reply scratch_;  // reused by OnData
  Extensions ext_;
  bool pipelining_ = false;
  bool tls_active_ = false;
  bool bdat_ = false;        // this transaction: CHUNKING
  bool eight_bit_ = false;   // this transaction: BODY=8BITMIME
  bool utf8_ = false;        // this transaction: SMTPUTF8

  std::vector<Command> table_;
  size_t sent_ = 0;
  size_t acked_ = 0;
  uint64_t next_seq_ = 1;
  uint64_t armed_seq_ = 0;  // 0: timer stopped
  Stage last_stage_ = Stage::kConnect;

  bool in_txn_ = false;
  Transaction txn_;
  TransactionResult result_;
  bool holding_ = false;
  TransactionResult held_;
  int accepted_ = 0;
  bool quit_requested_ = false;
  bool have_close_reason_ = false;
  Reply close_reason_;
  int transactions_ = 0;
};

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_CLIENT_FSM_H_
