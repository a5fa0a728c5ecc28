// Tests for the metrics registry: exact exposition text, label escaping,
// histogram buckets, concurrent updates, and promtool lint of the engine's
// metric set (with a broken exposition as the negative control).
#include "engine/metrics/registry.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/metrics/metric_names.h"
#include "gtest/gtest.h"

namespace salvo::metrics {
namespace {

TEST(RegistryTest, ExposesExactText) {
  Registry r;
  r.GetCounter("salvo_b_total", "B things.", {{"x", "2"}})->Inc(3);
  r.GetCounter("salvo_b_total", "B things.", {{"x", "1"}})->Inc();
  r.GetGauge("salvo_a", "A level.\nSecond \\ line.")->Set(-7);
  Histogram* h = r.GetHistogram("salvo_c_seconds", "C time.", {0.5, 1, 2.5},
                                {{"lane", "bulk"}});
  h->Observe(0.25);
  h->Observe(0.5);  // le is inclusive
  h->Observe(2);
  h->Observe(100);
  EXPECT_EQ(r.Expose(),
            "# HELP salvo_a A level.\\nSecond \\\\ line.\n"
            "# TYPE salvo_a gauge\n"
            "salvo_a -7\n"
            "# HELP salvo_b_total B things.\n"
            "# TYPE salvo_b_total counter\n"
            "salvo_b_total{x=\"1\"} 1\n"
            "salvo_b_total{x=\"2\"} 3\n"
            "# HELP salvo_c_seconds C time.\n"
            "# TYPE salvo_c_seconds histogram\n"
            "salvo_c_seconds_bucket{lane=\"bulk\",le=\"0.5\"} 2\n"
            "salvo_c_seconds_bucket{lane=\"bulk\",le=\"1\"} 2\n"
            "salvo_c_seconds_bucket{lane=\"bulk\",le=\"2.5\"} 3\n"
            "salvo_c_seconds_bucket{lane=\"bulk\",le=\"+Inf\"} 4\n"
            "salvo_c_seconds_sum{lane=\"bulk\"} 102.75\n"
            "salvo_c_seconds_count{lane=\"bulk\"} 4\n");
  EXPECT_EQ(h->count(), 4);
  EXPECT_EQ(h->cumulative(), (std::vector<int64_t>{2, 2, 3, 4}));
}

TEST(RegistryTest, EscapesLabelValuesAndSortsLabelNames) {
  Registry r;
  Counter* c = r.GetCounter("salvo_x_total", "X.",
                            {{"z", "a\"b"}, {"a", "c\\d\ne"}});
  c->Inc(2);
  // Same label set in another order is the same series.
  EXPECT_EQ(r.GetCounter("salvo_x_total", "X.",
                         {{"a", "c\\d\ne"}, {"z", "a\"b"}}),
            c);
  EXPECT_EQ(r.Expose(),
            "# HELP salvo_x_total X.\n"
            "# TYPE salvo_x_total counter\n"
            "salvo_x_total{a=\"c\\\\d\\ne\",z=\"a\\\"b\"} 2\n");
}

TEST(RegistryTest, SeriesPointersAreStable) {
  Registry r;
  Gauge* first = r.GetGauge("salvo_g", "G.", {{"loop", "0"}});
  for (int i = 1; i < 500; ++i) {
    r.GetGauge("salvo_g", "G.", {{"loop", std::to_string(i)}})->Set(i);
  }
  EXPECT_EQ(r.GetGauge("salvo_g", "G.", {{"loop", "0"}}), first);
}

TEST(RegistryTest, FourThreadsIncrementWithoutLoss) {
  Registry r;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, t] {
      // Each thread looks the series up itself (find-or-create race).
      Counter* shared = r.GetCounter("salvo_n_total", "N.", {{"k", "shared"}});
      Counter* own =
          r.GetCounter("salvo_n_total", "N.", {{"k", std::to_string(t)}});
      Histogram* h = r.GetHistogram("salvo_h_seconds", "H.", {1, 2});
      for (int i = 0; i < kPerThread; ++i) {
        shared->Inc();
        own->Inc();
        h->Observe(i % 3);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.GetCounter("salvo_n_total", "N.", {{"k", "shared"}})->value(),
            4 * kPerThread);
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(
        r.GetCounter("salvo_n_total", "N.", {{"k", std::to_string(t)}})->value(),
        kPerThread);
  }
  Histogram* h = r.GetHistogram("salvo_h_seconds", "H.", {1, 2});
  EXPECT_EQ(h->count(), 4 * kPerThread);
  EXPECT_EQ(h->cumulative().back(), 4 * kPerThread);
  // Sum of (i % 3) over 100000 values, times 4; exact in a double.
  EXPECT_EQ(h->sum(), 4.0 * (33333 * 1 + 33333 * 2));
}

TEST(RegistryDeathTest, TypeMismatchAborts) {
  Registry r;
  r.GetGauge("salvo_t_seconds", "T.");
  EXPECT_DEATH(r.GetHistogram("salvo_t_seconds", "T.", {1}),
               "registered as gauge and as histogram");
}

TEST(RegistryDeathTest, HelpMismatchAborts) {
  Registry r;
  r.GetGauge("salvo_t", "T.");
  EXPECT_DEATH(r.GetGauge("salvo_t", "Other."), "two help texts");
}

#ifdef NDEBUG
TEST(RegistryTest, ReleaseBuildSanitizesInvalidNames) {
  Registry r;
  r.GetCounter("salvo bad-name_total", "B.", {{"9x", "v"}})->Inc();
  EXPECT_EQ(r.Expose(),
            "# HELP salvo_bad_name_total B.\n"
            "# TYPE salvo_bad_name_total counter\n"
            "salvo_bad_name_total{_x=\"v\"} 1\n");
}
#endif

// Runs `cmd` and returns its exit status, with stdout+stderr in *output.
int RunCommand(const std::string& cmd, std::string* output) {
  output->clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output->append(buf, n);
  return pclose(p);
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// Registers every engine metric the way the engine will, with two series
// each, and asks promtool to lint the result.
TEST(RegistryPromtoolTest, EngineMetricsAreLintClean) {
  Registry r;
  std::vector<double> bounds(std::begin(kDeliveryLatencyBounds),
                             std::end(kDeliveryLatencyBounds));
  for (const MetricSpec& spec : kEngineMetrics) {
    for (int i = 0; i < 2; ++i) {
      Labels labels;
      for (absl::string_view l :
           absl::StrSplit(spec.labels, ',', absl::SkipEmpty())) {
        labels.emplace_back(std::string(l),
                            "v" + std::to_string(i) + "\"q\\\n");
      }
      switch (spec.type) {
        case MetricType::kCounter:
          r.GetCounter(spec.name, spec.help, labels)->Inc(i + 1);
          break;
        case MetricType::kGauge:
          r.GetGauge(spec.name, spec.help, labels)->Set(i + 5);
          break;
        case MetricType::kHistogram:
          r.GetHistogram(spec.name, spec.help, bounds, labels)
              ->Observe(0.3 * (i + 1));
          break;
      }
    }
  }
  std::string text = r.Expose();
  std::string path = WriteTemp("good.prom", text);
  std::string output;
  EXPECT_EQ(RunCommand("/usr/bin/promtool check metrics < " + path, &output), 0)
      << output;
  EXPECT_EQ(output, "") << text;

  // Negative control: a counter without _total, a duplicate TYPE line and a
  // histogram without +Inf must make promtool fail.
  std::string broken =
      "# HELP salvo_bad A counter named badly.\n"
      "# TYPE salvo_bad counter\n"
      "salvo_bad 1\n"
      "# TYPE salvo_bad counter\n"
      "# HELP salvo_h_seconds H.\n"
      "# TYPE salvo_h_seconds histogram\n"
      "salvo_h_seconds_bucket{le=\"1\"} 1\n"
      "salvo_h_seconds_sum 1\n"
      "salvo_h_seconds_count 1\n";
  path = WriteTemp("broken.prom", broken);
  EXPECT_NE(RunCommand("/usr/bin/promtool check metrics < " + path, &output), 0)
      << output;
  EXPECT_NE(output, "");

  // Lint-only problems (valid syntax) are reported too.
  path = WriteTemp("lint.prom",
                   "# HELP salvo_bad A counter named badly.\n"
                   "# TYPE salvo_bad counter\n"
                   "salvo_bad 1\n");
  RunCommand("/usr/bin/promtool check metrics < " + path, &output);
  EXPECT_NE(output.find("_total"), std::string::npos) << output;
}

}  // namespace
}  // namespace salvo::metrics
