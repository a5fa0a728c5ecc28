// Implementation of ClientFsm (see client_fsm.h).
#include "engine/smtp/client_fsm.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace salvo::smtp {
namespace {

constexpr absl::string_view kDotCrlf = ".\r\n";
constexpr absl::string_view kCrlfDotCrlf = "\r\n.\r\n";

bool Is2xx(const Reply& r) { return r.code >= 200 && r.code < 300; }

// A result field that no server reply has filled yet.
bool Unset(const Reply& r) { return r.synthetic && r.code == 0; }

bool IsAscii(absl::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// A locally decided outcome (nothing was sent for it).
Reply LocalReply(Stage stage, int code, absl::string_view enhanced,
                 absl::string_view text) {
  Reply r;
  r.code = code;
  r.enhanced = std::string(enhanced);
  r.text = std::string(text);
  r.stage = stage;
  r.synthetic = true;
  return r;
}

// Dot-stuffed wire form -> the message as BDAT carries it. Moves `data`
// through unless a line starts with '.'.
std::string Unstuff(std::string data) {
  bool any = absl::StartsWith(data, ".") ||
             data.find("\r\n.") != std::string::npos;
  if (!any) return data;
  std::string out;
  out.reserve(data.size());
  bool line_start = true;
  for (size_t i = 0; i < data.size(); ++i) {
    char c = data[i];
    if (line_start && c == '.') {
      line_start = false;
      continue;  // the stuffed dot
    }
    out.push_back(c);
    line_start = c == '\n';
  }
  return out;
}

}  // namespace

ClientFsm::ClientFsm(const SessionOptions& options) : options_(options) {}

Reply ClientFsm::Synthetic(Stage stage, absl::string_view text) const {
  Reply r;
  r.code = 0;
  r.stage = stage;
  r.synthetic = true;
  r.text = std::string(text);
  return r;
}

absl::Duration ClientFsm::TimeoutFor(Stage s) const {
  const Timeouts& t = options_.timeouts;
  switch (s) {
    case Stage::kConnect: return t.connect;
    case Stage::kGreeting: return t.greeting;
    case Stage::kEhlo:
    case Stage::kHelo: return t.ehlo;
    case Stage::kMail:
    case Stage::kRset: return t.mail;
    case Stage::kRcpt: return t.rcpt;
    case Stage::kData: return t.data_init;
    case Stage::kDataEnd: return t.data_end;
    case Stage::kQuit: return t.quit;
    case Stage::kStartTls:
    case Stage::kTlsHandshake: return t.starttls;
    case Stage::kBdat: return t.data_end;
  }
  return t.mail;
}

Stage ClientFsm::CurrentStage() const {
  return acked_ < sent_ ? table_[acked_].stage : last_stage_;
}

void ClientFsm::Push(Stage stage, int rcpt) {
  if (acked_ == table_.size()) {  // everything answered: reuse the table
    table_.clear();
    sent_ = acked_ = 0;
  }
  table_.push_back(Command{stage, rcpt, next_seq_++});
}

void ClientFsm::AppendCommand(const Command& c, std::string* buf) {
  switch (c.stage) {
    case Stage::kEhlo:
      absl::StrAppend(buf, "EHLO ", options_.helo_name, "\r\n");
      break;
    case Stage::kHelo:
      absl::StrAppend(buf, "HELO ", options_.helo_name, "\r\n");
      break;
    case Stage::kMail:
      absl::StrAppend(buf, "MAIL FROM:<", txn_.mail_from, ">");
      if (ext_.size >= 0) {
        absl::StrAppend(buf, " SIZE=", txn_.data.size() + kDotCrlf.size());
      }
      if (eight_bit_) buf->append(" BODY=8BITMIME");
      if (utf8_) buf->append(" SMTPUTF8");
      buf->append("\r\n");
      break;
    case Stage::kRcpt:
      absl::StrAppend(buf, "RCPT TO:<", txn_.rcpts[c.rcpt], ">\r\n");
      break;
    case Stage::kData: buf->append("DATA\r\n"); break;
    case Stage::kRset: buf->append("RSET\r\n"); break;
    case Stage::kQuit: buf->append("QUIT\r\n"); break;
    case Stage::kStartTls: buf->append("STARTTLS\r\n"); break;
    case Stage::kConnect:
    case Stage::kGreeting:
    case Stage::kTlsHandshake:
    case Stage::kBdat:
    case Stage::kDataEnd: break;  // nothing to write (or written elsewhere)
  }
}

void ClientFsm::SendNextCommand(FsmActions* out) {
  FsmAction a;
  a.type = FsmAction::Type::kWrite;
  const Command& c = table_[sent_++];
  last_stage_ = c.stage;
  AppendCommand(c, &a.bytes);
  out->push_back(std::move(a));
}

void ClientFsm::SendCommandNow(Stage stage, FsmActions* out) {
  Push(stage);
  SendNextCommand(out);
}

void ClientFsm::SyncTimer(FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  uint64_t want = acked_ < sent_ ? table_[acked_].seq : 0;
  if (want == armed_seq_) return;
  armed_seq_ = want;
  FsmAction a;
  if (want == 0) {
    a.type = FsmAction::Type::kStopTimer;
  } else {
    a.type = FsmAction::Type::kArmTimer;
    a.stage = table_[acked_].stage;
    a.timeout = TimeoutFor(a.stage);
  }
  out->push_back(std::move(a));
}

void ClientFsm::Start(FsmActions* out) {
  if (phase_ != Phase::kNew) return;
  phase_ = Phase::kHandshake;
  Push(Stage::kConnect);
  sent_ = table_.size();
  last_stage_ = Stage::kConnect;
  SyncTimer(out);
}

void ClientFsm::OnConnected(FsmActions* out) {
  if (phase_ != Phase::kHandshake || acked_ >= sent_ ||
      table_[acked_].stage != Stage::kConnect) {
    return;
  }
  ++acked_;
  Push(Stage::kGreeting);  // "sent" by connecting
  ++sent_;
  last_stage_ = Stage::kGreeting;
  SyncTimer(out);
}

void ClientFsm::OnData(absl::string_view bytes, FsmActions* out) {
  // Commands sent after these bytes arrived have seq > limit.
  const uint64_t limit = sent_ > 0 ? table_[sent_ - 1].seq : 0;
  while (!bytes.empty() && phase_ != Phase::kClosed) {
    if (phase_ == Phase::kTls) {
      OnProtocolViolation("protocol violation: plaintext after the STARTTLS "
                          "220 (CVE-2021-38371)",
                          out);
      return;
    }
    ReplyParser::Status s = parser_.Parse(&bytes, &scratch_);
    if (s == ReplyParser::Status::kNeedMore) break;
    if (s == ReplyParser::Status::kError) {
      FailSession(Synthetic(CurrentStage(),
                            absl::StrCat("protocol error: ", parser_.error())),
                  out);
      return;
    }
    if (acked_ < sent_ && table_[acked_].seq > limit) {
      FailSession(Synthetic(CurrentStage(),
                            absl::StrCat("protocol error: reply before its "
                                         "command was sent (desync): ",
                                         scratch_.code)),
                  out);
      return;
    }
    if (acked_ < sent_ && table_[acked_].stage == Stage::kStartTls &&
        scratch_.code == 220 && !bytes.empty()) {
      FailSession(Synthetic(Stage::kStartTls,
                            "protocol violation: data after the STARTTLS 220 "
                            "before the TLS handshake (CVE-2021-38371)"),
                  out);
      return;
    }
    scratch_.synthetic = false;
    OnReply(std::move(scratch_), out);
    scratch_ = Reply();
  }
}

void ClientFsm::OnReply(Reply r, FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kTls) {
    OnProtocolViolation("protocol violation: reply during the TLS handshake",
                        out);
    return;
  }
  if (acked_ >= sent_ || table_[acked_].stage == Stage::kConnect) {
    if (r.code == 421) {  // e.g. an idle timeout at the server
      r.stage = CurrentStage();
      FailSession(std::move(r), out);
    } else {
      FailSession(Synthetic(CurrentStage(),
                            absl::StrCat("protocol error: reply with no "
                                         "command pending: ",
                                         r.code, " ", r.text)),
                  out);
    }
    return;
  }
  const Command c = table_[acked_++];
  r.stage = c.stage;
  const bool is3xx = r.code >= 300 && r.code < 400;
  if (c.stage == Stage::kData ? Is2xx(r) : is3xx) {
    // Not recorded: the reply belongs to some other command.
    FailSession(Synthetic(c.stage, absl::StrCat("protocol error: unexpected ",
                                                r.code, " to ",
                                                StageName(c.stage),
                                                " (desync)")),
                out);
    return;
  }
  if (r.code == 421 && c.stage != Stage::kQuit) {
    // The server is closing the connection: nothing more will be answered.
    if (in_txn_) {
      Reply copy = r;
      OnTxnReply(c, &copy, nullptr);
    }
    FailSession(std::move(r), out);
    return;
  }
  switch (c.stage) {
    case Stage::kGreeting:
      if (r.code == 220) {
        SendCommandNow(Stage::kEhlo, out);
      } else {
        QuitBecause(std::move(r), out);
      }
      break;
    case Stage::kEhlo:
    case Stage::kHelo:
      if (r.code == 250) {
        if (c.stage == Stage::kEhlo) ParseExtensions(r.text);
        AfterEhlo(c.stage, out);
      } else if (c.stage == Stage::kEhlo && r.code >= 500) {
        SendCommandNow(Stage::kHelo, out);
      } else {
        QuitBecause(std::move(r), out);
      }
      break;
    case Stage::kMail:
    case Stage::kRcpt:
    case Stage::kData:
    case Stage::kDataEnd:
      OnTxnReply(c, &r, out);
      break;
    case Stage::kRset:
      ReleaseHeld(nullptr, out);
      if (Is2xx(r)) {
        GoIdle(out);
      } else {
        QuitBecause(std::move(r), out);
      }
      break;
    case Stage::kQuit:
      Close(have_close_reason_ ? close_reason_ : std::move(r), out);
      return;
    case Stage::kStartTls:
      if (r.code == 220) {
        phase_ = Phase::kTls;
        Push(Stage::kTlsHandshake);  // "sent" by starting it
        ++sent_;
        last_stage_ = Stage::kTlsHandshake;
        FsmAction a;
        a.type = FsmAction::Type::kStartTls;
        out->push_back(std::move(a));
      } else if (TlsRequired()) {
        QuitBecause(Synthetic(Stage::kStartTls,
                              absl::StrCat("TLS required but STARTTLS was "
                                           "refused: ",
                                           r.ToString())),
                    out);
      } else {
        GoIdle(out);  // plaintext with the extensions we have
      }
      break;
    case Stage::kBdat:
      OnTxnReply(c, &r, out);
      break;
    case Stage::kConnect:
    case Stage::kTlsHandshake:
      break;
  }
  SyncTimer(out);
}

