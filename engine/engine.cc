// Engine wiring (see engine.h).
#include "engine/engine.h"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/core/clock.h"
#include "engine/core/malloc_stats.h"
#include "engine/dkim/dkim_signer.h"
#include "engine/metrics/metric_names.h"
#include "engine/metrics/registry.h"

namespace salvo {
namespace {

absl::Status SplitHostPort(const std::string& s, std::string* host,
                           uint16_t* port) {
  size_t colon = s.rfind(':');
  uint32_t p = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(s).substr(colon + 1), &p) ||
      p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("server.http_listen: expected host:port, got \"", s, "\""));
  }
  *host = s.substr(0, colon);
  if (host->size() > 2 && host->front() == '[') {
    *host = host->substr(1, host->size() - 2);
  }
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

// Runs `fn` on `loop` and waits for it.
template <typename T>
T RunOn(core::Loop& loop, std::function<T()> fn) {
  std::promise<T> p;
  auto f = p.get_future();
  loop.Post([&] { p.set_value(fn()); });
  return f.get();
}

// Resident set size of this process in bytes (/proc/self/statm), or -1.
int64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long pages_total = 0, pages_resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &pages_total, &pages_resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(pages_resident) * sysconf(_SC_PAGESIZE);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Start(
    const config::Config& config) {
  std::unique_ptr<Engine> e(new Engine(config));
  storage::QueueStore::Options so;
  so.path = config.spool_path;
  so.num_shards = config.shards;
  so.sync = config.spool_sync;
  so.min_free_bytes = config.spool_min_free_bytes;
  so.unsynced_sync_ms = static_cast<int>(
      absl::ToInt64Milliseconds(config.outcome_sync_interval));
  so.event_retention_ms = int64_t{config.events_retention_hours} * 3600 * 1000;
  auto store = storage::QueueStore::Open(so);
  if (!store.ok()) return store.status();
  e->store_ = *std::move(store);
  e->contents_ = std::make_unique<delivery::ContentCache>(
      e->store_.get(), static_cast<size_t>(config.content_cache_entries));
  e->suppressions_ =
      std::make_unique<storage::SuppressionStore>(e->store_.get());
  e->api_ = std::make_unique<api::Api>(e->config_, e->store_.get(), e.get(),
                                       &metrics::Registry::Default(),
                                       core::RealClock::Get());
  e->api_->SetUnsubscribeSecret(config.unsubscribe_secret);
  e->api_->SetUploadChunkRecipients(config.upload_chunk_recipients);
  e->api_->SetUploadWindow(config.upload_window);
  if (!config.events_log_path.empty()) {
    events::EventLog::Options lo;
    lo.path = config.events_log_path[0] == '/'
                  ? config.events_log_path
                  : absl::StrCat(config.spool_path, "/", config.events_log_path);
    lo.max_bytes = static_cast<uint64_t>(config.events_log_max_bytes);
    auto log = events::EventLog::Open(lo, &metrics::Registry::Default());
    if (!log.ok()) return log.status();
    e->event_log_ = *std::move(log);
    e->api_->SetEventLog(e->event_log_.get());
  }
  if (config.expand_window > 0) {
    storage::BlockExpander::Options xo;
    xo.window = config.expand_window;
    Engine* raw = e.get();
    e->expander_ = std::make_unique<storage::BlockExpander>(
        e->store_.get(), xo,
        [raw](uint16_t shard, storage::Lane lane, int64_t due_ms,
              uint64_t after_id) {
          raw->OnEnqueued(shard, lane, due_ms, after_id);
        });
    e->api_->SetRecipientBlocks(true);
  }
  absl::Status s = e->StartLoops();
  if (!s.ok()) {
    e->Stop();
    return s;
  }
  if (e->expander_ != nullptr) {
    e->expander_thread_ = std::thread([raw = e.get()] { raw->ExpanderLoop(); });
  }
  e->stats_thread_ = std::thread([raw = e.get()] { raw->StatsLoop(); });
  return e;
}

