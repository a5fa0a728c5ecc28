// libFuzzer target for smtp::ClientFsm: one session from connect through
// EHLO, up to four transactions and QUIT, with the fuzz input as everything
// the server says, cut in fuzz-chosen pieces, plus timeouts, closes, aborts,
// early QUITs and Send() at the wrong time. Single-threaded; built and run by
// tests/fuzz/run_fuzzers.sh (clang++-14).
//
// Input (FuzzedDataProvider): the LAST two bytes configure the session
// (uint16, last byte high: bit 0 PIPELINING allowed, bits 1-2 transactions
// - 1, bits 3-4 recipients - 1, bit 5 body without final CRLF, bit 6 empty
// body, bit 7 Quit() at once, bit 8 no CHUNKING, bits 9-10 TLS policy);
// then control bytes are taken from the end and server bytes from the front.
// Control c: 0 = feed all remaining server bytes; 1..0xEF = feed c bytes;
// 0xF0 timer fires; 0xF1 connection closed; 0xF2 Abort(); 0xF3 Quit();
// 0xF4 Send() now; 0xF5..0xFF = feed 1 byte. After the FSM asks for TLS,
// the next control byte ends the handshake: 0xF5 failed, else established.
// make_seeds.py writes seeds in this layout.
//
// The harness reacts to kReady (Send() or Quit()) inside the action list,
// as the Session does (ConnectionPool Send()s from on_ready): a later
// kStopTimer of the same list must not stop the new command's timer (a bug
// this target found; seed corpus/client_fsm/timer-after-ready).
// SALVO_FUZZ_SYNC_READY=0 reacts after the whole list instead.
//
// Oracle: the harness reads every command the FSM writes and maps the
// server's replies to them in order with its own ReplyParser. Invariants
// (violations abort with the failed condition on stderr):
//   - a recipient reads as delivered (ForRecipient() 2xx) only if MAIL, its
//     RCPT and the final "." got 2xx from the server, with the same codes;
//   - every non-synthetic reply in a result is the server's reply to that
//     command; synthetic replies are never 2xx;
//   - every Send() ends in exactly one kTransactionDone whose rcpts count
//     equals the recipients given;
//   - one kClose, nothing written, armed or readied after it; the timer is
//     armed whenever the session waits for the server and stopped at close;
//   - the body write ends the data with CRLF "." CRLF.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/smtp/client_fsm.h"
#include "engine/smtp/reply.h"
#include "engine/smtp/reply_parser.h"
#include "engine/smtp/transaction.h"

#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,      \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

namespace {

using salvo::smtp::ClientFsm;
using salvo::smtp::FsmAction;
using salvo::smtp::FsmActions;
using salvo::smtp::Reply;
using salvo::smtp::ReplyParser;
using salvo::smtp::SessionOptions;
using salvo::smtp::Transaction;
using salvo::smtp::TransactionResult;

bool Is2xx(int code) { return code >= 200 && code < 300; }

bool SyncReady() {
  static const bool sync = [] {
    const char* v = std::getenv("SALVO_FUZZ_SYNC_READY");
    return v == nullptr || v[0] != '0';
  }();
  return sync;
}

// STARTTLS support is optional in the FSM under test: these compile to
// no-ops when FsmAction::Type::kStartTls or OnTlsEstablished() is missing.
template <typename T, typename = void>
struct StartTlsAction {
  static bool Is(T) { return false; }
};
template <typename T>
struct StartTlsAction<T, std::void_t<decltype(T::kStartTls)>> {
  static bool Is(T t) { return t == T::kStartTls; }
};
template <typename F, typename = void>
struct TlsEvents {
  static void Established(F&, FsmActions*) {}
  static void Failed(F&, FsmActions*) {}
};
template <typename F>
struct TlsEvents<F, std::void_t<decltype(std::declval<F&>().OnTlsEstablished(
                        static_cast<FsmActions*>(nullptr)))>> {
  static void Established(F& fsm, FsmActions* out) {
    fsm.OnTlsEstablished(out);
  }
  static void Failed(F& fsm, FsmActions* out) {
    fsm.OnTlsFailed("fuzz: handshake failed", out);
  }
};

// What the server's replies answered, as the harness sees it.
struct Oracle {
  int mail = 0;
  std::vector<int> rcpt;
  int data = 0;
  int data_end = 0;
};

class Session {
 public:
  Session(FuzzedDataProvider* fdp, uint16_t config)
      : fdp_(fdp), fsm_(Options(config)), config_(config) {
    planned_ = 1 + ((config >> 1) & 3);
  }

