// Session on libuv: the only socket code of the SMTP client. Feeds socket
// events and timer expiry into ClientFsm and carries out its actions
// (uv_write, core::Timer, callbacks). Loop thread only.
//
// Ownership: the uv_tcp_t lives in a heap Socket that outlives the Session
// until its close callback; write requests point at the Socket, not at the
// Session, so callbacks that arrive after the Session died (UV_ECANCELED)
// are safe. The message body is moved from the Transaction into the write
// request and stays alive until the write callback; it is never copied in
// plaintext. After STARTTLS, socket bytes go through TlsEngine: ciphertext
// in -> plaintext to ClientFsm; FSM writes -> TlsEngine -> one ciphertext
// write. The first byte after the 220 must start a TLS record (0x15 alert
// or 0x16 handshake); plaintext there is a protocol violation
// (CVE-2021-38371).
#include "engine/smtp/session.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/smtp/client_fsm.h"
#include "engine/smtp/tls_engine.h"

namespace salvo::smtp {
namespace {

class SessionImpl;

struct Socket {
  uv_tcp_t tcp;
  uv_connect_t connect;
  SessionImpl* owner = nullptr;  // null once the Session let go
};

struct WriteReq {
  uv_write_t req;
  Socket* socket = nullptr;
  std::string bytes;
  std::string body;
};

uint64_t ToMillis(absl::Duration d) {
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return ms < 0 ? 0 : static_cast<uint64_t>(ms);
}

class SessionImpl final : public Session {
 public:
  SessionImpl(core::Loop& loop, const SessionOptions& options,
              const Endpoint& peer, Callbacks callbacks)
      : loop_(loop),
        options_(options),
        fsm_(options),
        peer_(peer),
        callbacks_(std::move(callbacks)),
        timer_(loop) {}

  ~SessionImpl() override {
    CloseSocket();
    for (WriteReq* r : free_reqs_) delete r;
  }

  void Connect() override {
    if (socket_ != nullptr || closed_) return;
    FsmActions actions;
    fsm_.Start(&actions);
    Run(actions);
    socket_ = new Socket;
    socket_->owner = this;
    socket_->tcp.data = socket_;
    socket_->connect.data = socket_;
    int rc = uv_tcp_init(loop_.uv(), &socket_->tcp);
    if (rc != 0) {
      delete socket_;
      socket_ = nullptr;
    } else {
      uv_tcp_nodelay(&socket_->tcp, 1);
      rc = uv_tcp_connect(&socket_->connect, &socket_->tcp,
                          reinterpret_cast<const sockaddr*>(&peer_.addr),
                          &SessionImpl::OnConnect);
    }
    if (rc != 0) {
      // A failed async call never calls back: report on the next tick so the
      // owner never sees on_closed from inside Connect().
      timer_.Start(0, [this, rc] { OnConnectionClosed(uv_strerror(rc)); });
    }
  }

  void Send(Transaction txn,
            std::function<void(TransactionResult)> done) override {
    done_ = std::move(done);
    FsmActions actions;
    fsm_.Send(std::move(txn), &actions);
    Run(actions);
  }

  void Quit() override {
    FsmActions actions;
    fsm_.Quit(&actions);
    Run(actions);
  }

  void Abort() override {
    FsmActions actions;
    fsm_.Abort("aborted locally", &actions);
    Run(actions);
  }

  bool idle() const override { return fsm_.idle() && !closed_; }
  const Extensions& extensions() const override { return fsm_.extensions(); }
  const Endpoint& peer() const override { return peer_; }
  int transactions() const override { return fsm_.transactions(); }
  const TlsInfo& tls() const override { return tls_info_; }

 private:
  void Run(FsmActions& actions) {
    for (FsmAction& a : actions) {
      switch (a.type) {
        case FsmAction::Type::kWrite:
          if (!closed_) Write(a);
          break;
        case FsmAction::Type::kArmTimer:
          if (!closed_) timer_.Start(ToMillis(a.timeout), [this] { OnTimer(); });
          break;
        case FsmAction::Type::kStopTimer:
          timer_.Stop();
          break;
        case FsmAction::Type::kTransactionDone: {
          auto done = std::move(done_);
          done_ = nullptr;
          if (done) done(std::move(a.result));
          break;
        }
        case FsmAction::Type::kReady:
          if (!closed_ && fsm_.idle() && callbacks_.on_ready) {
            callbacks_.on_ready(this);
          }
          break;
        case FsmAction::Type::kStartTls:
          if (!closed_) StartTls();
          break;
        case FsmAction::Type::kClose:
          timer_.Stop();
          CloseSocket();
          if (!closed_) {
            closed_ = true;
            if (callbacks_.on_closed) callbacks_.on_closed(this, a.reply);
          }
          return;  // nothing after a close; `this` may be on its way out
      }
    }
  }

