// Checks deploy/grafana/salvo-dashboard.json against the engine's metric
// list (metric_names.h): valid JSON, every queried salvo_* series exists,
// every engine metric is shown. Also checks deploy/prometheus.yml with
// promtool.
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/metrics/metric_names.h"
#include "gtest/gtest.h"
#include "rapidjson/document.h"
#include "re2/re2.h"

namespace salvo::metrics {
namespace {

constexpr char kDashboard[] = "deploy/grafana/salvo-dashboard.json";
constexpr char kPrometheus[] = "deploy/prometheus.yml";

int RunCommand(const std::string& cmd, std::string* output) {
  output->clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output->append(buf, n);
  return pclose(p);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void CollectExprs(const rapidjson::Value& v, std::vector<std::string>* out) {
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (std::string(it->name.GetString()) == "expr" && it->value.IsString()) {
        out->push_back(it->value.GetString());
      } else {
        CollectExprs(it->value, out);
      }
    }
  } else if (v.IsArray()) {
    for (const auto& e : v.GetArray()) CollectExprs(e, out);
  }
}

// Series names a PromQL expression may use for the engine's metrics.
std::set<std::string> KnownSeries() {
  std::set<std::string> out;
  for (const MetricSpec& spec : kEngineMetrics) {
    std::string name(spec.name);
    if (spec.type == MetricType::kHistogram) {
      for (const char* s : {"_bucket", "_sum", "_count"}) out.insert(name + s);
    } else {
      out.insert(name);
    }
  }
  return out;
}

// Returns the salvo_* and process_* names in `expr` that no engine metric
// provides; adds the base metric names used to *used.
std::vector<std::string> UnknownNames(const std::string& expr,
                                      std::set<std::string>* used) {
  static const std::set<std::string> known = KnownSeries();
  std::vector<std::string> unknown;
  re2::StringPiece input(expr);
  std::string name;
  static const RE2 re("\\b((?:salvo|process)_[a-zA-Z0-9_:]*)");
  while (RE2::FindAndConsume(&input, re, &name)) {
    if (known.count(name) == 0) {
      unknown.push_back(name);
      continue;
    }
    for (const MetricSpec& spec : kEngineMetrics) {
      if (name.rfind(std::string(spec.name), 0) == 0) {
        used->insert(std::string(spec.name));
      }
    }
  }
  return unknown;
}

TEST(DashboardTest, IsValidJson) {
  std::string output;
  EXPECT_EQ(RunCommand(std::string("/usr/bin/python3 -m json.tool ") + kDashboard +
                    " > /dev/null",
                &output),
            0)
      << output;
}

TEST(DashboardTest, QueriesOnlyEngineMetricsAndShowsAllOfThem) {
  rapidjson::Document doc;
  doc.Parse(ReadFile(kDashboard).c_str());
  ASSERT_FALSE(doc.HasParseError());
  std::vector<std::string> exprs;
  CollectExprs(doc, &exprs);
  ASSERT_GE(exprs.size(), 10u);
  std::set<std::string> used;
  for (const std::string& expr : exprs) {
    EXPECT_EQ(UnknownNames(expr, &used), std::vector<std::string>{}) << expr;
  }
  for (const MetricSpec& spec : kEngineMetrics) {
    EXPECT_EQ(used.count(std::string(spec.name)), 1u) << spec.name;
  }
  // The panels the operators asked for.
  std::string all;
  for (const std::string& e : exprs) all += e + "\n";
  for (const char* want :
       {"result=\"delivered\"", "result=\"deferred\"", "result=\"bounced\"",
        "histogram_quantile(0.5,", "histogram_quantile(0.99,",
        "sum by (domain)"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want;
  }
}

TEST(DashboardTest, CheckerRejectsUnknownMetric) {
  std::set<std::string> used;
  EXPECT_EQ(UnknownNames("rate(salvo_deliveries_sent_total[5m]) + "
                         "salvo_queue_depth + salvo_in_flight_bucket",
                         &used),
            (std::vector<std::string>{"salvo_deliveries_sent_total",
                                      "salvo_in_flight_bucket"}));
  EXPECT_EQ(used, (std::set<std::string>{"salvo_queue_depth"}));
}

TEST(PrometheusConfigTest, PromtoolAcceptsItAndItScrapesSalvo) {
  std::string output;
  EXPECT_EQ(
      RunCommand(std::string("/usr/bin/promtool check config ") + kPrometheus, &output),
      0)
      << output;
  std::string text = ReadFile(kPrometheus);
  EXPECT_NE(text.find("127.0.0.1:8025"), std::string::npos);
  EXPECT_NE(text.find("metrics_path: /metrics"), std::string::npos);
  // Negative control: promtool rejects a broken config.
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string bad = std::string(dir != nullptr ? dir : "/tmp") + "/bad.yml";
  std::ofstream(bad) << "scrape_configs:\n  - job_name: [\n";
  EXPECT_NE(RunCommand("/usr/bin/promtool check config " + bad, &output), 0);
}

}  // namespace
}  // namespace salvo::metrics