  void Run() {
    FsmActions acts;
    fsm_.Start(&acts);
    fsm_.OnConnected(&acts);
    Dispatch(&acts, /*writes_noted=*/false);
    commands_.push_back(Command{Kind::kGreeting, -1, -1});
    if (config_ & 0x80) CallQuit();
    DrainReady();

    while (!fsm_.closed() && fdp_->remaining_bytes() > 0) {
      const uint8_t c = fdp_->ConsumeIntegral<uint8_t>();
      acts.clear();
      if (tls_pending_) {
        tls_pending_ = false;
        if (c == 0xF5) {
          TlsEvents<ClientFsm>::Failed(fsm_, &acts);
          Dispatch(&acts, false);
          FUZZ_CHECK(fsm_.closed());
        } else {
          oracle_parser_.Reset();  // the FSM starts afresh under TLS
          TlsEvents<ClientFsm>::Established(fsm_, &acts);
          Dispatch(&acts, false);
        }
        CheckTimer();
        continue;
      }
      switch (c) {
        case 0xF0:
          if (armed_) {  // a timer that is not armed cannot fire
            armed_ = false;
            fsm_.OnTimeout(&acts);
            Dispatch(&acts, false);
            FUZZ_CHECK(fsm_.closed());
          }
          break;
        case 0xF1:
          fsm_.OnConnectionClosed("fuzz: connection reset", &acts);
          Dispatch(&acts, false);
          FUZZ_CHECK(fsm_.closed());
          break;
        case 0xF2:
          fsm_.Abort("fuzz: abort", &acts);
          Dispatch(&acts, false);
          FUZZ_CHECK(fsm_.closed());
          break;
        case 0xF3:
          CallQuit();
          break;
        case 0xF4:
          SendNext();
          break;
        default: {
          const std::string chunk =
              c == 0 ? fdp_->ConsumeRemainingBytesAsString()
                     : fdp_->ConsumeBytesAsString(c < 0xF0 ? c : 1);
          if (chunk.empty()) break;
          fsm_.OnData(chunk, &acts);
          NoteWrites(acts);  // written while the chunk was being read
          OracleFeed(chunk);
          Dispatch(&acts, /*writes_noted=*/true);
          break;
        }
      }
      DrainReady();
      CheckTimer();
    }
    if (!fsm_.closed()) {
      acts.clear();
      fsm_.OnConnectionClosed("fuzz: end of input", &acts);
      Dispatch(&acts, false);
    }
    FUZZ_CHECK(fsm_.closed());
    FUZZ_CHECK(closes_ == 1);
    FUZZ_CHECK(in_flight_ < 0);
    FUZZ_CHECK(!armed_);
    for (bool d : done_) FUZZ_CHECK(d);
  }

 private:
  enum class Kind { kGreeting, kMail, kRcpt, kData, kDataEnd, kOther };
  struct Command {
    Kind kind;
    int txn;
    int rcpt;
  };

  static SessionOptions Options(uint16_t config) {
    SessionOptions o;
    o.helo_name = "client.fuzz.example";
    o.use_pipelining = config & 1;
    o.use_chunking = !(config & 0x100);
    switch ((config >> 9) & 3) {
      case 1: o.tls.policy = salvo::smtp::TlsPolicy::kDisabled; break;
      case 2: o.tls.policy = salvo::smtp::TlsPolicy::kRequired; break;
      default: o.tls.policy = salvo::smtp::TlsPolicy::kOpportunistic; break;
    }
    return o;
  }

  // Handles `acts`, then what the harness does when the FSM is ready.
  void Dispatch(FsmActions* acts, bool writes_noted) {
    Handle(acts, writes_noted);
    DrainReady();
  }

  void DrainReady() {
    while (ready_pending_) {
      ready_pending_ = false;
      OnReady();
    }
  }

  void OnReady() {
    if (closed_) return;
    FUZZ_CHECK(in_flight_ < 0);
    if (sent_ < planned_ && !quit_called_) {
      SendNext();
    } else if (!quit_called_) {
      CallQuit();
    }
  }

  void CallQuit() {
    quit_called_ = true;
    FsmActions acts;
    fsm_.Quit(&acts);
    Handle(&acts, false);  // Dispatch() reacts to a kReady in here
  }