  WriteReq* NewReq() {
    WriteReq* w;
    if (free_reqs_.empty()) {
      w = new WriteReq;
    } else {
      w = free_reqs_.back();
      free_reqs_.pop_back();
    }
    w->socket = socket_;
    w->req.data = w;
    return w;
  }

  // Sends whatever ciphertext the TLS engine has ready.
  void FlushTls() {
    if (socket_ == nullptr || tls_ == nullptr) return;
    WriteReq* w = NewReq();
    if (!tls_->TakeCiphertext(&w->bytes)) {
      Release(w);
      return;
    }
    uv_buf_t buf = uv_buf_init(w->bytes.data(), w->bytes.size());
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&socket_->tcp),
                      &buf, 1, &SessionImpl::OnWrite);
    if (rc != 0) {
      Release(w);
      OnConnectionClosed(uv_strerror(rc));
    }
  }

  void WriteTls(FsmAction& a) {
    absl::Status st = tls_->WritePlaintext(a.bytes);
    if (st.ok()) st = tls_->WritePlaintext(a.body);
    if (st.ok()) st = tls_->WritePlaintext(a.tail);
    a.body = std::string();
    if (!st.ok()) {
      OnConnectionClosed(st.message());
      return;
    }
    FlushTls();
  }

  void StartTls() {
    TlsClientContext* ctx = options_.tls.context != nullptr
                                ? options_.tls.context
                                : TlsClientContext::ThreadDefault();
    if (ctx == nullptr) {
      TlsFailed("no TLS client context (unreadable CA store?)");
      return;
    }
    tls_context_ = ctx;
    cache_key_ = TlsCacheKey(peer_, options_.tls.policy);
    auto e = TlsEngine::Client(
        ctx->ctx(), peer_.host_name,
        options_.tls.policy == TlsPolicy::kRequiredVerify,
        ctx->sessions().Get(cache_key_));
    if (!e.ok()) {
      TlsFailed(e.status().message());
      return;
    }
    tls_ = std::move(*e);
    if (tls_->Handshake() == TlsEngine::Progress::kFailed) {
      TlsFailed(tls_->error());
      return;
    }
    FlushTls();
  }

  void TlsFailed(absl::string_view why) {
    if (tls_context_ != nullptr) tls_context_->sessions().Erase(cache_key_);
    FsmActions actions;
    fsm_.OnTlsFailed(why, &actions);
    Run(actions);
  }

  void OnTlsBytes(absl::string_view data) {
    if (!tls_->handshake_done() && !tls_bytes_seen_) {
      tls_bytes_seen_ = true;
      unsigned char first = static_cast<unsigned char>(data[0]);
      if (first != 0x15 && first != 0x16) {
        FsmActions actions;
        fsm_.OnProtocolViolation(
            "protocol violation: plaintext after the STARTTLS 220 before the "
            "TLS handshake completed (CVE-2021-38371)",
            &actions);
        Run(actions);
        return;
      }
    }
    tls_->FeedCiphertext(data);
    if (!tls_->handshake_done()) {
      TlsEngine::Progress p = tls_->Handshake();
      FlushTls();
      if (p == TlsEngine::Progress::kFailed) {
        TlsFailed(tls_->error());
        return;
      }
      if (p == TlsEngine::Progress::kWantMore || closed_) return;
      tls_info_ = tls_->info();
      FsmActions actions;
      fsm_.OnTlsEstablished(&actions);
      Run(actions);
      if (closed_) return;
    }
    plain_.clear();
    bool peer_closed = false;
    absl::Status st = tls_->ReadPlaintext(&plain_, &peer_closed);
    if (auto session = tls_->TakeNewSession()) {
      tls_context_->sessions().Put(cache_key_, std::move(session));
    }
    FlushTls();
    if (!plain_.empty() && !closed_) {
      FsmActions actions;
      fsm_.OnData(plain_, &actions);
      Run(actions);
    }
    if (closed_) return;
    if (!st.ok()) {
      OnConnectionClosed(st.message());
    } else if (peer_closed) {
      OnConnectionClosed("TLS close_notify");
    }
  }

