// Implementation of Loop, LoopGroup and Timer (see loop.h).
#include "engine/core/loop.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace salvo::core {

Loop::Loop(int index) : index_(index) {
  if (uv_loop_init(&loop_) != 0) std::abort();
  uv_async_init(&loop_, &async_, &Loop::OnAsync);
  async_.data = this;
}

Loop::~Loop() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    posted_.clear();
  }
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&async_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  }
  uv_run(&loop_, UV_RUN_NOWAIT);
  deferred_.clear();
  if (uv_loop_close(&loop_) != 0) {
    // Handles still open: a leak in some owner. Walk them so the message
    // names the culprits, then leave the loop memory alone.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          std::fprintf(stderr, "salvo: loop closed with open handle %s\n",
                       uv_handle_type_name(h->type));
        },
        nullptr);
  }
}

void Loop::Post(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    posted_.push_back(std::move(fn));
  }
  uv_async_send(&async_);
}

void Loop::DeferDelete(std::unique_ptr<DeferredDeletable> obj) {
  deferred_.push_back(std::move(obj));
  uv_async_send(&async_);
}

void Loop::OnAsync(uv_async_t* handle) {
  static_cast<Loop*>(handle->data)->Drain();
}

void Loop::Drain() {
  std::vector<std::function<void()>> work;
  {
    absl::MutexLock lock(&mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) fn();
  // Deferred deletes run after the callbacks that scheduled them returned.
  while (!deferred_.empty()) {
    std::vector<std::unique_ptr<DeferredDeletable>> dead;
    dead.swap(deferred_);
    dead.clear();
  }
  if (stop_requested_.load()) uv_stop(&loop_);
}

int Loop::Run() {
  thread_id_.store(std::this_thread::get_id());
  // "salvo-loop3" in top -H, perf and gdb.
  const std::string name = "salvo-loop" + std::to_string(index_);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  while (!stop_requested_.load()) {
    uv_run(&loop_, UV_RUN_DEFAULT);
    if (!stop_requested_.load()) continue;
  }
  // Run what was posted before the stop, then refuse new work.
  Drain();
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    posted_.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_run(&loop_, UV_RUN_NOWAIT);
  deferred_.clear();
  int open = 0;
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void* arg) {
        if (!uv_is_closing(h)) ++*static_cast<int*>(arg);
      },
      &open);
  return open;
}

void Loop::Stop() {
  stop_requested_.store(true);
  uv_async_send(&async_);
}

LoopGroup::LoopGroup(int count) {
  for (int i = 0; i < count; ++i) loops_.push_back(std::make_unique<Loop>(i));
}

LoopGroup::~LoopGroup() { StopAndJoin(); }

void LoopGroup::Start(std::function<void(Loop&)> on_start) {
  for (auto& loop : loops_) {
    Loop* l = loop.get();
    threads_.emplace_back([l, on_start] {
      if (on_start) on_start(*l);
      l->Run();
    });
  }
}

void LoopGroup::StopAndJoin() {
  for (auto& loop : loops_) loop->Stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

struct Timer::Handle {
  uv_timer_t timer;
  std::function<void()> fn;
};

Timer::Timer(Loop& loop) : handle_(new Handle) {
  uv_timer_init(loop.uv(), &handle_->timer);
  handle_->timer.data = handle_;
}

Timer::~Timer() {
  uv_timer_stop(&handle_->timer);
  handle_->fn = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->timer), [](uv_handle_t* h) {
    delete static_cast<Handle*>(h->data);
  });
}

void Timer::Start(uint64_t ms, std::function<void()> fn, uint64_t repeat_ms) {
  handle_->fn = std::move(fn);
  uv_timer_start(
      &handle_->timer,
      [](uv_timer_t* t) {
        auto* h = static_cast<Handle*>(t->data);
        if (!h->fn) return;
        if (uv_timer_get_repeat(t) == 0) {
          // One-shot: move the callback out so it may re-arm the timer.
          auto fn = std::move(h->fn);
          h->fn = nullptr;
          fn();
        } else {
          h->fn();
        }
      },
      ms, repeat_ms);
}

void Timer::Stop() {
  uv_timer_stop(&handle_->timer);
  handle_->fn = nullptr;
}

bool Timer::armed() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(&handle_->timer));
}

}  // namespace salvo::core