absl::Status Engine::StartLoops() {
  int n = config_.loops > 0
              ? config_.loops
              : std::max(1u, std::thread::hardware_concurrency());
  loops_ = std::make_unique<core::LoopGroup>(n);
  cores_.resize(n);
  servers_.resize(n);
  open_handles_.assign(n, 0);
  for (int i = 0; i < n; ++i) {
    core::Loop* loop = &loops_->at(i);
    threads_.emplace_back([this, loop, i] { open_handles_[i] = loop->Run(); });
  }

  std::string host;
  uint16_t port = 0;
  absl::Status s = SplitHostPort(config_.http_listen, &host, &port);
  if (!s.ok()) return s;

  delivery::DeliveryCore::Options o;
  o.max_in_flight = config_.max_in_flight_per_loop;
  o.resume_fraction = config_.in_flight_resume_fraction;
  o.transactional_reserve = config_.transactional_in_flight_reserve;
  o.max_ready_per_domain = config_.max_ready_per_domain;
  o.bulk_quantum = config_.bulk_quantum;
  o.full_destination_requeue_after = config_.full_destination_requeue_after;
  o.max_recipients_per_transaction = config_.max_recipients_per_transaction;
  o.hostname = config_.hostname;
  o.pool.max_connections = config_.max_connections_per_host;
  o.pool.reserved_connections = config_.reserved_connections;
  o.pool.max_messages_per_connection = config_.max_messages_per_connection;
  o.pool.idle_timeout = config_.idle_timeout;
  o.pool.session.helo_name = config_.hostname;
  smtp::Timeouts& t = o.pool.session.timeouts;
  t.connect = config_.connect_timeout;
  t.greeting = config_.greeting_timeout;
  t.ehlo = config_.ehlo_timeout;
  t.mail = config_.mail_timeout;
  t.rcpt = config_.rcpt_timeout;
  t.data_init = config_.data_init_timeout;
  t.data_block = config_.data_block_timeout;
  t.data_end = config_.data_end_timeout;
  o.retry.initial = config_.retry_initial;
  o.retry.max = config_.retry_max;
  o.retry.multiplier = config_.retry_multiplier;
  o.retry.jitter = config_.retry_jitter;
  o.dns.servers = config_.dns_servers;
  o.dns.smtp_port = config_.smtp_port;
  o.dns.min_ttl = config_.dns_min_ttl;
  o.dns.max_ttl = config_.dns_max_ttl;
  o.dns.negative_ttl = config_.dns_negative_ttl;
  for (const config::Route& r : config_.routes) {
    o.dns.routes.push_back(dns::StaticRoute{r.domain, r.host, r.port});
  }

  if (!config_.dkim.empty()) {
    std::vector<dkim::SignerOptions> signers;
    for (const config::DkimKey& k : config_.dkim) {
      dkim::SignerOptions so;
      so.domain = k.domain;
      so.selector = k.selector;
      auto alg = dkim::ParseAlgorithm(k.algorithm);
      if (!alg.ok()) return alg.status();
      so.algorithm = *alg;
      so.private_key_file = k.key_file;
      if (!k.headers.empty()) so.headers = k.headers;
      signers.push_back(std::move(so));
    }
    auto built = dkim::DkimSigners::Create(signers, core::RealClock::Get());
    if (!built.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dkim: ", built.status().message()));
    }
    o.dkim = std::make_shared<const dkim::DkimSigners>(*std::move(built));
  }

  auto policy = [](absl::string_view name) {
    for (smtp::TlsPolicy p :
         {smtp::TlsPolicy::kDisabled, smtp::TlsPolicy::kOpportunistic,
          smtp::TlsPolicy::kRequired, smtp::TlsPolicy::kRequiredVerify}) {
      if (name == smtp::TlsPolicyName(p)) return p;
    }
    return smtp::TlsPolicy::kOpportunistic;  // config validated the name
  };
  o.tls_policy = policy(config_.tls_policy);
  for (const config::TlsDomainPolicy& p : config_.tls_policies) {
    o.tls_domain_policy[absl::AsciiStrToLower(p.domain)] = policy(p.policy);
  }
  o.tls_fallback_ttl = config_.tls_fallback_ttl;
  // One TLS client context per loop (its own session cache), made here so a
  // bad [tls] ca_file stops the start with a clear error.
  std::vector<std::shared_ptr<smtp::TlsClientContext>> tls_contexts(n);
  if (!config_.tls_ca_file.empty()) {
    for (auto& tc : tls_contexts) {
      auto c = smtp::TlsClientContext::Create(config_.tls_ca_file);
      if (!c.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tls.ca_file: ", c.status().message()));
      }
      tc = std::move(*c);
    }
  }
  o.event_log = event_log_.get();
  o.hygiene.unsubscribe_secret = config_.unsubscribe_secret;
  o.hygiene.unsubscribe_base_url = config_.unsubscribe_base_url;
  o.hygiene.unsubscribe_mailto_domain = config_.unsubscribe_mailto_domain;
  o.hygiene.bounce_domain = config_.bounce_domain;
  o.suppressions = suppressions_.get();

  std::random_device rd;
  for (int i = 0; i < n; ++i) {
    core::Loop& loop = loops_->at(i);
    delivery::DeliveryCore::Options oi = o;
    oi.tls_context = tls_contexts[i];
    for (int shard = i; shard < store_->num_shards(); shard += n) {
      oi.shards.push_back(static_cast<uint16_t>(shard));
    }
    uint64_t seed = (static_cast<uint64_t>(rd()) << 32) | rd();
    // Loop 0 binds first (port 0 picks one); the others share that port
    // through SO_REUSEPORT.
    absl::Status bound = RunOn<absl::Status>(loop, [&, i]() -> absl::Status {
      cores_[i] = std::make_unique<delivery::DeliveryCore>(
          loop, oi, store_.get(), contents_.get(), &in_flight_,
          &metrics::Registry::Default(), core::RealClock::Get(), seed);
      cores_[i]->Start();
      api::Api* api = api_.get();
      api::HttpServer::Limits limits;
      limits.max_body_bytes = config_.max_request_bytes;
      auto server = api::HttpServer::Listen(
          loop, host, i == 0 ? port : http_port_,
          [api, &loop](api::HttpRequest&& req, api::Responder respond) {
            api->Handle(loop, std::move(req), std::move(respond));
          },
          limits);
      if (!server.ok()) return server.status();
      (*server)->SetStreamRoute(api->UploadStreamRoute(loop));
      servers_[i] = *std::move(server);
      if (i == 0) http_port_ = servers_[i]->port();
      return absl::OkStatus();
    });
    if (!bound.ok()) return bound;
  }
  return absl::OkStatus();
}