  void Write(FsmAction& a) {
    if (socket_ == nullptr) return;
    if (tls_ != nullptr && tls_->handshake_done()) {
      WriteTls(a);
      return;
    }
    WriteReq* w = NewReq();
    w->bytes.swap(a.bytes);  // the request keeps the buffer's capacity
    w->body = std::move(a.body);
    uv_buf_t bufs[3];
    unsigned n = 0;
    if (!w->bytes.empty()) bufs[n++] = uv_buf_init(w->bytes.data(), w->bytes.size());
    if (!w->body.empty()) bufs[n++] = uv_buf_init(w->body.data(), w->body.size());
    if (!a.tail.empty()) {
      bufs[n++] = uv_buf_init(const_cast<char*>(a.tail.data()), a.tail.size());
    }
    if (n == 0) {
      Release(w);
      return;
    }
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&socket_->tcp),
                      bufs, n, &SessionImpl::OnWrite);
    if (rc != 0) {
      Release(w);
      OnConnectionClosed(uv_strerror(rc));
    }
  }

  void Release(WriteReq* w) {
    w->bytes.clear();
    w->body = std::string();  // bodies are big: give the memory back
    if (free_reqs_.size() < 4) {
      free_reqs_.push_back(w);
    } else {
      delete w;
    }
  }

  static void OnWrite(uv_write_t* req, int status) {
    auto* w = static_cast<WriteReq*>(req->data);
    SessionImpl* owner = w->socket->owner;
    if (owner == nullptr) {
      delete w;
      return;
    }
    owner->Release(w);
    if (status < 0 && status != UV_ECANCELED) {
      owner->OnConnectionClosed(uv_strerror(status));
    }
  }

  static void OnConnect(uv_connect_t* req, int status) {
    auto* s = static_cast<Socket*>(req->data);
    SessionImpl* owner = s->owner;
    if (owner == nullptr) return;
    if (status < 0) {
      owner->OnConnectionClosed(uv_strerror(status));
      return;
    }
    uv_read_start(reinterpret_cast<uv_stream_t*>(&s->tcp), &SessionImpl::OnAlloc,
                  &SessionImpl::OnRead);
    FsmActions actions;
    owner->fsm_.OnConnected(&actions);
    owner->Run(actions);
  }

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    SessionImpl* owner = static_cast<Socket*>(h->data)->owner;
    if (owner == nullptr) {
      *buf = uv_buf_init(nullptr, 0);
      return;
    }
    *buf = uv_buf_init(owner->read_buf_, sizeof(owner->read_buf_));
  }

  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    SessionImpl* owner = static_cast<Socket*>(stream->data)->owner;
    if (owner == nullptr) return;
    if (nread > 0 && owner->tls_ != nullptr) {
      owner->OnTlsBytes(absl::string_view(buf->base, nread));
    } else if (nread > 0) {
      FsmActions actions;
      owner->fsm_.OnData(absl::string_view(buf->base, nread), &actions);
      owner->Run(actions);
    } else if (nread < 0) {
      owner->OnConnectionClosed(nread == UV_EOF ? "eof" : uv_strerror(nread));
    }
  }

  void OnConnectionClosed(absl::string_view why) {
    FsmActions actions;
    fsm_.OnConnectionClosed(why, &actions);
    Run(actions);
  }

  void OnTimer() {
    FsmActions actions;
    fsm_.OnTimeout(&actions);
    Run(actions);
  }

  void CloseSocket() {
    if (socket_ == nullptr) return;
    SendCloseNotify();
    Socket* s = socket_;
    socket_ = nullptr;
    s->owner = nullptr;
    auto* h = reinterpret_cast<uv_handle_t*>(&s->tcp);
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&s->tcp));
    uv_close(h, [](uv_handle_t* handle) {
      delete static_cast<Socket*>(handle->data);
    });
  }

  // Best effort, before the socket closes: a TLS close_notify, so that the
  // server sees an orderly end of the TLS session rather than a truncation
  // (RFC 8446 6.1). One small record written now with uv_try_write (a
  // uv_write would be cancelled by the uv_close that follows); when the
  // socket buffer is full it is skipped -- the connection is ending anyway.
  void SendCloseNotify() {
    if (tls_ == nullptr || !tls_->handshake_done() || !tls_->Shutdown()) {
      return;
    }
    std::string alert;
    if (!tls_->TakeCiphertext(&alert)) return;
    uv_buf_t buf = uv_buf_init(alert.data(), alert.size());
    uv_try_write(reinterpret_cast<uv_stream_t*>(&socket_->tcp), &buf, 1);
  }

  core::Loop& loop_;
  const SessionOptions options_;
  ClientFsm fsm_;
  Endpoint peer_;
  Callbacks callbacks_;
  core::Timer timer_;
  Socket* socket_ = nullptr;
  bool closed_ = false;  // on_closed delivered
  std::function<void(TransactionResult)> done_;
  std::vector<WriteReq*> free_reqs_;
  char read_buf_[64 * 1024];
  // TLS after STARTTLS.
  std::unique_ptr<TlsEngine> tls_;
  TlsClientContext* tls_context_ = nullptr;
  std::string cache_key_;
  bool tls_bytes_seen_ = false;
  TlsInfo tls_info_;
  std::string plain_;  // decrypted bytes, reused
};

}  // namespace

std::string TlsCacheKey(const Endpoint& peer, TlsPolicy policy) {
  return absl::StrCat(peer.ToString(),
                      policy == TlsPolicy::kRequiredVerify ? "|verify" : "");
}

std::unique_ptr<Session> Session::Create(core::Loop& loop,
                                         const SessionOptions& options,
                                         const Endpoint& peer,
                                         Callbacks callbacks) {
  return std::make_unique<SessionImpl>(loop, options, peer,
                                       std::move(callbacks));
}

}  // namespace salvo::smtp