bool ClientFsm::TlsRequired() const {
  return options_.tls.policy == TlsPolicy::kRequired ||
         options_.tls.policy == TlsPolicy::kRequiredVerify;
}

void ClientFsm::AfterEhlo(Stage stage, FsmActions* out) {
  if (!tls_active_ && ext_.starttls &&
      options_.tls.policy != TlsPolicy::kDisabled) {
    SendCommandNow(Stage::kStartTls, out);
    return;
  }
  if (!tls_active_ && TlsRequired()) {
    QuitBecause(Synthetic(stage, "TLS required but the server does not "
                                 "offer STARTTLS"),
                out);
    return;
  }
  GoIdle(out);
}

void ClientFsm::OnTlsEstablished(FsmActions* out) {
  if (phase_ != Phase::kTls) return;
  ++acked_;  // the handshake
  tls_active_ = true;
  phase_ = Phase::kHandshake;
  parser_.Reset();
  ext_ = Extensions();  // RFC 3207: forget what was said in plaintext
  SendCommandNow(Stage::kEhlo, out);
  SyncTimer(out);
}

void ClientFsm::OnTlsFailed(absl::string_view why, FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  FailSession(Synthetic(Stage::kTlsHandshake,
                        absl::StrCat("TLS handshake failed: ", why)),
              out);
}