  // Send() the next transaction, whatever the session's state.
  void SendNext() {
    const int id = static_cast<int>(rcpts_.size());
    const int n = 1 + ((config_ >> 3) & 3);
    Transaction txn;
    txn.mail_from = absl::StrCat("s", id, "@from.fuzz.example");
    for (int i = 0; i < n; ++i) {
      txn.rcpts.push_back(absl::StrCat("r", id, ".", i, "@to.fuzz.example"));
    }
    if (!(config_ & 0x40)) {
      txn.data = (config_ & 0x20) ? "Subject: fuzz\r\n\r\nhello"
                                  : "Subject: fuzz\r\n\r\nhello\r\n";
    }
    rcpts_.push_back(txn.rcpts);
    oracle_.emplace_back();
    oracle_.back().rcpt.assign(n, 0);
    done_.push_back(false);
    ++sent_;

    const bool idle = fsm_.idle();
    if (idle) {
      FUZZ_CHECK(in_flight_ < 0);
      in_flight_ = id;
    } else {
      rejected_ = id;  // must be answered at once
    }
    FsmActions acts;
    fsm_.Send(std::move(txn), &acts);
    Handle(&acts, false);  // Dispatch() reacts to a kReady in here
    FUZZ_CHECK(rejected_ < 0);
  }

  void Handle(FsmActions* acts, bool writes_noted) {
    for (FsmAction& a : *acts) {
      switch (a.type) {
        case FsmAction::Type::kWrite:
          FUZZ_CHECK(!closed_);
          if (!writes_noted) NoteWrite(a);
          break;
        case FsmAction::Type::kArmTimer:
          FUZZ_CHECK(!closed_);
          FUZZ_CHECK(a.timeout > absl::ZeroDuration());
          armed_ = true;
          break;
        case FsmAction::Type::kStopTimer:
          armed_ = false;
          break;
        case FsmAction::Type::kTransactionDone:
          OnDone(a.result);
          break;
        case FsmAction::Type::kReady:
          FUZZ_CHECK(!closed_);
          FUZZ_CHECK(in_flight_ < 0);
          if (SyncReady()) {
            OnReady();  // as Session + ConnectionPool do today
          } else {
            ready_pending_ = true;
          }
          break;
        case FsmAction::Type::kClose:
          FUZZ_CHECK(closes_ == 0);
          ++closes_;
          closed_ = true;
          FUZZ_CHECK(!armed_);
          FUZZ_CHECK(fsm_.closed());
          break;
        default:
          if (StartTlsAction<FsmAction::Type>::Is(a.type)) {
            FUZZ_CHECK(!closed_);
            tls_pending_ = true;
          }
          break;
      }
    }
  }

  void NoteWrites(const FsmActions& acts) {
    for (const FsmAction& a : acts) {
      if (a.type == FsmAction::Type::kWrite) NoteWrite(a);
    }
  }

  // Splits a write into the commands it carries, in order.
  void NoteWrite(const FsmAction& a) {
    absl::string_view b = a.bytes;
    bool bdat = false;
    while (!b.empty()) {
      const size_t end = b.find("\r\n");
      FUZZ_CHECK(end != absl::string_view::npos);  // whole command lines
      absl::string_view line = b.substr(0, end);
      b.remove_prefix(end + 2);
      if (absl::StartsWithIgnoreCase(line, "MAIL FROM:<")) {
        FUZZ_CHECK(in_flight_ >= 0);
        commands_.push_back(Command{Kind::kMail, in_flight_, -1});
      } else if (absl::StartsWithIgnoreCase(line, "RCPT TO:<")) {
        FUZZ_CHECK(in_flight_ >= 0);
        const size_t close = line.find('>');
        FUZZ_CHECK(close != absl::string_view::npos);
        const absl::string_view addr = line.substr(9, close - 9);
        int index = -1;
        const std::vector<std::string>& rcpts = rcpts_[in_flight_];
        for (size_t i = 0; i < rcpts.size(); ++i) {
          if (rcpts[i] == addr) index = static_cast<int>(i);
        }
        FUZZ_CHECK(index >= 0);
        commands_.push_back(Command{Kind::kRcpt, in_flight_, index});
      } else if (absl::EqualsIgnoreCase(line, "DATA")) {
        FUZZ_CHECK(in_flight_ >= 0);
        commands_.push_back(Command{Kind::kData, in_flight_, -1});
      } else if (absl::StartsWithIgnoreCase(line, "BDAT ")) {
        bdat = true;
        const bool last = absl::EndsWithIgnoreCase(line, " LAST");
        commands_.push_back(
            Command{last ? Kind::kDataEnd : Kind::kOther, in_flight_, -1});
      } else {
        commands_.push_back(Command{Kind::kOther, -1, -1});
      }
    }
    if (!bdat && (!a.body.empty() || !a.tail.empty())) {
      FUZZ_CHECK(in_flight_ >= 0);
      // The data ends with CRLF "." CRLF (or is just "." CRLF).
      const std::string end = absl::StrCat(
          a.body.size() >= 2 ? a.body.substr(a.body.size() - 2) : a.body,
          a.tail);
      FUZZ_CHECK(absl::EndsWith(end, "\r\n.\r\n") ||
                 (a.body.empty() && a.tail == ".\r\n"));
      commands_.push_back(Command{Kind::kDataEnd, in_flight_, -1});
    }
  }