void Engine::OnEnqueued(uint16_t shard, storage::Lane lane, int64_t due_ms,
                        uint64_t after_id) {
  if (!loops_ || loops_->size() == 0) return;
  int i = shard % loops_->size();
  delivery::DeliveryCore* core = cores_[i].get();
  if (core == nullptr) return;
  loops_->at(i).Post([core, shard, lane, due_ms, after_id] {
    core->Wake(shard, lane, due_ms, after_id);
  });
}

void Engine::OnBlocksAdded() {
  if (expander_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(expander_mu_);
    expander_wake_ = true;
  }
  expander_cv_.notify_one();
}

void Engine::CancelBlocks(uint64_t content_id) {
  PostExpanderTask([this, content_id] {
    bool more = false;
    absl::StatusOr<int64_t> n = expander_->CancelContent(
        content_id, core::RealClock::Get().NowMillis(), kCancelBlocksPerTask,
        &more);
    if (!n.ok()) {
      std::fprintf(stderr, "salvo: cancelling blocks of %s: %s\n",
                   storage::IdToHex(content_id).c_str(),
                   n.status().ToString().c_str());
      return;  // later expansion passes cancel what is due
    }
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(expander_mu_);
      stopping = expander_stop_;
    }
    // When stopping, expansion passes after the restart cancel the rest.
    if (more && !stopping) CancelBlocks(content_id);
  });
}

void Engine::PostExpanderTask(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(expander_mu_);
    if (!expander_stop_) {
      expander_tasks_.push_back(std::move(task));
      task = nullptr;
    }
  }
  if (task) {  // stopping: run here (a blocking commit fails cleanly)
    task();
    return;
  }
  expander_cv_.notify_one();
}

void Engine::ExpanderLoop() {
  pthread_setname_np(pthread_self(), "salvo-expander");
  std::unique_lock<std::mutex> lock(expander_mu_);
  int64_t failures = 0;
  for (;;) {
    expander_cv_.wait_for(lock, std::chrono::milliseconds(kExpandPollMs), [this] {
      return expander_stop_ || expander_wake_ || !expander_tasks_.empty();
    });
    std::deque<std::function<void()>> tasks;
    tasks.swap(expander_tasks_);
    const bool stop = expander_stop_;
    expander_wake_ = false;
    lock.unlock();
    for (auto& task : tasks) task();
    if (stop) return;
    absl::StatusOr<int64_t> n =
        expander_->Pass(core::RealClock::Get().NowMillis());
    if (!n.ok() && failures++ % 100 == 0) {  // retried every poll
      std::fprintf(stderr, "salvo: expanding recipient blocks: %s\n",
                   n.status().ToString().c_str());
    }
    lock.lock();
  }
}