void ClientFsm::OnProtocolViolation(absl::string_view why, FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  FailSession(
      Synthetic(phase_ == Phase::kTls ? Stage::kStartTls : CurrentStage(), why),
      out);
}

// Records the reply; with `out` == nullptr only records (session failing).
void ClientFsm::OnTxnReply(const Command& c, Reply* r, FsmActions* out) {
  switch (c.stage) {
    case Stage::kMail: {
      bool ok = Is2xx(*r);
      result_.mail = std::move(*r);
      if (out == nullptr || pipelining_) return;
      if (ok) {
        SendNextCommand(out);
      } else {
        FinishTxn(/*rset=*/false, out);
      }
      return;
    }
    case Stage::kRcpt: {
      if (Is2xx(*r)) ++accepted_;
      result_.rcpts[c.rcpt] = std::move(*r);
      if (out == nullptr || (pipelining_ && !bdat_)) return;
      bool last_rcpt = acked_ >= table_.size() ||
                       table_[acked_].stage != Stage::kRcpt;
      if (!last_rcpt) {
        if (!pipelining_) SendNextCommand(out);  // next RCPT
      } else if (accepted_ == 0 || !Is2xx(result_.mail)) {
        FinishTxn(/*rset=*/Is2xx(result_.mail), out);
      } else if (bdat_) {
        SendBdat(out);
      } else {
        SendNextCommand(out);  // DATA
      }
      return;
    }
    case Stage::kData: {
      bool go = r->code == 354;
      result_.data = std::move(*r);
      if (out == nullptr) return;
      if (go) {
        SendBody(out);
      } else {
        FinishTxn(/*rset=*/Is2xx(result_.mail), out);
      }
      return;
    }
    case Stage::kDataEnd:
    case Stage::kBdat:
      result_.data_end = std::move(*r);
      if (out != nullptr) FinishTxn(/*rset=*/false, out);
      return;
    default:
      return;
  }
}