  // Maps the server's replies in `chunk` to the commands written so far.
  void OracleFeed(absl::string_view chunk) {
    while (!oracle_broken_ && !chunk.empty()) {
      ReplyParser::Status s = oracle_parser_.Parse(&chunk, &scratch_);
      if (s == ReplyParser::Status::kError) oracle_broken_ = true;
      if (s != ReplyParser::Status::kReply) break;
      if (answered_ >= commands_.size()) continue;  // nothing was pending
      const Command& c = commands_[answered_++];
      if (c.txn < 0) continue;
      Oracle& o = oracle_[c.txn];
      switch (c.kind) {
        case Kind::kMail: o.mail = scratch_.code; break;
        case Kind::kRcpt: o.rcpt[c.rcpt] = scratch_.code; break;
        case Kind::kData: o.data = scratch_.code; break;
        case Kind::kDataEnd: o.data_end = scratch_.code; break;
        default: break;
      }
    }
  }

  void OnDone(const TransactionResult& r) {
    int id;
    const bool rejected = rejected_ >= 0;
    if (rejected) {
      id = rejected_;
      rejected_ = -1;
    } else {
      FUZZ_CHECK(in_flight_ >= 0);  // a result for a transaction never sent
      id = in_flight_;
      in_flight_ = -1;
    }
    FUZZ_CHECK(!done_[id]);
    done_[id] = true;
    const Oracle& o = oracle_[id];
    FUZZ_CHECK(r.rcpts.size() == rcpts_[id].size());

    auto check_field = [&](const Reply& got, int server_code) {
      if (got.synthetic) {
        // Never a made-up success (BDAT's local 354 for `data` is fine).
        FUZZ_CHECK(!Is2xx(got.code));
      } else if (got.code != 0) {
        FUZZ_CHECK(!rejected);
        FUZZ_CHECK(got.code == server_code);
      }
    };
    check_field(r.mail, o.mail);
    for (size_t i = 0; i < r.rcpts.size(); ++i) {
      check_field(r.rcpts[i], o.rcpt[i]);
    }
    check_field(r.data, o.data);
    check_field(r.data_end, o.data_end);

    for (size_t i = 0; i < r.rcpts.size(); ++i) {
      const Reply& f = r.ForRecipient(i);
      if (!Is2xx(f.code)) continue;
      // Delivered: the server accepted MAIL, this RCPT and the final ".".
      FUZZ_CHECK(!rejected);
      FUZZ_CHECK(!f.synthetic);
      FUZZ_CHECK(Is2xx(o.mail));
      FUZZ_CHECK(Is2xx(o.rcpt[i]));
      FUZZ_CHECK(Is2xx(o.data_end));
      FUZZ_CHECK(f.code == o.data_end);
    }
  }

  // The session waits for the server exactly when a timer is armed.
  void CheckTimer() {
    if (fsm_.closed() || fsm_.idle()) {
      FUZZ_CHECK(!armed_);
    } else {
      FUZZ_CHECK(armed_);
    }
  }

  FuzzedDataProvider* const fdp_;
  ClientFsm fsm_;
  const uint16_t config_;
  int planned_ = 1;
  int sent_ = 0;
  bool quit_called_ = false;
  bool ready_pending_ = false;
  bool tls_pending_ = false;

  int in_flight_ = -1;  // transaction id the FSM is working on
  int rejected_ = -1;   // transaction id Send() must refuse at once
  std::vector<std::vector<std::string>> rcpts_;  // per transaction id
  std::vector<Oracle> oracle_;                   // per transaction id
  std::vector<bool> done_;                       // per transaction id

  std::vector<Command> commands_;  // every command written, in order
  size_t answered_ = 0;            // commands_ the server has answered
  ReplyParser oracle_parser_;
  Reply scratch_;
  bool oracle_broken_ = false;

  bool armed_ = false;
  bool closed_ = false;
  int closes_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const uint16_t config = fdp.ConsumeIntegral<uint16_t>();
  Session(&fdp, config).Run();
  return 0;
}
