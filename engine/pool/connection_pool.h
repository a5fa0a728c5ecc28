// Outbound SMTP connections to one MX endpoint (address:port), owned by one
// loop. A session's state decides which list owns it: connecting_, idle_,
// busy_ or draining_; a state change is a move between lists. The pool pulls
// work from its Delegate when a session is free, so a message is rendered
// only when a connection is ready to send it. Loop thread only.
#ifndef SALVO_ENGINE_POOL_CONNECTION_POOL_H_
#define SALVO_ENGINE_POOL_CONNECTION_POOL_H_

#include <algorithm>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/smtp/session.h"
#include "engine/smtp/tls_engine.h"

namespace salvo::pool {

class ConnectionPool;

// One transaction to run, and what to do with its result.
struct PoolWork {
  smtp::Transaction txn;
  std::function<void(const smtp::TransactionResult&)> done;
};

class PoolDelegate {
 public:
  virtual ~PoolDelegate() = default;
  // Fills `work` with the next transaction for `pool`; false if none waits.
  virtual bool TakeWork(ConnectionPool& pool, PoolWork* work) = 0;
  // How many jobs wait for `pool` (to replace sessions that closed).
  virtual int Waiting(const ConnectionPool& pool) = 0;
  // Priority (transactional) work only, for a reserved session; by default
  // there is none.
  virtual bool TakePriorityWork(ConnectionPool& pool, PoolWork* work) {
    (void)pool;
    (void)work;
    return false;
  }
  virtual int PriorityWaiting(const ConnectionPool& pool) {
    (void)pool;
    return 0;
  }
  // A connection could not be set up (connect, greeting or EHLO failed) and
  // the endpoint is now marked down until pool.down_until().
  virtual void OnEndpointDown(ConnectionPool& pool, const smtp::Reply& why) = 0;
};

class ConnectionPool {
 public:
  struct Options {
    int max_connections = 16;
    // Sessions beyond max_connections that carry priority work only
    // (TakePriorityWork), so transactional mail does not wait for a bulk
    // transaction to finish. Idle ones wait in standby_.
    int reserved_connections = 0;
    int max_messages_per_connection = 1000;
    absl::Duration idle_timeout = absl::Seconds(5);
    absl::Duration down_time = absl::Seconds(60);  // after a failed connect
    smtp::SessionOptions session;
    // MX endpoints whose opportunistic STARTTLS failed get plaintext for a
    // while (not owned; may be null).
    smtp::TlsFallbackMemory* tls_fallback = nullptr;
  };

  ConnectionPool(core::Loop& loop, const Options& options,
                 const smtp::Endpoint& endpoint, PoolDelegate* delegate,
                 const core::Clock& clock);
  ~ConnectionPool();  // Aborts whatever is still open.

  // There are `waiting` jobs for this endpoint: hand them to idle sessions
  // and open new sessions, up to the limit.
  void Pump(int waiting);
  // Quits idle sessions, lets busy ones finish their transaction, then
  // calls `done` once every session has closed.
  void Drain(std::function<void()> done);
  // Aborts every session (transactions in flight complete as transient).
  void AbortAll();

  bool down() const { return clock_.Now() < down_until_; }
  // Takes the endpoint out of use for `d` (e.g. after a 421).
  void MarkDown(absl::Duration d) {
    down_until_ = std::max(down_until_, clock_.Now() + d);
  }
  absl::Time down_until() const { return down_until_; }
  const smtp::Endpoint& endpoint() const { return endpoint_; }
  const std::string& key() const { return key_; }
  int open() const;
  int busy() const { return static_cast<int>(busy_.size()); }
  int connecting() const { return static_cast<int>(connecting_.size()); }

  // Bumped on every open/close; the engine exports it as a gauge.
  std::function<void(int delta)> on_open_change;
  // Once per session, when it first becomes ready for mail (after EHLO, and
  // after STARTTLS when used): its TLS state.
  std::function<void(const smtp::TlsInfo&)> on_session_ready;

 private:
  using List = std::list<std::unique_ptr<smtp::Session>>;
  struct Where {
    List* list;
    List::iterator it;
    absl::Time idle_since;
    bool ever_ready = false;
    bool reserved = false;
  };

  void OpenSession(bool reserved = false);
  void OnReady(smtp::Session* s);
  void OnClosed(smtp::Session* s, const smtp::Reply& why);
  void MoveTo(smtp::Session* s, List* to);
  bool Dispatch(smtp::Session* s);
  void SweepIdle();
  void MaybeFinishDrain();

  core::Loop& loop_;
  const Options options_;
  const smtp::Endpoint endpoint_;
  const std::string key_;
  PoolDelegate* const delegate_;
  const core::Clock& clock_;
  List connecting_, idle_, busy_, draining_;
  List standby_;  // idle reserved sessions
  int reserved_open_ = 0;
  absl::flat_hash_map<smtp::Session*, Where> where_;
  absl::Time down_until_ = absl::InfinitePast();
  core::Timer sweep_timer_;
  std::function<void()> drain_done_;
  bool draining_all_ = false;
};

}  // namespace salvo::pool

#endif  // SALVO_ENGINE_POOL_CONNECTION_POOL_H_
