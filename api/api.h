// The submission API's routes: POST /v1/campaigns, POST /v1/messages,
// GET /v1/campaigns/{id}, GET /metrics, GET /healthz; the tenant's
// suppression list: POST and GET /v1/suppressions, DELETE
// /v1/suppressions/{entry}; and the RFC 8058 one-click endpoint
// POST /v1/unsubscribe/{token} (no API key: the signed token is the
// credential; GET shows a confirmation form and changes nothing).
// Submissions skip suppressed recipients: not queued, listed in the 201 as
// "suppressed": [{"email", "entry"}], not counted in "accepted"; each gets a
// recipient id and a SUPPRESSED event. The 201 lists the accepted
// recipients' ids, "recipients": [{"email", "id"}], for messages and for
// campaigns of at most kMaxListedRecipients recipients.
// GET /v1/events?campaign=ID[&recipient=ID][&email=ADDR][&type=a,b]
// [&limit=N][&after=CURSOR]: the recipient events of the tenant's campaign or
// message, in order per recipient; {"events": [...], "next": cursor|null}.
// Scheduling: "send_at" (RFC 3339) makes recipients due then (now if absent
// or past); "expires_at" (RFC 3339) or "expires_in" (from the due time) ends
// retries. Streamed campaigns ("stream": true, recipients optional) get
// recipients from POST /v1/campaigns/{id}/recipients (NDJSON or CSV, see
// recipient_upload.h): the buffered body is validated and committed in
// durable chunks of upload_chunk_recipients, each announced to the hooks, so
// sending starts before the upload ends; a bad line answers 400 naming it,
// and chunks before it stay queued (the message says how many).
// Reschedule: POST /v1/campaigns/{id}/reschedule (or /v1/messages/{id}/...)
// with {"send_at", "expires_at" | "expires_in"} (all optional; no send_at or
// a past one: now) stores the new schedule in the Content record, then the
// hooks move every queued recipient that is not in flight; 200 with the
// status and "rescheduled": n only after the moves are committed. A paused
// campaign stays paused; a cancelled or finished one is 409.
// Over HTTP (UploadStreamRoute) an upload without Idempotency-Key streams:
// the body is parsed as it arrives, whatever its length (max_request_bytes
// does not apply), every upload_chunk_recipients recipients are one durable
// commit, and while more than the upload window of commits are outstanding
// the socket is not read. The 200 says {"id","chunks","accepted",
// "suppressed","lines"}. A bad line answers 400 once the earlier commits are
// durable: "line N: ... (A recipients in C chunks were committed; resume from
// line L)": nothing from the chunk with the bad line is queued, so the client
// sends the body again from line L (for CSV: row L, after the header row).
// With an Idempotency-Key the body is buffered as before (the key covers a
// hash of the whole body).
// Idempotency-Key (POSTs that submit): claim tenant+key in memory (a
// concurrent duplicate gets 409 "in_progress"), then look up the durable
// record: same SHA-256(method, path, body) -> the original status and body
// again, nothing queued; another body -> 422. A new success writes its
// record in the same batch as its recipients (for uploads: the last chunk).
// Errors are not recorded. Records older than kIdempotencyWindowMs are
// ignored and overwritten.
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

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "api/http_server.h"
#include "engine/config/config.h"
#include "engine/core/clock.h"
#include "engine/core/loop.h"
#include "engine/events/event_log.h"
#include "engine/metrics/registry.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/idempotency_store.h"
#include "storage/key_codec.h"
#include "storage/queue_store.h"
#include "storage/reschedule.h"
#include "storage/suppression_store.h"

namespace salvo::api {

class DeliveryHooks {
 public:
  virtual ~DeliveryHooks() = default;
  // Any thread, after a submission's batch is durable: (shard, lane) got
  // entries due at due_ms or later, every one with an id above after_id
  // (so a scan need not step back over what it already read; 0: unknown).
  virtual void OnEnqueued(uint16_t shard, storage::Lane lane, int64_t due_ms,
                          uint64_t after_id) = 0;
  // Any thread: recipients of this content currently leased into memory.
  virtual int64_t InFlight(uint64_t content_id) = 0;
  // Any thread, after an upload chunk stored as a recipient block is
  // durable: blocks wait for expansion.
  virtual void OnBlocksAdded() {}
  // Any thread, after a campaign's state record is durable (pause, resume,
  // cancel): the engine applies it on every loop.
  virtual void OnContentState(uint64_t content_id,
                              storage::ContentState state) {}
  // Any thread, after the content record with the new schedule is durable:
  // move the content's queued entries that are not in flight (each loop its
  // own shards). `done` (any thread, once) gets the number moved after every
  // move was committed, or an error. The default moves nothing.
  virtual void Reschedule(uint64_t content_id, const storage::Reschedule& r,
                          std::function<void(absl::StatusOr<int64_t>)> done) {
    done(int64_t{0});
  }
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

  static constexpr int64_t kIdempotencyWindowMs = 24ll * 3600 * 1000;
  static constexpr size_t kDefaultUploadChunkRecipients = 10000;

  // The JSON-lines event log that gets each submission's recipient events
  // after its commit (may be null: no log). Call before serving.
  void SetEventLog(events::EventLog* log) { event_log_ = log; }
  // A campaign's 201 lists its recipients' ids up to this many recipients.
  static constexpr size_t kMaxListedRecipients = 1000;