void ClientFsm::SendBody(FsmActions* out) {
  Push(Stage::kDataEnd);
  ++sent_;
  last_stage_ = Stage::kDataEnd;
  FsmAction a;
  a.type = FsmAction::Type::kWrite;
  if (Is2xx(result_.mail) && accepted_ > 0) {
    a.body = std::move(txn_.data);
    a.tail = (a.body.empty() || absl::EndsWith(a.body, "\r\n")) ? kDotCrlf
                                                                 : kCrlfDotCrlf;
  } else {
    // DATA got 354 although no recipient is valid (pipelined): end the data
    // at once with an empty message, as Postfix does. The transaction fails.
    a.tail = kDotCrlf;
  }
  out->push_back(std::move(a));
}

void ClientFsm::SendBdat(FsmActions* out) {
  Push(Stage::kBdat);
  ++sent_;
  last_stage_ = Stage::kBdat;
  result_.data = LocalReply(Stage::kBdat, 354, "", "BDAT (no DATA command)");
  FsmAction a;
  a.type = FsmAction::Type::kWrite;
  a.body = Unstuff(std::move(txn_.data));
  if (!a.body.empty() && !absl::EndsWith(a.body, "\r\n")) a.tail = "\r\n";
  absl::StrAppend(&a.bytes, "BDAT ", a.body.size() + a.tail.size(),
                  " LAST\r\n");
  out->push_back(std::move(a));
}

void ClientFsm::FailLocally(const Transaction& txn, const Reply& reply,
                            FsmActions* out) {
  FsmAction a;
  a.type = FsmAction::Type::kTransactionDone;
  a.result.mail = reply;
  a.result.rcpts.assign(txn.rcpts.size(), reply);
  a.result.data = reply;
  a.result.data_end = reply;
  ++transactions_;
  out->push_back(std::move(a));
  GoIdle(out);
}

void ClientFsm::FinishTxn(bool rset, FsmActions* out) {
  in_txn_ = false;
  table_.resize(sent_);  // drop commands never sent (MAIL or RCPTs failed)
  ++transactions_;
  txn_ = Transaction();
  if (rset) {
    // A failed transaction is reported when RSET is answered: a server out
    // of step (e.g. a duplicate reply under PIPELINING that shifted a RCPT
    // 550 onto DATA) shows itself there, and then nothing it said counts.
    held_ = std::move(result_);
    holding_ = true;
    result_ = TransactionResult();
    SendCommandNow(Stage::kRset, out);
  } else {
    FsmAction a;
    a.type = FsmAction::Type::kTransactionDone;
    a.result = std::move(result_);
    result_ = TransactionResult();
    out->push_back(std::move(a));
    GoIdle(out);
  }
}

void ClientFsm::GoIdle(FsmActions* out) {
  phase_ = Phase::kIdle;
  if (quit_requested_) {
    DoQuit(out);
    return;
  }
  // Stop the timer before kReady: the owner may Send() from inside on_ready
  // and arm it again, and a stop after that would leave the new command
  // without a timeout.
  SyncTimer(out);
  FsmAction a;
  a.type = FsmAction::Type::kReady;
  out->push_back(std::move(a));
}

