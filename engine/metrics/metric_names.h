// The names, types, labels and help texts of the metrics the engine
// registers: the one list that deploy/grafana/salvo-dashboard.json and the
// promtool lint test are checked against. Constants only; any thread.
#ifndef SALVO_ENGINE_METRICS_METRIC_NAMES_H_
#define SALVO_ENGINE_METRICS_METRIC_NAMES_H_

#include "absl/strings/string_view.h"

namespace salvo::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

struct MetricSpec {
  absl::string_view name;
  MetricType type;
  absl::string_view labels;  // comma-separated label names, "" for none
  absl::string_view help;
};

inline constexpr absl::string_view kMessagesAcceptedTotal =
    "salvo_messages_accepted_total";
inline constexpr absl::string_view kDeliveriesTotal = "salvo_deliveries_total";
inline constexpr absl::string_view kQueueDepth = "salvo_queue_depth";
inline constexpr absl::string_view kInFlight = "salvo_in_flight";
inline constexpr absl::string_view kSmtpConnections = "salvo_smtp_connections";
inline constexpr absl::string_view kDeliveryLatencySeconds =
    "salvo_delivery_latency_seconds";
inline constexpr absl::string_view kHttpRequestsTotal =
    "salvo_http_requests_total";
inline constexpr absl::string_view kCommitBatchesTotal =
    "salvo_commit_batches_total";
inline constexpr absl::string_view kCommitSyncsTotal =
    "salvo_commit_syncs_total";
inline constexpr absl::string_view kStoreUnsyncedRefusedTotal =
    "salvo_store_unsynced_refused_total";
inline constexpr absl::string_view kSmtpSessionsTotal =
    "salvo_smtp_sessions_total";
inline constexpr absl::string_view kScanCallsTotal = "salvo_scan_calls_total";
inline constexpr absl::string_view kScanEntriesReadTotal =
    "salvo_scan_entries_read_total";
inline constexpr absl::string_view kScanEntriesSkippedTotal =
    "salvo_scan_entries_skipped_total";
inline constexpr absl::string_view kRunMembersSkippedTotal =
    "salvo_delivery_run_members_skipped_total";
inline constexpr absl::string_view kScanLaneBlocksTotal =
    "salvo_scan_lane_blocks_total";
inline constexpr absl::string_view kDeliveryReadyEntries =
    "salvo_delivery_ready_entries";
inline constexpr absl::string_view kDeliveryInFlightPeak =
    "salvo_delivery_in_flight_peak";
inline constexpr absl::string_view kEventsLoggedTotal =
    "salvo_events_logged_total";
inline constexpr absl::string_view kEventsLogDroppedTotal =
    "salvo_events_log_dropped_total";
inline constexpr absl::string_view kStorageMemoryBytes =
    "salvo_storage_memory_bytes";
inline constexpr absl::string_view kMallocBytes = "salvo_malloc_bytes";
// The Prometheus client libraries' standard name.
inline constexpr absl::string_view kProcessResidentMemoryBytes =
    "process_resident_memory_bytes";

// Values of the `tls` label of salvo_smtp_sessions_total.
inline constexpr absl::string_view kTlsNone = "none";
inline constexpr absl::string_view kTlsFull = "full";
inline constexpr absl::string_view kTlsResumed = "resumed";

// Values of the `result` label of salvo_deliveries_total.
inline constexpr absl::string_view kResultDelivered = "delivered";
inline constexpr absl::string_view kResultDeferred = "deferred";
inline constexpr absl::string_view kResultBounced = "bounced";
inline constexpr absl::string_view kResultExpired = "expired";

// Bucket bounds (seconds) of salvo_delivery_latency_seconds: accept to final
// 2xx, from sub-second local delivery to a day of retries.
inline constexpr double kDeliveryLatencyBounds[] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400};

inline constexpr MetricSpec kEngineMetrics[] = {
    {kMessagesAcceptedTotal, MetricType::kCounter, "tenant,lane",
     "Messages accepted for delivery."},
    {kDeliveriesTotal, MetricType::kCounter, "domain,result",
     "Final and deferred delivery outcomes per recipient."},
    {kQueueDepth, MetricType::kGauge, "loop",
     "Recipients queued in storage."},
    {kInFlight, MetricType::kGauge, "loop",
     "Recipients leased into memory."},
    {kSmtpConnections, MetricType::kGauge, "loop",
     "Open outbound SMTP connections."},
    {kDeliveryLatencySeconds, MetricType::kHistogram, "",
     "Time from acceptance to the final 2xx reply."},
    {kHttpRequestsTotal, MetricType::kCounter, "route,code",
     "HTTP API requests by route and status code."},
    {kCommitBatchesTotal, MetricType::kCounter, "",
     "Storage write batches committed."},
    {kCommitSyncsTotal, MetricType::kCounter, "",
     "WAL syncs performed by the commit group."},
    {kStoreUnsyncedRefusedTotal, MetricType::kCounter, "",
     "Loop writes the store refused (WAL sync under way near a full disk, "
     "recovery, write stall) and handed to the committer instead."},
    {kSmtpSessionsTotal, MetricType::kCounter, "tls",
     "Outbound SMTP sessions that became ready for mail, by TLS: none "
     "(plaintext), full (a full handshake) or resumed (an MX's cached "
     "session)."},
    {kScanCallsTotal, MetricType::kCounter, "loop",
     "Queue scans (ScanDue calls) by the delivery loop."},
    {kScanEntriesReadTotal, MetricType::kCounter, "loop",
     "Queue entries read by delivery scans."},
    {kScanEntriesSkippedTotal, MetricType::kCounter, "loop",
     "Queue entries read by delivery scans that were already leased."},
    {kRunMembersSkippedTotal, MetricType::kCounter, "loop",
     "Members of run entries leased again (after a restart or a failed "
     "write) that were skipped: their outcome was already written."},
    {kScanLaneBlocksTotal, MetricType::kCounter, "loop",
     "Scan lanes stopped at a destination holding max_ready_per_domain."},
    {kDeliveryReadyEntries, MetricType::kGauge, "loop",
     "Recipients waiting in this loop's ready queues."},
    {kDeliveryInFlightPeak, MetricType::kGauge, "loop",
     "Most recipients this loop held leased at once."},
    {kEventsLoggedTotal, MetricType::kCounter, "",
     "Recipient events written to the events log."},
    {kEventsLogDroppedTotal, MetricType::kCounter, "",
     "Recipient events not written to the events log (queue full or write "
     "error); they stay in storage."},
    {kStorageMemoryBytes, MetricType::kGauge, "kind",
     "RocksDB memory: block_cache (the shared cache, including the "
     "memtables' reservation in it), memtables, table_readers."},
    {kMallocBytes, MetricType::kGauge, "kind",
     "jemalloc's memory: allocated (held by the program), active (pages "
     "holding allocations), resident (kept in RAM by the allocator, "
     "metadata included), retained (unmapped, kept for reuse)."},
    {kProcessResidentMemoryBytes, MetricType::kGauge, "",
     "Resident memory of the salvo process."},
};

// The help text of an engine metric (its name when it is not listed).
inline absl::string_view HelpOf(absl::string_view name) {
  for (const MetricSpec& m : kEngineMetrics) {
    if (m.name == name) return m.help;
  }
  return name;
}

}  // namespace salvo::metrics

#endif  // SALVO_ENGINE_METRICS_METRIC_NAMES_H_
