// Built with registry.cc and -UNDEBUG: in debug builds an invalid metric or
// label name, or a name that breaks Prometheus conventions, aborts.
#include "engine/metrics/registry.h"

#include "gtest/gtest.h"

namespace salvo::metrics {
namespace {

#ifndef NDEBUG
TEST(RegistryDebugDeathTest, InvalidMetricNameAborts) {
  Registry r;
  EXPECT_DEATH(r.GetGauge("9salvo", "G."), "invalid metric name");
  EXPECT_DEATH(r.GetGauge("salvo-x", "G."), "invalid metric name");
  EXPECT_DEATH(r.GetGauge("", "G."), "invalid metric name");
}

TEST(RegistryDebugDeathTest, InvalidLabelNameAborts) {
  Registry r;
  EXPECT_DEATH(r.GetGauge("salvo_g", "G.", {{"a:b", "v"}}),
               "invalid label name");
  EXPECT_DEATH(r.GetGauge("salvo_g", "G.", {{"__name", "v"}}),
               "invalid label name");
  EXPECT_DEATH(r.GetHistogram("salvo_h_seconds", "H.", {1}, {{"le", "1"}}),
               "invalid label name");
  EXPECT_DEATH(r.GetGauge("salvo_g", "G.", {{"a", "1"}, {"a", "2"}}),
               "duplicate label");
}

TEST(RegistryDebugDeathTest, ConventionBreaksAbort) {
  Registry r;
  EXPECT_DEATH(r.GetCounter("salvo_sent", "C."), "must end in _total");
  EXPECT_DEATH(r.GetGauge("salvo_sent_total", "G."), "must not end in _total");
  EXPECT_DEATH(r.GetGauge("salvo_x_count", "G."), "histogram suffix");
  EXPECT_DEATH(r.GetGauge("salvo_g", ""), "needs help text");
  EXPECT_DEATH(r.GetHistogram("salvo_h_seconds", "H.", {2, 1}),
               "increasing");
}

TEST(RegistryDebugTest, ValidNamesPass) {
  Registry r;
  r.GetGauge("salvo:ratio_g", "G.", {{"_a1", "x"}})->Set(1);
  r.GetCounter("a_total", "C.")->Inc();
  EXPECT_NE(r.Expose().find("salvo:ratio_g{_a1=\"x\"} 1\n"),
            std::string::npos);
}
#else
TEST(RegistryDebugTest, MustBeBuiltWithoutNdebug) { FAIL(); }
#endif

}  // namespace
}  // namespace salvo::metrics