void ClientFsm::QuitBecause(Reply why, FsmActions* out) {
  close_reason_ = std::move(why);
  have_close_reason_ = true;
  DoQuit(out);
}

void ClientFsm::DoQuit(FsmActions* out) {
  phase_ = Phase::kQuitting;
  SendCommandNow(Stage::kQuit, out);
  SyncTimer(out);
}

void ClientFsm::Send(Transaction txn, FsmActions* out) {
  if (phase_ != Phase::kIdle || txn.rcpts.empty()) {
    FsmAction a;
    a.type = FsmAction::Type::kTransactionDone;
    Reply r = Synthetic(Stage::kMail, txn.rcpts.empty()
                                          ? "transaction has no recipients"
                                          : "session not idle");
    a.result.mail = r;
    a.result.rcpts.assign(txn.rcpts.size(), r);
    out->push_back(std::move(a));
    return;
  }
  if (ext_.size > 0 &&
      static_cast<int64_t>(txn.data.size() + kDotCrlf.size()) > ext_.size) {
    FailLocally(txn,
                LocalReply(Stage::kMail, 552, "5.3.4",
                           absl::StrCat("message size ",
                                        txn.data.size() + kDotCrlf.size(),
                                        " exceeds the server's SIZE ",
                                        ext_.size)),
                out);
    return;
  }
  const Reply no_utf8 = LocalReply(
      Stage::kRcpt, 553, "5.6.7",
      "internationalized address but the server does not offer SMTPUTF8");
  utf8_ = !IsAscii(txn.mail_from);
  if (utf8_ && !ext_.smtputf8) {
    Reply r = no_utf8;
    r.stage = Stage::kMail;
    FailLocally(txn, r, out);
    return;
  }
  const int n = static_cast<int>(txn.rcpts.size());
  result_ = TransactionResult();
  result_.mail = Synthetic(Stage::kMail, "");
  result_.rcpts.assign(n, Synthetic(Stage::kRcpt, ""));
  result_.data = Synthetic(Stage::kData, "");
  result_.data_end = Synthetic(Stage::kDataEnd, "");
  std::vector<bool> send_rcpt(n, true);
  int to_send = 0;
  for (int i = 0; i < n; ++i) {
    if (!IsAscii(txn.rcpts[i])) {
      if (ext_.smtputf8) {
        utf8_ = true;
      } else {
        send_rcpt[i] = false;
        result_.rcpts[i] = no_utf8;
        continue;
      }
    }
    ++to_send;
  }
  if (to_send == 0) {
    FailLocally(txn, no_utf8, out);
    result_ = TransactionResult();
    return;
  }
  eight_bit_ = ext_.eight_bit_mime && !IsAscii(txn.data);
  bdat_ = ext_.chunking && options_.use_chunking;
  phase_ = Phase::kBusy;
  in_txn_ = true;
  txn_ = std::move(txn);
  accepted_ = 0;

  Push(Stage::kMail);
  for (int i = 0; i < n; ++i) {
    if (send_rcpt[i]) Push(Stage::kRcpt, i);
  }
  if (!bdat_) Push(Stage::kData);
  pipelining_ = ext_.pipelining && options_.use_pipelining;
  if (pipelining_) {
    FsmAction a;
    a.type = FsmAction::Type::kWrite;
    a.bytes.reserve(64 + 48 * n);
    while (sent_ < table_.size()) AppendCommand(table_[sent_++], &a.bytes);
    last_stage_ = table_.back().stage;
    out->push_back(std::move(a));
  } else {
    SendNextCommand(out);
  }
  SyncTimer(out);
}

void ClientFsm::Quit(FsmActions* out) {
  switch (phase_) {
    case Phase::kIdle:
      DoQuit(out);
      break;
    case Phase::kNew:
      Close(Synthetic(Stage::kConnect, "quit before connect"), out);
      break;
    case Phase::kHandshake:
    case Phase::kTls:
    case Phase::kBusy:
      quit_requested_ = true;
      break;
    case Phase::kQuitting:
    case Phase::kClosed:
      break;
  }
}

void ClientFsm::Abort(absl::string_view why, FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  FailSession(Synthetic(CurrentStage(), why), out);
}

void ClientFsm::OnTimeout(FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  armed_seq_ = 0;
  Stage s = CurrentStage();
  FailSession(Synthetic(s, absl::StrCat("timeout waiting for ", StageName(s),
                                        " reply")),
              out);
}

