// GET /v1/events and the recipient ids in submission answers, against a real
// QueueStore in $TEST_TMPDIR, a ManualClock, a real EventLog file and a loop
// on its own thread (Run() must return 0): paging with the cursor, filters,
// 404 for another tenant's content, 400 naming the bad parameter.
#include <rapidjson/document.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/api.h"
#include "api/api_test_util.h"
#include "engine/events/event_log.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

rapidjson::Document Parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  EXPECT_FALSE(d.HasParseError()) << body;
  return d;
}

class EventsApiTest : public ApiFixture {
 protected:
  void SetUp() override {
    config_.api_keys["k1"] = "tenant1";
    config_.api_keys["k2"] = "tenant2";
    config_.max_request_bytes = 1 << 20;
    StartApi("events_api", 4);
    log_path_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/events_api.jsonl");
    std::remove(log_path_.c_str());
    auto log = events::EventLog::Open({log_path_}, &registry_);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    api_->SetEventLog(log_.get());
    StartLoop();
  }
  void TearDown() override {
    ApiFixture::TearDown();  // drains the store's commits first
    log_.reset();
  }

  // The queue entry of recipient `id`.
  storage::QueueEntry Find(uint64_t id) {
    for (int s = 0; s < store_->num_shards(); ++s) {
      for (int l = 0; l < storage::kNumLanes; ++l) {
        const auto lane = static_cast<storage::Lane>(l);
        std::vector<storage::QueueEntry> out;
        std::string cursor;
        EXPECT_TRUE(store_
                        ->ScanDue(s, lane, std::numeric_limits<int64_t>::max(),
                                  1000, &cursor, &out)
                        .ok());
        for (auto& e : out) {
          if (e.key.id == id) return e;
        }
      }
    }
    ADD_FAILURE() << "no entry " << id;
    return {};
  }

  HttpResponse Events(const std::string& query, const std::string& key = "k1") {
    return Call("GET", "/v1/events", "", key, query);
  }

  std::string log_path_;
  std::unique_ptr<events::EventLog> log_;
};

