// Micro-benchmark of the loop-side cost of a streamed upload: RecipientReader
// over NDJSON (the fast path and the rapidjson fallback) and CSV bodies fed in
// 64 KiB pieces through CompleteEnd/SetInput, then StateBatch::Enqueue of each
// record (protobuf encode + WriteBatch put; no commit). Reports recipients/s
// and heap allocations per recipient.
#include <string>

#include "absl/strings/str_cat.h"
#include "api/recipient_upload.h"
#include "bench/alloc_counter.h"
#include "benchmark/benchmark.h"
#include "storage/queue_store.h"

namespace salvo::api {
namespace {

constexpr int kRecipients = 20000;

std::string Body(RecipientReader::Format f, bool escaped) {
  std::string s = f == RecipientReader::Format::kCsv ? "email,name\n" : "";
  for (int i = 0; i < kRecipients; ++i) {
    if (f == RecipientReader::Format::kCsv) {
      absl::StrAppend(&s, "user", i, "@d", i % 1000, ".bench.test,Customer ",
                      i, "\n");
    } else {
      absl::StrAppend(&s, "{\"email\":\"user", i, "@d", i % 1000,
                      ".bench.test\",\"data\":{\"name\":\"Customer",
                      escaped ? "\\u0020" : " ", i, "\"}}\n");
    }
  }
  return s;
}

void Run(benchmark::State& state, RecipientReader::Format f, bool escaped,
         bool enqueue) {
  const std::string body = Body(f, escaped);
  storage::Recipient rec;
  std::string where, message, pending;
  int64_t records = 0;
  const long allocs0 = bench::Allocations();
  for (auto _ : state) {
    RecipientReader reader(f, absl::string_view());
    storage::StateBatch batch;
    storage::QueueKey key;
    pending.clear();
    size_t complete = 0, scanned = 0;
    bool in_quotes = false;
    for (size_t off = 0; off <= body.size(); off += 65536) {
      const size_t used = reader.consumed();
      pending.erase(0, used);
      complete -= used;
      scanned -= used;
      pending.append(body, off, 65536);
      complete = RecipientReader::CompleteEnd(f, pending, complete, &scanned,
                                              &in_quotes);
      reader.SetInput(absl::string_view(pending.data(), complete));
      while (reader.Next(&rec, &where, &message) ==
             RecipientReader::Result::kRecord) {
        ++records;
        if (enqueue) {
          rec.set_content_id(1);
          key.id = static_cast<uint64_t>(records);
          batch.Enqueue(key, rec);
        }
      }
    }
    benchmark::DoNotOptimize(batch.size());
  }
  state.SetItemsProcessed(records);
  state.counters["allocs_per_rcpt"] =
      static_cast<double>(bench::Allocations() - allocs0) /
      static_cast<double>(records ? records : 1);
}

void BM_NdjsonFast(benchmark::State& s) {
  Run(s, RecipientReader::Format::kNdjson, false, false);
}
void BM_NdjsonRapidjson(benchmark::State& s) {
  Run(s, RecipientReader::Format::kNdjson, true, false);
}
void BM_Csv(benchmark::State& s) {
  Run(s, RecipientReader::Format::kCsv, false, false);
}
void BM_NdjsonFastAndEnqueue(benchmark::State& s) {
  Run(s, RecipientReader::Format::kNdjson, false, true);
}
void BM_CsvAndEnqueue(benchmark::State& s) {
  Run(s, RecipientReader::Format::kCsv, false, true);
}
BENCHMARK(BM_NdjsonFast);
BENCHMARK(BM_NdjsonRapidjson);
BENCHMARK(BM_Csv);
BENCHMARK(BM_NdjsonFastAndEnqueue);
BENCHMARK(BM_CsvAndEnqueue);

}  // namespace
}  // namespace salvo::api

BENCHMARK_MAIN();
