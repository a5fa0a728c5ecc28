// Per-endpoint SMTP connection pool (see connection_pool.h).
#include "engine/pool/connection_pool.h"

#include <utility>
#include <vector>

namespace salvo::pool {
namespace {

// Frees a closed Session on the next loop iteration, outside its callbacks.
struct DeadSession : core::DeferredDeletable {
  explicit DeadSession(std::unique_ptr<smtp::Session> s) : session(std::move(s)) {}
  std::unique_ptr<smtp::Session> session;
};

}  // namespace

ConnectionPool::ConnectionPool(core::Loop& loop, const Options& options,
                               const smtp::Endpoint& endpoint,
                               PoolDelegate* delegate, const core::Clock& clock)
    : loop_(loop),
      options_(options),
      endpoint_(endpoint),
      key_(endpoint.ToString()),
      delegate_(delegate),
      clock_(clock),
      sweep_timer_(loop) {}

ConnectionPool::~ConnectionPool() {
  AbortAll();
}

int ConnectionPool::open() const {
  return static_cast<int>(connecting_.size() + idle_.size() + busy_.size() +
                          draining_.size() + standby_.size());
}

void ConnectionPool::Pump(int waiting) {
  if (draining_all_) return;
  // Priority work first, on a reserved session.
  if (options_.reserved_connections > 0) {
    while (!standby_.empty() && Dispatch(standby_.front().get())) {
    }
    if (standby_.empty() && !down() &&
        reserved_open_ < options_.reserved_connections &&
        delegate_->PriorityWaiting(*this) > 0) {
      bool connecting = false;
      for (auto& s : connecting_) connecting |= where_[s.get()].reserved;
      if (!connecting) OpenSession(/*reserved=*/true);
    }
  }
  // Idle sessions first.
  while (waiting > 0 && !idle_.empty()) {
    smtp::Session* s = idle_.front().get();
    if (!Dispatch(s)) return;  // nothing left to send
    --waiting;
  }
  if (down()) return;
  // Sessions being set up will pick up work when ready.
  int want = waiting - static_cast<int>(connecting_.size());
  while (want > 0 && open() - reserved_open_ < options_.max_connections) {
    OpenSession();
    --want;
  }
}

void ConnectionPool::OpenSession(bool reserved) {
  smtp::Session::Callbacks cb;
  cb.on_ready = [this](smtp::Session* s) { OnReady(s); };
  cb.on_closed = [this](smtp::Session* s, const smtp::Reply& why) {
    OnClosed(s, why);
  };
  smtp::SessionOptions so = options_.session;
  if (so.tls.policy == smtp::TlsPolicy::kOpportunistic &&
      options_.tls_fallback != nullptr &&
      options_.tls_fallback->ShouldSkipTls(key_)) {
    so.tls.policy = smtp::TlsPolicy::kDisabled;
  }
  auto session = smtp::Session::Create(loop_, so, endpoint_, std::move(cb));
  smtp::Session* raw = session.get();
  connecting_.push_back(std::move(session));
  where_[raw] = Where{&connecting_, std::prev(connecting_.end()),
                      absl::InfinitePast(), false, reserved};
  if (reserved) ++reserved_open_;
  if (on_open_change) on_open_change(+1);
  raw->Connect();
}

void ConnectionPool::MoveTo(smtp::Session* s, List* to) {
  Where& w = where_[s];
  if (w.list == to) return;
  to->splice(to->end(), *w.list, w.it);
  w.list = to;
  w.it = std::prev(to->end());
}

bool ConnectionPool::Dispatch(smtp::Session* s) {
  if (s->transactions() >= options_.max_messages_per_connection) {
    MoveTo(s, &draining_);
    s->Quit();
    return true;  // the caller may go on with other sessions
  }
  PoolWork work;
  const bool reserved = where_[s].reserved;
  if (reserved ? !delegate_->TakePriorityWork(*this, &work)
               : !delegate_->TakeWork(*this, &work)) {
    return false;
  }
  MoveTo(s, &busy_);
  s->Send(std::move(work.txn),
          [s, done = std::move(work.done)](smtp::TransactionResult result) {
            result.tls = s->tls();
            done(result);
          });
  return true;
}

void ConnectionPool::OnReady(smtp::Session* s) {
  auto it = where_.find(s);
  if (it == where_.end()) return;
  if (!it->second.ever_ready && on_session_ready) on_session_ready(s->tls());
  it->second.ever_ready = true;
  if (it->second.list == &draining_) return;
  MoveTo(s, it->second.reserved ? &standby_ : &idle_);
  it->second.idle_since = clock_.Now();
  if (draining_all_) {
    MoveTo(s, &draining_);
    s->Quit();
    return;
  }
  if (!Dispatch(s)) {
    // Stays idle; a sweep closes it after idle_timeout.
    if (!sweep_timer_.armed()) {
      uint64_t ms = std::max<int64_t>(
          50, absl::ToInt64Milliseconds(options_.idle_timeout) / 2);
      sweep_timer_.Start(ms, [this] { SweepIdle(); }, ms);
    }
  }
}

void ConnectionPool::SweepIdle() {
  absl::Time cutoff = clock_.Now() - options_.idle_timeout;
  std::vector<smtp::Session*> expired;
  for (List* l : {&idle_, &standby_}) {
    for (auto& s : *l) {
      if (where_[s.get()].idle_since <= cutoff) expired.push_back(s.get());
    }
  }
  for (smtp::Session* s : expired) {
    MoveTo(s, &draining_);
    s->Quit();
  }
  if (idle_.empty() && standby_.empty()) sweep_timer_.Stop();
}

void ConnectionPool::OnClosed(smtp::Session* s, const smtp::Reply& why) {
  auto it = where_.find(s);
  if (it == where_.end()) return;
  Where w = it->second;
  where_.erase(it);
  if (w.reserved) --reserved_open_;
  std::unique_ptr<smtp::Session> owned = std::move(*w.it);
  w.list->erase(w.it);
  loop_.DeferDelete(std::make_unique<DeadSession>(std::move(owned)));
  if (on_open_change) on_open_change(-1);
  // The TLS set-up failed: the handshake, or plaintext where the handshake
  // should be (CVE-2021-38371 guard). Opportunistic TLS then falls back.
  bool tls_failed =
      !w.ever_ready &&
      (why.stage == smtp::Stage::kTlsHandshake ||
       (why.stage == smtp::Stage::kStartTls && why.synthetic)) &&
      options_.session.tls.policy == smtp::TlsPolicy::kOpportunistic &&
      options_.tls_fallback != nullptr;
  if (tls_failed) {
    // Opportunistic TLS failed: the next connections go in plaintext.
    options_.tls_fallback->Remember(key_);
  } else if (!w.ever_ready && !draining_all_) {
    down_until_ = clock_.Now() + options_.down_time;
    delegate_->OnEndpointDown(*this, why);
  }
  if (!draining_all_ && !down()) {
    // A recycled or failed session: replace it while work is waiting.
    Pump(delegate_->Waiting(*this));
  }
  MaybeFinishDrain();
}

void ConnectionPool::Drain(std::function<void()> done) {
  draining_all_ = true;
  drain_done_ = std::move(done);
  sweep_timer_.Stop();
  std::vector<smtp::Session*> to_quit;
  for (auto& s : idle_) to_quit.push_back(s.get());
  for (auto& s : standby_) to_quit.push_back(s.get());
  for (smtp::Session* s : to_quit) {
    MoveTo(s, &draining_);
    s->Quit();
  }
  std::vector<smtp::Session*> to_abort;
  for (auto& s : connecting_) to_abort.push_back(s.get());
  for (smtp::Session* s : to_abort) s->Abort();
  MaybeFinishDrain();
}

void ConnectionPool::AbortAll() {
  draining_all_ = true;
  sweep_timer_.Stop();
  std::vector<smtp::Session*> all;
  for (List* l : {&connecting_, &idle_, &busy_, &draining_, &standby_}) {
    for (auto& s : *l) all.push_back(s.get());
  }
  for (smtp::Session* s : all) {
    if (where_.contains(s)) s->Abort();
  }
}

void ConnectionPool::MaybeFinishDrain() {
  if (!drain_done_ || open() > 0) return;
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

}  // namespace salvo::pool
