// Tests of the JSON-lines event log on a real file under $TEST_TMPDIR: one
// parseable line per event with every field, appends survive reopen,
// rotation by size, and a full queue drops (counted) instead of blocking.
#include "engine/events/event_log.h"

#include <stdlib.h>

#include <fstream>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "engine/events/event_json.h"
#include "gtest/gtest.h"

namespace salvo::events {
namespace {

std::string FreshPath() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ = std::string(tmp ? tmp : "/tmp") + "/evlog_XXXXXX";
  EXPECT_NE(mkdtemp(templ.data()), nullptr);
  return templ + "/events.jsonl";
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<storage::StateBatch::BatchEvent> Events(int n) {
  std::vector<storage::StateBatch::BatchEvent> out;
  for (int i = 0; i < n; ++i) {
    storage::StateBatch::BatchEvent e;
    e.content_id = 0x1a;
    e.recipient_id = 100 + i;
    e.event.set_state(storage::Event::DEFERRED);
    e.event.set_at_ms(1'700'000'000'123);
    e.event.set_attempt(1);
    e.event.set_address("a\"b@x.example");
    e.event.set_remote_host("127.0.0.1:25");
    e.event.set_reply("451 4.7.1 try later");
    out.push_back(e);
  }
  return out;
}

TEST(EventJsonTest, TypesRoundTrip) {
  for (const char* name : {"accepted", "delivered", "deferred", "bounced",
                           "expired", "suppressed", "cancelled"}) {
    storage::Event::State s;
    ASSERT_TRUE(ParseEventType(name, &s)) << name;
    EXPECT_STREQ(EventTypeName(s), name);
  }
  storage::Event::State s;
  EXPECT_FALSE(ParseEventType("sent", &s));
  EXPECT_EQ(FormatRfc3339Ms(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
}

TEST(EventLogTest, WritesOneJsonLinePerEventAndAppendsAfterReopen) {
  const std::string path = FreshPath();
  {
    auto log = EventLog::Open({path}, nullptr);
    ASSERT_TRUE(log.ok()) << log.status();
    (*log)->Append("acme", Events(3));
    (*log)->Drain();
    EXPECT_EQ((*log)->logged(), 3);
  }
  {
    auto log = EventLog::Open({path}, nullptr);
    ASSERT_TRUE(log.ok());
    (*log)->Append("acme", Events(1));
  }  // the destructor writes what is queued
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 4u);
  rapidjson::Document d;
  d.Parse(lines[1].c_str());
  ASSERT_FALSE(d.HasParseError()) << lines[1];
  EXPECT_STREQ(d["tenant"].GetString(), "acme");
  EXPECT_STREQ(d["campaign"].GetString(), "000000000000001a");
  EXPECT_STREQ(d["recipient"].GetString(), "0000000000000065");
  EXPECT_STREQ(d["email"].GetString(), "a\"b@x.example");
  EXPECT_STREQ(d["type"].GetString(), "deferred");
  EXPECT_STREQ(d["at"].GetString(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(d["attempt"].GetUint(), 1u);
  EXPECT_STREQ(d["remote_host"].GetString(), "127.0.0.1:25");
  EXPECT_STREQ(d["reply"].GetString(), "451 4.7.1 try later");
  EXPECT_STREQ(d["tls"].GetString(), "");
}

TEST(EventLogTest, RotatesBySize) {
  const std::string path = FreshPath();
  EventLog::Options o;
  o.path = path;
  o.max_bytes = 1000;
  auto log = EventLog::Open(o, nullptr);
  ASSERT_TRUE(log.ok());
  (*log)->Append("acme", Events(20));  // about 220 bytes a line
  (*log)->Drain();
  const auto current = Lines(path);
  const auto rotated = Lines(path + ".1");
  EXPECT_FALSE(current.empty());
  EXPECT_FALSE(rotated.empty());
  EXPECT_LE(rotated.size() * 200, 1000u);
  EXPECT_EQ((*log)->logged(), 20);
  // Nothing beyond the one rotated file: a total of at most 2 files' worth.
  EXPECT_LE(current.size() + rotated.size(), 20u);
}

TEST(EventLogTest, FullQueueDropsAndCounts) {
  const std::string path = FreshPath();
  EventLog::Options o;
  o.path = path;
  o.max_queued_events = 5;
  auto log = EventLog::Open(o, nullptr);
  ASSERT_TRUE(log.ok());
  (*log)->Append("acme", Events(6));  // more than the queue holds at once
  (*log)->Drain();
  EXPECT_EQ((*log)->dropped(), 6);
  EXPECT_EQ((*log)->logged(), 0);
}

TEST(EventLogTest, UnwritablePathIsAnError) {
  EXPECT_FALSE(EventLog::Open({"/nonexistent-dir/x/events.jsonl"}, nullptr).ok());
}

}  // namespace
}  // namespace salvo::events
