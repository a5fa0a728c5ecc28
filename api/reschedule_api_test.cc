// POST /v1/campaigns/{id}/reschedule and /v1/messages/{id}/reschedule
// against a real QueueStore, a ManualClock and FakeHooks (which record the
// requested moves and answer a set count): validation names the field and
// moves nothing, other tenants get 404, cancelled or finished content 409,
// the Content record shows the new schedule, a paused campaign stays paused.
#include <rapidjson/document.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "api/api.h"
#include "api/api_test_util.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

class RescheduleApiTest : public ApiFixture {
 protected:
  void SetUp() override {
    config_.api_keys["k1"] = "tenant1";
    config_.api_keys["k2"] = "tenant2";
    config_.expiry = absl::Hours(72);
    StartApi("reschedule_api_test", 8);
    StartLoop();
  }

  // RFC 3339 of now + `delta_s`.
  std::string At(int64_t delta_s) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                            absl::FromUnixMillis(clock_.NowMillis()) +
                                absl::Seconds(delta_s),
                            absl::UTCTimeZone());
  }

  std::string Submit(const std::string& extra = "") {
    HttpResponse r = Call(
        "POST", "/v1/campaigns",
        absl::StrCat(R"({"from":"news@shop.example.com","subject":"Hi",)",
                     R"("text":"Hello",)", extra,
                     R"("recipients":[{"email":"a@example.com"},)",
                     R"({"email":"b@example.org"}]})"));
    EXPECT_EQ(r.status, 201) << r.body;
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    return d.IsObject() && d.HasMember("id") ? d["id"].GetString() : "";
  }

  // Asserts `status` with error.field == `field` and no move requested.
  void ExpectError(const std::string& path, const std::string& body,
                   int status, const std::string& field,
                   const std::string& key = "k1") {
    SCOPED_TRACE(path + " " + body);
    const size_t before = hooks_.reschedules().size();
    HttpResponse r = Call("POST", path, body, key);
    EXPECT_EQ(r.status, status) << r.body;
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    ASSERT_TRUE(d.IsObject() && d.HasMember("error")) << r.body;
    const auto& e = d["error"];
    EXPECT_EQ(std::string(e.HasMember("field") ? e["field"].GetString() : ""),
              field)
        << r.body;
    EXPECT_EQ(hooks_.reschedules().size(), before);
  }

  rapidjson::Document Get(const std::string& id) {
    HttpResponse r = Call("GET", "/v1/campaigns/" + id);
    EXPECT_EQ(r.status, 200) << r.body;
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    return d;
  }
};

TEST_F(RescheduleApiTest, MovesToSendAtAndStoresIt) {
  const std::string id = Submit(R"("send_at":")" + At(3600) + R"(",)");
  ASSERT_FALSE(id.empty());
  hooks_.SetRescheduleAnswer(2);

  // To 2 h ahead, with a new expiry window.
  HttpResponse r = Call("POST", "/v1/campaigns/" + id + "/reschedule",
                        R"({"send_at":")" + At(7200) +
                            R"(","expires_in":"5h"})");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  EXPECT_EQ(d["rescheduled"].GetInt(), 2);
  EXPECT_EQ(std::string(d["state"].GetString()), "active");
  EXPECT_EQ(std::string(d["send_at"].GetString()), At(7200));
  EXPECT_EQ(d["counts"]["accepted"].GetInt(), 2);
  auto calls = hooks_.reschedules();
  ASSERT_EQ(calls.size(), 1u);
  uint64_t content_id = 0;
  ASSERT_TRUE(storage::HexToId(id, &content_id));
  EXPECT_EQ(calls[0].first, content_id);
  EXPECT_EQ(calls[0].second.due_ms, clock_.NowMillis() + 7200 * 1000);
  EXPECT_EQ(calls[0].second.expires_at_ms, 0);
  EXPECT_EQ(calls[0].second.expires_after_ms, 5 * 3600 * 1000);
  auto content = store_->GetContent(content_id);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(content->expires_after_ms(), 5 * 3600 * 1000);

  // To now (empty body): send_at cleared, the default expiry kept.
  r = Call("POST", "/v1/campaigns/" + id + "/reschedule", "");
  ASSERT_EQ(r.status, 200) << r.body;
  d = Get(id);
  EXPECT_FALSE(d.HasMember("send_at")) << r.body;
  calls = hooks_.reschedules();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].second.due_ms, clock_.NowMillis());
  EXPECT_EQ(calls[1].second.expires_after_ms, 5 * 3600 * 1000);

  // A past send_at is now; an absolute expiry.
  r = Call("POST", "/v1/campaigns/" + id + "/reschedule",
           R"({"send_at":")" + At(-60) + R"(","expires_at":")" + At(600) +
               R"("})");
  ASSERT_EQ(r.status, 200) << r.body;
  calls = hooks_.reschedules();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[2].second.due_ms, clock_.NowMillis());
  EXPECT_EQ(calls[2].second.expires_at_ms, clock_.NowMillis() + 600 * 1000);
  storage::Recipient rec;
  rec.set_expires_ms(1);
  EXPECT_EQ(calls[2].second.ExpiresFor(rec), clock_.NowMillis() + 600 * 1000);

  // Now the campaign's expires_at binds: a send_at after it needs a new one.
  ExpectError("/v1/campaigns/" + id + "/reschedule",
              R"({"send_at":")" + At(700) + R"("})", 400, "send_at");
}

