// The submission API's routes: POST /v1/campaigns, POST /v1/messages,
// GET /v1/campaigns/{id}, GET /metrics, GET /healthz; the tenant's
// suppression list: POST and GET /v1/suppressions, DELETE
// /v1/suppressions/{entry}; and the RFC 8058 one-click endpoint
// POST /v1/unsubscribe/{token} (no API key: the signed token is the
// credential; GET shows a confirmation form and changes nothing).
// Submissions skip suppressed recipients: not queued, listed in the 201 as
// "suppressed": [{"email", "entry"}], not counted in "accepted".
//
// In: an HttpRequest from HttpServer. Out: one HttpResponse. A submission is
// validated completely (JSON shape, unknown fields, addresses, header
// injection, templates, merge data, sizes) before anything is built; then one
// StateBatch (content + one queue entry per recipient) is committed durably,
// and 201 is answered only after the WAL sync, back on the request's loop.
// Errors: {"error": {"code", "field", "message"}}; storage faults are 503.
//
// Thread-safety: one Api serves every loop; Handle() runs on the loop that
// got the request and answers on it. The Api must outlive pending commits
// (destroy the QueueStore, which drains them, first... then the loops).
#ifndef SALVO_API_API_H_
#define SALVO_API_API_H_

#include <cstdint>
#include <memory>
#include <string>

#include "api/http_server.h"
#include "engine/config/config.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/metrics/registry.h"
#include "storage/key_codec.h"
#include "storage/queue_store.h"
#include "storage/suppression_store.h"

namespace salvo::api {

class DeliveryHooks {
 public:
  virtual ~DeliveryHooks() = default;
  // Any thread, after a submission's batch is durable: (shard, lane) got
  // entries due at due_ms or later.
  virtual void OnEnqueued(uint16_t shard, storage::Lane lane,
                          int64_t due_ms) = 0;
  // Any thread: recipients of this content currently leased into memory.
  virtual int64_t InFlight(uint64_t content_id) = 0;
};

class Api {
 public:
  // All pointers must outlive the Api; `hooks` may be null.
  Api(const config::Config& config, storage::QueueStore* store,
      DeliveryHooks* hooks, metrics::Registry* registry,
      const core::Clock& clock);
  ~Api();

  // The HMAC key of unsubscribe tokens ([hygiene] unsubscribe_secret). Empty
  // (the default): /v1/unsubscribe/... answers 404. Call before serving.
  void SetUnsubscribeSecret(std::string secret) {
    unsubscribe_secret_ = std::move(secret);
  }

  // On the loop that got the request; `respond` is called on that loop.
  void Handle(core::Loop& loop, HttpRequest&& req, Responder respond);

  struct Error {
    int status = 400;
    const char* code = "invalid_argument";
    std::string field;
    std::string message;
  };
  static HttpResponse ErrorResponse(const Error& e);

 private:
  // Returns the tenant, or nullptr when the key is missing or unknown.
  const std::string* Authenticate(const HttpRequest& req) const;
  void Submit(core::Loop& loop, HttpRequest&& req, const std::string& tenant,
              bool transactional, Responder respond);
  HttpResponse GetStatus(absl::string_view hex_id,
                         const std::string& tenant);
  void AddSuppressions(core::Loop& loop, const HttpRequest& req,
                       const std::string& tenant, Responder respond);
  HttpResponse ListSuppressions(const HttpRequest& req,
                                const std::string& tenant);
  void RemoveSuppression(core::Loop& loop, absl::string_view entry,
                         const std::string& tenant, Responder respond);
  void Unsubscribe(core::Loop& loop, const HttpRequest& req,
                   absl::string_view token, Responder respond);

  const config::Config& config_;
  storage::QueueStore* store_;
  DeliveryHooks* hooks_;
  metrics::Registry* registry_;
  const core::Clock& clock_;
  std::unique_ptr<storage::SuppressionStore> suppressions_;
  std::string unsubscribe_secret_;
};

}  // namespace salvo::api

#endif  // SALVO_API_API_H_