void Engine::OnContentState(uint64_t content_id,
                            storage::ContentState state) {
  contents_->SetState(content_id, state);
  if (expander_ != nullptr) {
    if (state == storage::ContentState::kCancelled) {
      // Blocks of any due time end as cancelled recipients, a few blocks per
      // task so that expansion passes run in between.
      CancelBlocks(content_id);
    } else {
      OnBlocksAdded();  // a resumed campaign's blocks may expand
    }
  }
  if (!loops_) return;
  for (int i = 0; i < loops_->size(); ++i) {
    delivery::DeliveryCore* core = cores_[i].get();
    if (core == nullptr) continue;
    loops_->at(i).Post([core, content_id, state] {
      if (state == storage::ContentState::kActive) core->Rewind();
      if (state == storage::ContentState::kCancelled) {
        core->SweepCancelled(content_id);
      }
    });
  }
}

void Engine::Reschedule(uint64_t content_id, const storage::Reschedule& r,
                        std::function<void(absl::StatusOr<int64_t>)> done) {
  if (expander_ == nullptr) {
    RescheduleQueued(content_id, r, std::move(done));
    return;
  }
  // Blocks first (serialized with expansion), then the loops move the
  // entries already expanded.
  PostExpanderTask([this, content_id, r, done = std::move(done)] {
    absl::StatusOr<int64_t> blocks = expander_->RescheduleContent(content_id, r);
    if (!blocks.ok()) {
      done(blocks.status());
      return;
    }
    const int64_t b = *blocks;
    RescheduleQueued(content_id, r, [b, done](absl::StatusOr<int64_t> n) {
      if (n.ok()) {
        done(*n + b);
      } else {
        done(n);
      }
    });
  });
}

