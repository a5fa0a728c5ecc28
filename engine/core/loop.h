// One libuv event loop on one thread. Work crosses loops only through Post(),
// which carries ownership of whatever the closure captures. Objects that must
// die from inside their own callbacks go through DeferDelete(), which frees
// them on the next loop iteration.
//
// Thread-safety: Post() and Stop() may be called from any thread; everything
// else only from the loop's own thread.
#ifndef SALVO_ENGINE_CORE_LOOP_H_
#define SALVO_ENGINE_CORE_LOOP_H_

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace salvo::core {

// Base for objects freed through Loop::DeferDelete().
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
};

class Loop {
 public:
  explicit Loop(int index = 0);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* uv() { return &loop_; }
  int index() const { return index_; }

  // Any thread. Runs `fn` on the loop thread, in posting order. Closures
  // posted after Stop() has completed are destroyed without running.
  void Post(std::function<void()> fn);

  // Loop thread. Frees `obj` on the next iteration.
  void DeferDelete(std::unique_ptr<DeferredDeletable> obj);

  // Runs the loop on the calling thread until Stop(). Then closes the loop's
  // own handles and runs until every handle is closed; returns the number of
  // handles other owners had left open (0 on a clean shutdown).
  int Run();

  // Any thread: asks Run() to return after the current iteration.
  void Stop();

  bool InLoopThread() const {
    return thread_id_.load() == std::this_thread::get_id();
  }

 private:
  static void OnAsync(uv_async_t* handle);
  void Drain();

  const int index_;
  uv_loop_t loop_;
  uv_async_t async_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> stop_requested_{false};
  absl::Mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<DeferredDeletable>> deferred_;
};

// N loops on N threads (the engine's per-core runtime).
class LoopGroup {
 public:
  explicit LoopGroup(int count);
  ~LoopGroup();  // Stops and joins.

  int size() const { return static_cast<int>(loops_.size()); }
  Loop& at(int i) { return *loops_[i]; }

  // Starts one thread per loop. `on_start(loop)` runs on each loop thread
  // before it enters uv_run (set up per-loop state there).
  void Start(std::function<void(Loop&)> on_start);
  // Stops every loop and joins its thread.
  void StopAndJoin();

 private:
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
};

// A uv_timer_t with one owner. Destroying the Timer stops it; the handle's
// memory is released in its close callback.
class Timer {
 public:
  explicit Timer(Loop& loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fires `fn` once after `ms` milliseconds (repeat_ms > 0: then every
  // repeat_ms). Re-arming replaces the previous callback.
  void Start(uint64_t ms, std::function<void()> fn, uint64_t repeat_ms = 0);
  void Stop();
  bool armed() const;

 private:
  struct Handle;
  Handle* handle_;
};

}  // namespace salvo::core

#endif  // SALVO_ENGINE_CORE_LOOP_H_
