// ReplyParser throughput: a 10-line EHLO response and a 1-line 250 reply,
// parsed into a reused Reply. Reports bytes/s, replies/s and heap
// allocations per reply (global operator new is counted).
// Run: bazel run //bench:reply_parser_bench
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include "benchmark/benchmark.h"
#include "engine/smtp/reply_parser.h"

namespace {
std::atomic<int64_t> g_allocs{0};
}  // namespace

void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace salvo::smtp {
namespace {

const char kEhlo[] =
    "250-mx.example.com Hello client.example.net [192.0.2.1]\r\n"
    "250-SIZE 52428800\r\n"
    "250-8BITMIME\r\n"
    "250-PIPELINING\r\n"
    "250-PIPE_CONNECT\r\n"
    "250-AUTH PLAIN LOGIN\r\n"
    "250-CHUNKING\r\n"
    "250-STARTTLS\r\n"
    "250-ENHANCEDSTATUSCODES\r\n"
    "250 SMTPUTF8\r\n";
const char kOk[] = "250 2.0.0 Ok: queued as 4Xyz1234abc\r\n";

void Parse(benchmark::State& state, absl::string_view wire, size_t split) {
  ReplyParser parser;
  parser.set_enhanced_status_codes(true);
  Reply reply;
  int64_t replies = 0;
  int64_t allocs_before = 0;
  bool counting = false;
  for (auto _ : state) {
    for (size_t pos = 0; pos < wire.size(); pos += split) {
      absl::string_view in = wire.substr(pos, split);
      while (parser.Parse(&in, &reply) == ReplyParser::Status::kReply) {
        ++replies;
      }
    }
    if (!counting) {  // first iteration warms up the buffers
      counting = true;
      allocs_before = g_allocs.load();
      replies = 0;
    }
    benchmark::DoNotOptimize(reply.code);
  }
  int64_t allocs = g_allocs.load() - allocs_before;
  state.SetBytesProcessed(state.iterations() * wire.size());
  state.counters["replies/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["allocs/reply"] =
      replies > 0 ? static_cast<double>(allocs) / replies : 0;
  if (reply.code != 250) state.SkipWithError("parse failed");
}

void BM_Ehlo10Lines(benchmark::State& state) { Parse(state, kEhlo, sizeof(kEhlo)); }
void BM_Ok1Line(benchmark::State& state) { Parse(state, kOk, sizeof(kOk)); }
// The same EHLO arriving in 16-byte reads (partial lines carried over).
void BM_Ehlo10LinesSplit16(benchmark::State& state) { Parse(state, kEhlo, 16); }

BENCHMARK(BM_Ehlo10Lines);
BENCHMARK(BM_Ok1Line);
BENCHMARK(BM_Ehlo10LinesSplit16);

}  // namespace
}  // namespace salvo::smtp

BENCHMARK_MAIN();