void Engine::RescheduleQueued(
    uint64_t content_id, const storage::Reschedule& r,
    std::function<void(absl::StatusOr<int64_t>)> done) {
  if (!loops_ || loops_->size() == 0) {
    done(int64_t{0});
    return;
  }
  struct Gather {
    std::mutex mu;
    int remaining;
    int64_t moved = 0;
    absl::Status status;
    std::function<void(absl::StatusOr<int64_t>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->remaining = loops_->size();
  g->done = std::move(done);
  auto add = [g](absl::StatusOr<int64_t> n) {
    std::unique_lock<std::mutex> lock(g->mu);
    if (n.ok()) {
      g->moved += *n;
    } else if (g->status.ok()) {
      g->status = n.status();
    }
    if (--g->remaining > 0) return;
    lock.unlock();
    if (g->status.ok()) {
      g->done(g->moved);
    } else {
      g->done(g->status);
    }
  };
  for (int i = 0; i < loops_->size(); ++i) {
    delivery::DeliveryCore* core = cores_[i].get();
    if (core == nullptr) {
      add(int64_t{0});
      continue;
    }
    loops_->at(i).Post([core, content_id, r, add] {
      core->Reschedule(content_id, r, add);
    });
  }
}

int64_t Engine::InFlight(uint64_t content_id) {
  return in_flight_.Get(content_id);
}

void Engine::StatsLoop() {
  pthread_setname_np(pthread_self(), "salvo-stats");
  // Queue depth per loop from the exact per-lane counters (two point reads
  // per shard), read off the loops so it never stalls delivery.
  std::vector<metrics::Gauge*> gauges;
  for (int i = 0; i < loops_->size(); ++i) {
    gauges.push_back(metrics::Registry::Default().GetGauge(
        metrics::kQueueDepth, metrics::HelpOf(metrics::kQueueDepth),
        {{"loop", absl::StrCat(i)}}));
  }
  metrics::Counter* batches = metrics::Registry::Default().GetCounter(
      metrics::kCommitBatchesTotal,
      metrics::HelpOf(metrics::kCommitBatchesTotal));
  metrics::Counter* syncs = metrics::Registry::Default().GetCounter(
      metrics::kCommitSyncsTotal, metrics::HelpOf(metrics::kCommitSyncsTotal));
  metrics::Counter* refused = metrics::Registry::Default().GetCounter(
      metrics::kStoreUnsyncedRefusedTotal,
      metrics::HelpOf(metrics::kStoreUnsyncedRefusedTotal));
  int64_t seen_batches = 0, seen_syncs = 0, seen_refused = 0;
  auto memory = [](absl::string_view name, absl::string_view kind) {
    return metrics::Registry::Default().GetGauge(
        name, metrics::HelpOf(name), {{"kind", std::string(kind)}});
  };
  metrics::Gauge* cache_bytes =
      memory(metrics::kStorageMemoryBytes, "block_cache");
  metrics::Gauge* memtable_bytes =
      memory(metrics::kStorageMemoryBytes, "memtables");
  metrics::Gauge* reader_bytes =
      memory(metrics::kStorageMemoryBytes, "table_readers");
  // Only when the process runs on jemalloc (the salvo binary does).
  const bool on_jemalloc = core::ReadMallocStats().has_value();
  metrics::Gauge* malloc_allocated =
      on_jemalloc ? memory(metrics::kMallocBytes, "allocated") : nullptr;
  metrics::Gauge* malloc_active =
      on_jemalloc ? memory(metrics::kMallocBytes, "active") : nullptr;
  metrics::Gauge* malloc_resident =
      on_jemalloc ? memory(metrics::kMallocBytes, "resident") : nullptr;
  metrics::Gauge* malloc_retained =
      on_jemalloc ? memory(metrics::kMallocBytes, "retained") : nullptr;
  metrics::Gauge* rss_bytes = metrics::Registry::Default().GetGauge(
      metrics::kProcessResidentMemoryBytes,
      metrics::HelpOf(metrics::kProcessResidentMemoryBytes), {});
  std::unique_lock<std::mutex> lock(stats_mu_);
  while (!stats_stop_) {
    lock.unlock();
    std::vector<int64_t> depth(loops_->size(), 0);
    for (int shard = 0; shard < store_->num_shards(); ++shard) {
      auto n = store_->QueueDepth(static_cast<uint16_t>(shard));
      if (n.ok()) depth[shard % loops_->size()] += *n;
    }
    for (size_t i = 0; i < gauges.size(); ++i) gauges[i]->Set(depth[i]);
    int64_t b = store_->commits(), y = store_->syncs();
    batches->Inc(b - seen_batches);
    syncs->Inc(y - seen_syncs);
    seen_batches = b;
    seen_syncs = y;
    const int64_t r = store_->unsynced_refused();
    refused->Inc(r - seen_refused);
    seen_refused = r;
    const storage::QueueStore::MemoryUsage mem = store_->Memory();
    cache_bytes->Set(mem.block_cache);
    memtable_bytes->Set(mem.memtables);
    reader_bytes->Set(mem.table_readers);
    rss_bytes->Set(ResidentBytes());
    std::optional<core::MallocStats> m;
    if (on_jemalloc && (m = core::ReadMallocStats())) {
      malloc_allocated->Set(m->allocated);
      malloc_active->Set(m->active);
      malloc_resident->Set(m->resident);
      malloc_retained->Set(m->retained);
    }
    lock.lock();
    stats_cv_.wait_for(lock, std::chrono::seconds(2),
                       [this] { return stats_stop_; });
  }
}

int Engine::Stop() {
  if (stopped_) return 0;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_stop_ = true;
  }
  stats_cv_.notify_all();
  if (stats_thread_.joinable()) stats_thread_.join();
  if (expander_thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(expander_mu_);
      expander_stop_ = true;
    }
    expander_cv_.notify_all();
    expander_thread_.join();  // runs the tasks still queued
  }
  if (loops_) {
    // Stop admitting first, on every loop, then drain deliveries.
    std::vector<std::future<void>> drained;
    for (int i = 0; i < loops_->size(); ++i) {
      auto p = std::make_shared<std::promise<void>>();
      drained.push_back(p->get_future());
      loops_->at(i).Post([this, i, p] {
        if (servers_[i]) servers_[i]->Close();
        if (cores_[i]) {
          cores_[i]->Shutdown([p] { p->set_value(); });
        } else {
          p->set_value();
        }
      });
    }
    for (auto& f : drained) f.wait();
    for (int i = 0; i < loops_->size(); ++i) {
      RunOn<bool>(loops_->at(i), [this, i] {
        servers_[i].reset();
        cores_[i].reset();
        return true;
      });
      loops_->at(i).Stop();
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  store_.reset();  // drains the committer
  int open = 0;
  for (int n : open_handles_) open += n;
  return open;
}

Engine::~Engine() { Stop(); }

}  // namespace salvo
