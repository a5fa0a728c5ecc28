// Render micro-benchmarks: Compile() of a ~5 KB html+text campaign and
// Render() per recipient into a reused buffer. Reports items/s, bytes/s and
// heap allocations per operation (global operator new counter).
//   bazel run //bench:render_bench
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "bench/alloc_counter.h"
#include "engine/render/template.h"

using salvo::bench::g_allocations;

namespace salvo::render {
namespace {

storage::Content Campaign() {
  storage::Content c;
  c.set_id(42);
  c.set_from("Salvo Shop <news@shop.example>");
  c.set_subject("{{first_name}}, your weekly offers are here");
  c.set_reply_to("help@shop.example");
  auto* h = c.add_headers();
  h->set_name("List-Unsubscribe");
  h->set_value("<https://shop.example/u/{{token}}>");
  std::string html =
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Offers</title>"
      "</head><body style=\"font-family: Arial, sans-serif\">\n"
      "<p>Hello {{first_name}} {{last_name}},</p>\n";
  while (html.size() < 3000) {
    html +=
        "<tr><td class=\"item\"><a href=\"https://shop.example/p/1234?utm_source=mail\">"
        "Espresso machine</a> now only 199,00 &euro; &ndash; Kaffee f\xc3\xbcr alle!"
        "</td></tr>\n";
  }
  html += "<p>Sent to {{email}}. <a href=\"https://shop.example/u/{{token}}\">"
          "Unsubscribe</a></p></body></html>\n";
  std::string text = "Hello {{first_name}} {{last_name}},\n\n";
  while (text.size() < 2000) {
    text += "Espresso machine now only 199,00 EUR - Kaffee f\xc3\xbcr alle! "
            "https://shop.example/p/1234\n";
  }
  text += "Sent to {{email}}. Unsubscribe: https://shop.example/u/{{token}}\n";
  c.set_html(html);
  c.set_text(text);
  return c;
}

void BM_Compile(benchmark::State& state) {
  const storage::Content content = Campaign();
  const size_t template_bytes = content.html().size() + content.text().size();
  for (auto _ : state) {
    auto compiled = CompiledContent::Compile(content);
    if (!compiled.ok()) state.SkipWithError("compile failed");
    benchmark::DoNotOptimize(compiled);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * template_bytes);
  state.counters["template_bytes"] = template_bytes;
}
BENCHMARK(BM_Compile);

struct Recipient {
  std::string email, first, last, token;
};

void BM_Render(benchmark::State& state) {
  auto compiled = CompiledContent::Compile(Campaign());
  if (!compiled.ok()) {
    state.SkipWithError("compile failed");
    return;
  }
  std::vector<Recipient> rcpts;
  for (int i = 0; i < 64; ++i) {
    rcpts.push_back({absl::StrCat("user", i, "@example.org"),
                     i % 2 ? "J\xc3\xbcrgen" : "Ann", absl::StrCat("Smith-", i),
                     absl::StrCat("tok", i * 7919)});
  }
  std::string out;
  std::string message_id = "00000000.1@mta.shop.example";
  size_t bytes = 0;
  size_t i = 0;
  long allocs = 0;
  for (auto _ : state) {
    const Recipient& r = rcpts[i++ & 63];
    const MergeField fields[] = {{"first_name", r.first},
                                 {"last_name", r.last},
                                 {"token", r.token}};
    RenderInput in;
    in.rcpt = r.email;
    in.fields = fields;
    in.message_id = message_id;
    in.date = absl::FromUnixSeconds(1700000000);
    const long before = g_allocations.load(std::memory_order_relaxed);
    if (!(*compiled)->Render(in, &out).ok()) state.SkipWithError("render failed");
    allocs += g_allocations.load(std::memory_order_relaxed) - before;
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
  state.counters["allocs_per_render"] =
      benchmark::Counter(static_cast<double>(allocs) / state.iterations());
  state.counters["message_bytes"] = out.size();
}
BENCHMARK(BM_Render);

}  // namespace
}  // namespace salvo::render

BENCHMARK_MAIN();