  // Recipients per durable commit of an upload. Call before serving.
  void SetUploadChunkRecipients(size_t n) { upload_chunk_ = n > 0 ? n : 1; }

  // Commits of a streamed upload outstanding before its socket is no longer
  // read. Call before serving.
  void SetUploadWindow(int n) { upload_window_ = n > 0 ? n : 1; }
  // On: each upload chunk is stored as one recipient block
  // (StateBatch::PutBlock) that the engine's BlockExpander turns into queue
  // entries later; off (the default): queue entries at once.
  void SetRecipientBlocks(bool on) { recipient_blocks_ = on; }
  static constexpr int kDefaultUploadWindow = 2;

  // The HttpServer stream route of `loop` for streamed uploads (see above).
  StreamRoute UploadStreamRoute(core::Loop& loop);

  // High-water marks of every streamed upload since the Api was made, for
  // tests and benchmarks: body bytes held unparsed and commits outstanding.
  struct UploadMarks {
    int64_t max_buffered_bytes = 0;
    int max_outstanding = 0;
  };
  UploadMarks upload_marks() const;

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
  // A claimed Idempotency-Key of the request being served.
  struct IdemClaim {
    std::string key;
    std::string hash;  // SHA-256 of method, path, body
  };
  struct UploadJob;
  class UploadStream;

  // Returns the tenant, or nullptr when the key is missing or unknown.
  const std::string* Authenticate(const HttpRequest& req) const;
  // Handles an Idempotency-Key header: true when the request was answered
  // (replay, conflict, error); otherwise *claim is set when there is a key
  // and *respond is wrapped to release the claim once it answers.
  bool CheckIdempotency(const HttpRequest& req, const std::string& tenant,
                        std::optional<IdemClaim>* claim, Responder* respond);
  void Submit(core::Loop& loop, HttpRequest&& req, const std::string& tenant,
              bool transactional, const std::optional<IdemClaim>& idem,
              Responder respond);
  void Upload(core::Loop& loop, HttpRequest&& req, const std::string& tenant,
              absl::string_view hex_id, std::optional<IdemClaim> idem,
              Responder respond);
  // Checks the campaign and the Content-Type of an upload: its job, or
  // nullptr after answering.
  std::shared_ptr<UploadJob> PrepareUpload(core::Loop& loop,
                                           const HttpRequest& req,
                                           const std::string& tenant,
                                           absl::string_view hex_id,
                                           Responder* respond);
  // Loop thread: validates and commits the next chunk of `job`.
  void UploadStep(std::shared_ptr<UploadJob> job);
  // `rescheduled` (optional) adds "rescheduled": n to the answer.
  HttpResponse GetStatus(absl::string_view hex_id, const std::string& tenant,
                         const int64_t* rescheduled = nullptr);
  // Validates the merge fields of one uploaded recipient; false with
  // *message set when they do not fit the templates.
  bool CheckUploadFields(const UploadJob& j, const storage::Recipient& rec,
                         std::string* message) const;
  // Streamed uploads: builds and commits j.recs[0, n) (suppressed ones
  // skipped); `done` runs on the committer thread with (status, accepted,
  // suppressed). A failed suppression lookup is returned, nothing committed.
  using ChunkDone = std::function<void(absl::Status, int64_t, int64_t)>;
  // Checks j.recs[0, n) against the suppression list and builds their
  // batch (suppressed ones as events only); *shards: the shards it touches;
  // *after_id: below every queue id of the batch.
  [[nodiscard]] absl::Status BuildUploadChunk(UploadJob& j, size_t n,
                                              storage::StateBatch* batch,
                                              std::vector<uint16_t>* shards,
                                              uint64_t* after_id);
  [[nodiscard]] absl::Status CommitUploadChunk(UploadJob& j, size_t n,
                                               ChunkDone done);
  // GET /v1/events: a page of recipient events (see the header comment).
  HttpResponse ListEvents(const HttpRequest& req, const std::string& tenant);
  void AddSuppressions(core::Loop& loop, const HttpRequest& req,
                       const std::string& tenant, Responder respond);
  HttpResponse ListSuppressions(const HttpRequest& req,
                                const std::string& tenant);
  // POST /v1/campaigns/{id}/pause|resume|cancel.
  void Control(core::Loop& loop, absl::string_view hex_id,
               absl::string_view action, const std::string& tenant,
               Responder respond);
  // POST /v1/campaigns/{id}/reschedule, /v1/messages/{id}/reschedule.
  void Reschedule(core::Loop& loop, const HttpRequest& req,
                  absl::string_view hex_id, bool transactional,
                  const std::string& tenant, Responder respond);
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
  std::unique_ptr<storage::IdempotencyStore> idempotency_;
  std::string unsubscribe_secret_;
  events::EventLog* event_log_ = nullptr;
  size_t upload_chunk_ = kDefaultUploadChunkRecipients;
  int upload_window_ = kDefaultUploadWindow;
  bool recipient_blocks_ = false;
  std::atomic<int64_t> max_buffered_bytes_{0};
  std::atomic<int> max_outstanding_{0};
  absl::Mutex claims_mu_;
  // tenant '\0' key of requests being served.
  absl::flat_hash_set<std::string> claims_ ABSL_GUARDED_BY(claims_mu_);
};

}  // namespace salvo::api

#endif  // SALVO_API_API_H_