void ClientFsm::OnConnectionClosed(absl::string_view why, FsmActions* out) {
  if (phase_ == Phase::kClosed) return;
  Stage s = CurrentStage();
  FailSession(Synthetic(s, absl::StrCat("connection closed in ", StageName(s),
                                        ": ", why)),
              out);
}

void ClientFsm::ReleaseHeld(const Reply* protocol_error, FsmActions* out) {
  if (!holding_) return;
  holding_ = false;
  FsmAction a;
  a.type = FsmAction::Type::kTransactionDone;
  a.result = std::move(held_);
  held_ = TransactionResult();
  if (protocol_error != nullptr) {
    Reply fill = *protocol_error;
    fill.synthetic = true;
    fill.code = 0;
    auto set = [&](Reply* r) {
      Stage stage = r->stage;
      *r = fill;
      r->stage = stage;
    };
    set(&a.result.mail);
    for (Reply& r : a.result.rcpts) set(&r);
    set(&a.result.data);
    set(&a.result.data_end);
  }
  out->push_back(std::move(a));
}

void ClientFsm::FailSession(Reply reason, FsmActions* out) {
  // Our own protocol-error texts all start with "protocol ".
  ReleaseHeld(absl::StartsWith(reason.text, "protocol ") ? &reason : nullptr,
              out);
  if (in_txn_) {
    in_txn_ = false;
    // Every field no server reply filled becomes a transient failure.
    Reply fill = reason;
    fill.synthetic = true;
    if (fill.code != 421) fill.code = 0;
    auto patch = [&](Reply* r) {
      if (!Unset(*r)) return;
      Stage stage = r->stage;
      *r = fill;
      r->stage = stage;
    };
    patch(&result_.mail);
    for (Reply& r : result_.rcpts) patch(&r);
    patch(&result_.data);
    patch(&result_.data_end);
    FsmAction a;
    a.type = FsmAction::Type::kTransactionDone;
    a.result = std::move(result_);
    result_ = TransactionResult();
    txn_ = Transaction();
    out->push_back(std::move(a));
  }
  if (phase_ == Phase::kQuitting && have_close_reason_) {
    Close(close_reason_, out);
  } else {
    Close(std::move(reason), out);
  }
}

void ClientFsm::Close(Reply reason, FsmActions* out) {
  phase_ = Phase::kClosed;
  if (armed_seq_ != 0) {
    armed_seq_ = 0;
    FsmAction t;
    t.type = FsmAction::Type::kStopTimer;
    out->push_back(std::move(t));
  }
  FsmAction a;
  a.type = FsmAction::Type::kClose;
  a.reply = std::move(reason);
  out->push_back(std::move(a));
}

void ClientFsm::ParseExtensions(absl::string_view text) {
  ext_ = Extensions();
  bool first = true;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    absl::string_view line = text.substr(0, nl);
    text = nl == absl::string_view::npos ? absl::string_view()
                                         : text.substr(nl + 1);
    if (first) {  // the server's name and greeting
      first = false;
      continue;
    }
    absl::string_view word = line.substr(0, line.find(' '));
    absl::string_view arg =
        word.size() < line.size() ? line.substr(word.size() + 1) : "";
    if (absl::EqualsIgnoreCase(word, "PIPELINING")) {
      ext_.pipelining = true;
    } else if (absl::EqualsIgnoreCase(word, "8BITMIME")) {
      ext_.eight_bit_mime = true;
    } else if (absl::EqualsIgnoreCase(word, "SMTPUTF8")) {
      ext_.smtputf8 = true;
    } else if (absl::EqualsIgnoreCase(word, "CHUNKING")) {
      ext_.chunking = true;
    } else if (absl::EqualsIgnoreCase(word, "ENHANCEDSTATUSCODES")) {
      ext_.enhanced_status_codes = true;
    } else if (absl::EqualsIgnoreCase(word, "STARTTLS")) {
      ext_.starttls = true;
    } else if (absl::EqualsIgnoreCase(word, "SIZE")) {
      int64_t n = 0;
      ext_.size = absl::SimpleAtoi(absl::StripAsciiWhitespace(arg), &n) && n > 0
                      ? n
                      : 0;
    }
  }
  parser_.set_enhanced_status_codes(ext_.enhanced_status_codes);
}

}  // namespace salvo::smtp