TEST_F(RescheduleApiTest, BadBodiesNameTheField) {
  const std::string id = Submit();
  const std::string path = "/v1/campaigns/" + id + "/reschedule";
  ExpectError(path, R"({"send_at":"tomorrow"})", 400, "send_at");
  ExpectError(path, R"({"send_at":"2026-13-01T00:00:00Z"})", 400, "send_at");
  ExpectError(path, R"({"send_at":17})", 400, "send_at");
  ExpectError(path, R"({"expires_in":"-1h"})", 400, "expires_in");
  ExpectError(path,
              R"({"expires_in":"1h","expires_at":")" + At(7200) + R"("})",
              400, "expires_in");
  ExpectError(path,
              R"({"send_at":")" + At(7200) + R"(","expires_at":")" +
                  At(3600) + R"("})",
              400, "expires_at");
  ExpectError(path, R"({"sendat":"x"})", 400, "sendat");
  ExpectError(path, "[1]", 400, "");
  ExpectError(path, "{", 400, "");
  EXPECT_EQ(Call("GET", path).status, 405);
}

TEST_F(RescheduleApiTest, OtherTenantsAndUnknownIdsAre404) {
  const std::string id = Submit();
  ExpectError("/v1/campaigns/" + id + "/reschedule", "{}", 404, "id", "k2");
  ExpectError("/v1/campaigns/00000000000000ff/reschedule", "{}", 404, "id");
  ExpectError("/v1/campaigns/zz/reschedule", "{}", 404, "id");
  // A campaign is not a transactional message.
  ExpectError("/v1/messages/" + id + "/reschedule", "{}", 404, "id");
  EXPECT_EQ(Call("POST", "/v1/campaigns/a/b/reschedule", "{}").status, 404);
}

TEST_F(RescheduleApiTest, CancelledOrFinishedIs409PausedStaysPaused) {
  const std::string paused = Submit();
  ASSERT_EQ(Call("POST", "/v1/campaigns/" + paused + "/pause").status, 200);
  HttpResponse r = Call("POST", "/v1/campaigns/" + paused + "/reschedule",
                        R"({"send_at":")" + At(3600) + R"("})");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  EXPECT_EQ(std::string(d["state"].GetString()), "paused");

  const std::string cancelled = Submit();
  ASSERT_EQ(Call("POST", "/v1/campaigns/" + cancelled + "/cancel").status,
            200);
  ExpectError("/v1/campaigns/" + cancelled + "/reschedule", "{}", 409,
              "state");

  // Finished: every recipient delivered.
  const std::string done = Submit();
  uint64_t content_id = 0;
  ASSERT_TRUE(storage::HexToId(done, &content_id));
  storage::StateBatch batch;
  for (int s = 0; s < store_->num_shards(); ++s) {
    for (int l = 0; l < storage::kNumLanes; ++l) {
      std::string cursor;
      std::vector<storage::QueueEntry> entries;
      ASSERT_TRUE(store_
                      ->ScanDue(s, static_cast<storage::Lane>(l),
                                clock_.NowMillis(), 100, &cursor, &entries)
                      .ok());
      for (const auto& e : entries) {
        if (e.rec.content_id() == content_id) {
          batch.Delivered(e.key, e.rec, storage::Outcome());
        }
      }
    }
  }
  ASSERT_EQ(batch.size(), 2u);
  ASSERT_TRUE(store_->CommitNow(std::move(batch), true).ok());
  ExpectError("/v1/campaigns/" + done + "/reschedule", "{}", 409, "state");
}

TEST_F(RescheduleApiTest, TransactionalMessageAndHookFailure) {
  HttpResponse r = Call(
      "POST", "/v1/messages",
      R"({"from":"app@example.com","to":["bob@example.com"],"subject":"S",)"
      R"("text":"T","send_at":")" + At(600) + R"("})");
  ASSERT_EQ(r.status, 201) << r.body;
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  const std::string id = d["id"].GetString();
  hooks_.SetRescheduleAnswer(1);
  r = Call("POST", "/v1/messages/" + id + "/reschedule", "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  d.Parse(r.body.c_str());
  EXPECT_EQ(d["rescheduled"].GetInt(), 1);

  // The moves failed to commit: 503, the schedule record stays written.
  hooks_.SetRescheduleAnswer(absl::UnavailableError("disk full"));
  r = Call("POST", "/v1/messages/" + id + "/reschedule", "{}");
  EXPECT_EQ(r.status, 503) << r.body;
}

}  // namespace
}  // namespace salvo::api