TEST_F(EventsApiTest, PagesFiltersAndGuardsEvents) {
  ASSERT_EQ(Call("POST", "/v1/suppressions", R"({"entries":["s@d.example"]})")
                .status,
            201);
  HttpResponse r = Call(
      "POST", "/v1/campaigns",
      R"({"from":"a@shop.example","subject":"s","text":"t","recipients":[)"
      R"({"email":"ok@d.example"},{"email":"s@d.example"},)"
      R"({"email":"bad@d.example"},{"email":"later@d.example"}]})");
  ASSERT_EQ(r.status, 201) << r.body;
  rapidjson::Document d = Parse(r.body);
  const std::string campaign = d["id"].GetString();
  ASSERT_EQ(d["recipients"].Size(), 3u) << r.body;
  EXPECT_STREQ(d["recipients"][0]["email"].GetString(), "ok@d.example");
  EXPECT_STREQ(d["recipients"][2]["email"].GetString(), "later@d.example");
  uint64_t ok_id = 0, bad_id = 0;
  ASSERT_TRUE(storage::HexToId(d["recipients"][0]["id"].GetString(), &ok_id));
  ASSERT_TRUE(storage::HexToId(d["recipients"][1]["id"].GetString(), &bad_id));

  // Outcomes as DeliveryCore records them: ok deferred then delivered,
  // bad bounced.
  {
    storage::QueueEntry ok = Find(ok_id), bad = Find(bad_id);
    storage::StateBatch b;
    storage::Outcome o;
    o.set_at_ms(1000);
    o.set_attempts(1);
    o.set_remote_host("127.0.0.1:25");
    o.set_reply("451 4.7.1 later");
    const storage::QueueKey moved = b.Defer(ok.key, ok.rec, 5000, o);
    o.set_reply("550 5.1.1 no such user");
    b.Bounced(bad.key, bad.rec, o);
    ASSERT_TRUE(store_->CommitNow(std::move(b), false).ok());
    storage::Recipient leased = ok.rec;
    leased.set_attempts(1);
    storage::StateBatch b2;
    o.set_attempts(2);
    o.set_reply("250 2.0.0 ok");
    b2.Delivered(moved, leased, o);
    ASSERT_TRUE(store_->CommitNow(std::move(b2), false).ok());
  }

  r = Events("campaign=" + campaign);
  ASSERT_EQ(r.status, 200) << r.body;
  d = Parse(r.body);
  ASSERT_EQ(d["events"].Size(), 7u) << r.body;
  EXPECT_TRUE(d["next"].IsNull());
  std::vector<std::string> all;
  for (const auto& e : d["events"].GetArray()) {
    all.push_back(absl::StrCat(e["email"].GetString(), ":",
                               e["type"].GetString(), ":",
                               e["attempt"].GetUint()));
    EXPECT_STREQ(e["campaign"].GetString(), campaign.c_str());
  }
  // Per recipient in order; recipients in id (= submission) order.
  EXPECT_EQ(all, (std::vector<std::string>{
                     "ok@d.example:accepted:0", "ok@d.example:deferred:1",
                     "ok@d.example:delivered:2", "s@d.example:suppressed:0",
                     "bad@d.example:accepted:0", "bad@d.example:bounced:1",
                     "later@d.example:accepted:0"}));
  const auto& deferred = d["events"][1];
  EXPECT_STREQ(deferred["remote_host"].GetString(), "127.0.0.1:25");
  EXPECT_STREQ(deferred["reply"].GetString(), "451 4.7.1 later");
  EXPECT_STREQ(deferred["at"].GetString(), "1970-01-01T00:00:01.000Z");

  // Paging: 2 at a time, the cursor goes through all 7 once.
  std::vector<std::string> paged;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    r = Events(absl::StrCat("campaign=", campaign, "&limit=2",
                            after.empty() ? "" : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.body;
    d = Parse(r.body);
    EXPECT_LE(d["events"].Size(), 2u);
    for (const auto& e : d["events"].GetArray()) {
      paged.push_back(absl::StrCat(e["email"].GetString(), ":",
                                   e["type"].GetString(), ":",
                                   e["attempt"].GetUint()));
    }
    if (d["next"].IsNull()) break;
    after = d["next"].GetString();
  }
  EXPECT_EQ(paged, all);

  // Filters.
  d = Parse(Events("campaign=" + campaign + "&type=delivered,bounced").body);
  ASSERT_EQ(d["events"].Size(), 2u);
  EXPECT_STREQ(d["events"][0]["type"].GetString(), "delivered");
  d = Parse(Events("campaign=" + campaign + "&email=OK%40d.example").body);
  EXPECT_EQ(d["events"].Size(), 3u);
  d = Parse(Events("campaign=" + campaign + "&recipient=" +
                   storage::IdToHex(bad_id))
                .body);
  ASSERT_EQ(d["events"].Size(), 2u);
  EXPECT_STREQ(d["events"][1]["reply"].GetString(), "550 5.1.1 no such user");

  // Another tenant's content, or none, is 404.
  EXPECT_EQ(Events("campaign=" + campaign, "k2").status, 404);
  EXPECT_EQ(Events("campaign=00000000000000ff").status, 404);

  // Bad parameters: 400 naming the parameter.
  for (const auto& [query, field] :
       std::vector<std::pair<std::string, std::string>>{
           {"", "campaign"},
           {"campaign=xyz", "campaign"},
           {"campaign=" + campaign + "&recipient=12", "recipient"},
           {"campaign=" + campaign + "&type=sent", "type"},
           {"campaign=" + campaign + "&limit=0", "limit"},
           {"campaign=" + campaign + "&limit=1001", "limit"},
           {"campaign=" + campaign + "&after=zz", "after"},
           {"campaign=" + campaign + "&email=%zz", "email"}}) {
    r = Events(query);
    EXPECT_EQ(r.status, 400) << query;
    d = Parse(r.body);
    EXPECT_EQ(std::string(d["error"]["field"].GetString()), field) << query;
  }
  EXPECT_EQ(Call("POST", "/v1/events").status, 405);

  // The submission's events reached the JSON-lines log after its commit.
  log_->Drain();
  std::ifstream in(log_path_);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);  // 3 accepted + 1 suppressed
  d = Parse(lines[1]);
  EXPECT_STREQ(d["tenant"].GetString(), "tenant1");
  EXPECT_STREQ(d["email"].GetString(), "s@d.example");
  EXPECT_STREQ(d["type"].GetString(), "suppressed");
}

TEST_F(EventsApiTest, MessagesListRecipientIdsAndLargeCampaignsDoNot) {
  HttpResponse r = Call(
      "POST", "/v1/messages",
      R"({"from":"a@shop.example","subject":"s","text":"t",)"
      R"("to":["x@d.example","y@e.example"]})");
  ASSERT_EQ(r.status, 201) << r.body;
  rapidjson::Document d = Parse(r.body);
  ASSERT_EQ(d["recipients"].Size(), 2u);
  const std::string id = d["id"].GetString();
  const std::string y_id = d["recipients"][1]["id"].GetString();
  d = Parse(Events("campaign=" + id + "&recipient=" + y_id).body);
  ASSERT_EQ(d["events"].Size(), 1u);
  EXPECT_STREQ(d["events"][0]["email"].GetString(), "y@e.example");
  EXPECT_STREQ(d["events"][0]["type"].GetString(), "accepted");

  r = Call("POST", "/v1/campaigns",
           CampaignJson(static_cast<int>(Api::kMaxListedRecipients) + 1));
  ASSERT_EQ(r.status, 201) << r.body.substr(0, 200);
  d = Parse(r.body);
  EXPECT_FALSE(d.HasMember("recipients"));
  r = Call("POST", "/v1/campaigns",
           CampaignJson(static_cast<int>(Api::kMaxListedRecipients)));
  d = Parse(r.body);
  EXPECT_EQ(d["recipients"].Size(), Api::kMaxListedRecipients);
}

}  // namespace
}  // namespace salvo::api
