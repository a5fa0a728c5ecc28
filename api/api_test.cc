// Api routes and validation against a real QueueStore in $TEST_TMPDIR, a
// ManualClock and a fake DeliveryHooks. Every rejected request is checked to
// have queued nothing. The loop runs on its own thread; requests are posted
// to it and the test waits for the answer.
#include "api/api.h"

#include <rapidjson/document.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "api/api_test_util.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

class ApiTest : public ApiFixture {
 protected:
  void SetUp() override {
    config_.api_keys["k1"] = "tenant1";
    config_.api_keys["k2"] = "tenant2";
    config_.max_request_bytes = 1 << 20;
    config_.max_message_bytes = 4096;
    config_.max_recipients_per_message = 3;
    StartApi("api_test", 8);
    StartLoop();
  }

  // Asserts a rejection with `status` naming `field`, and that nothing was
  // queued.
  void ExpectRejected(const std::string& path, const std::string& body,
                      int status, const std::string& field) {
    SCOPED_TRACE(body.substr(0, 300));
    HttpResponse r = Call("POST", path, body);
    EXPECT_EQ(r.status, status) << r.body;
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    ASSERT_TRUE(d.IsObject() && d.HasMember("error")) << r.body;
    const auto& e = d["error"];
    std::string got = e.HasMember("field") ? e["field"].GetString() : "";
    EXPECT_EQ(got, field) << r.body;
    EXPECT_TRUE(e.HasMember("message"));
    EXPECT_EQ(TotalQueued(), 0);
  }
};

// A valid campaign with one field replaced: "$FIELD" -> `replacement`.
std::string Campaign(const std::string& extra = "",
                     const std::string& recipients =
                         R"([{"email":"a@example.com","data":{"name":"A"}},)"
                         R"({"email":"b@example.org","data":{"name":"B"}}])") {
  return absl::StrCat(
      R"({"from":"Shop <news@shop.example.com>","subject":"Hi {{name}}",)",
      R"("html":"<p>{{name}}</p>",)", extra, R"("recipients":)", recipients,
      "}");
}

TEST_F(ApiTest, CampaignIsQueuedAndReported) {
  const std::string body = Campaign(
      R"("name":"spring","text":"Hi {{name}}","headers":{"X-Campaign":"c1"},"tags":["a"],"expires_in":"1h",)",
      R"([{"email":"a@example.com","data":{"name":"A"}},)"
      R"({"email":"b@example.org","data":{"name":"B"}},)"
      R"({"email":"c@example.com","data":{"name":"C","extra":"x"}}])");
  HttpResponse r = Call("POST", "/v1/campaigns", body);
  ASSERT_EQ(r.status, 201) << r.body;
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  ASSERT_TRUE(d.IsObject());
  EXPECT_EQ(d["accepted"].GetInt(), 3);
  const std::string id = d["id"].GetString();
  ASSERT_EQ(id.size(), 16u);
  EXPECT_EQ(TotalQueued(), 3);

  // One OnEnqueued per distinct shard, lane bulk, due now.
  std::set<uint16_t> want = {store_->ShardForDomain("example.com"),
                             store_->ShardForDomain("example.org")};
  std::set<uint16_t> got;
  for (const auto& [shard, lane, due] : hooks_.calls()) {
    EXPECT_EQ(lane, storage::BulkLaneFor("tenant1"));
    EXPECT_EQ(due, clock_.NowMillis());
    EXPECT_TRUE(got.insert(shard).second) << "shard reported twice";
  }
  EXPECT_EQ(got, want);

  // The stored entries carry address, merge data and expiry.
  std::string cursor;
  std::vector<storage::QueueEntry> entries;
  ASSERT_TRUE(store_
                  ->ScanDue(store_->ShardForDomain("example.org"),
                            storage::BulkLaneFor("tenant1"), clock_.NowMillis(), 10,
                            &cursor, &entries)
                  .ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].rec.address(), "b@example.org");
  ASSERT_EQ(entries[0].rec.fields_size(), 1);
  EXPECT_EQ(entries[0].rec.fields(0).value(), "B");
  EXPECT_EQ(entries[0].rec.expires_ms(), clock_.NowMillis() + 3600 * 1000);
  auto content = store_->GetContent(entries[0].rec.content_id());
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(content->tenant(), "tenant1");
  EXPECT_EQ(content->envelope_from(), "news@shop.example.com");
  EXPECT_EQ(content->from(), "Shop <news@shop.example.com>");
  EXPECT_EQ(content->headers_size(), 1);

  hooks_.SetInFlight(entries[0].rec.content_id(), 1);
  HttpResponse s = Call("GET", "/v1/campaigns/" + id, "");
  ASSERT_EQ(s.status, 200) << s.body;
  d.Parse(s.body.c_str());
  EXPECT_EQ(std::string(d["name"].GetString()), "spring");
  EXPECT_EQ(std::string(d["created_at"].GetString()), "2023-11-14T22:13:20Z");
  EXPECT_EQ(d["counts"]["accepted"].GetInt(), 3);
  EXPECT_EQ(d["counts"]["in_flight"].GetInt(), 1);
  EXPECT_EQ(d["counts"]["queued"].GetInt(), 2);
  EXPECT_EQ(d["counts"]["delivered"].GetInt(), 0);

  // Another tenant does not see it; unknown ids are 404.
  EXPECT_EQ(Call("GET", "/v1/campaigns/" + id, "", "k2").status, 404);
  EXPECT_EQ(Call("GET", "/v1/campaigns/00000000000000ff", "").status, 404);
  EXPECT_EQ(Call("GET", "/v1/campaigns/zz", "").status, 404);

  HttpResponse m = Call("GET", "/metrics", "", "");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_TRUE(absl::StrContains(m.body, "salvo_messages_accepted_total{"))
      << m.body;
  EXPECT_TRUE(absl::StrContains(m.body, "tenant=\"tenant1\""));
  EXPECT_TRUE(absl::StrContains(m.body, "route=\"/v1/campaigns/{id}\""));
}

TEST_F(ApiTest, TransactionalMessages) {
  HttpResponse r = Call("POST", "/v1/messages",
                        R"({"from":"a@example.com","to":["x@example.net"],)"
                        R"("subject":"Reset","text":"Your code"})");
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_EQ(hooks_.calls().size(), 1u);
  EXPECT_EQ(std::get<0>(hooks_.calls()[0]),
            store_->ShardForDomain("example.net"));
  EXPECT_EQ(std::get<1>(hooks_.calls()[0]), storage::Lane::kTransactional);
  r = Call("POST", "/v1/messages",
           R"({"from":"a@example.com","envelope_from":"bounce@example.com",)"
           R"("recipients":[{"email":"y@example.net","data":{}}],)"
           R"("raw":"Subject: hi\r\n\r\nbody\r\n"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(TotalQueued(), 2);
}

TEST_F(ApiTest, AuthRoutesAndMethods) {
  EXPECT_EQ(Call("POST", "/v1/campaigns", Campaign(), "").status, 401);
  EXPECT_EQ(Call("POST", "/v1/campaigns", Campaign(), "nope").status, 401);
  {
    HttpRequest req;
    req.method = "POST";
    req.path = "/v1/campaigns";
    req.body = Campaign();
    req.headers.emplace_back("x-api-key", "k2");
    absl::Notification done;
    int status = 0;
    loop_.Post([&, req = std::move(req)]() mutable {
      api_->Handle(loop_, std::move(req), [&](HttpResponse r) {
        status = r.status;
        done.Notify();
      });
    });
    done.WaitForNotification();
    EXPECT_EQ(status, 201);
  }
  EXPECT_EQ(Call("GET", "/healthz", "", "").body, "{\"status\":\"ok\"}");
  EXPECT_EQ(Call("GET", "/nope", "").status, 404);
  EXPECT_EQ(Call("GET", "/v1/campaigns", "").status, 405);
  EXPECT_EQ(Call("POST", "/healthz", "", "").status, 405);
}

TEST_F(ApiTest, MalformedJson) {
  HttpResponse r = Call("POST", "/v1/campaigns", "{\"from\": ");
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(absl::StrContains(r.body, "byte 9")) << r.body;
  ExpectRejected("/v1/campaigns", "[1,2]", 400, "");
  ExpectRejected("/v1/campaigns", Campaign() + "x", 400, "");
}

TEST_F(ApiTest, WrongTypes) {
  ExpectRejected("/v1/campaigns", Campaign(R"("text":5,)"), 400, "text");
  ExpectRejected("/v1/campaigns", Campaign(R"("tags":["a",1],)"), 400, "tags[1]");
  ExpectRejected("/v1/campaigns", Campaign(R"("headers":["a"],)"), 400, "headers");
  ExpectRejected("/v1/campaigns", Campaign(R"("headers":{"X-A":1},)"), 400,
                 "headers.X-A");
  ExpectRejected("/v1/campaigns", Campaign("", R"({"email":"a@example.com"})"),
                 400, "recipients");
  ExpectRejected("/v1/campaigns", Campaign("", R"(["a@example.com"])"), 400,
                 "recipients[0]");
  ExpectRejected("/v1/campaigns",
                 Campaign("", R"([{"email":"a@example.com","data":{"name":1}}])"),
                 400, "recipients[0].data.name");
  ExpectRejected("/v1/campaigns",
                 Campaign("", R"([{"email":"a@example.com","data":"x"}])"), 400,
                 "recipients[0].data");
  ExpectRejected("/v1/campaigns", Campaign(R"("expires_in":"soon",)"), 400,
                 "expires_in");
}

TEST_F(ApiTest, UnknownFields) {
  ExpectRejected("/v1/campaigns", Campaign(R"("subjekt":"x",)"), 400, "subjekt");
  ExpectRejected(
      "/v1/campaigns",
      Campaign("", R"([{"email":"a@example.com","data":{"name":"A"}},)"
                   R"({"email":"b@example.com","datax":{}}])"),
      400, "recipients[1].datax");
  ExpectRejected("/v1/messages",
                 R"({"from":"a@example.com","to":["b@example.com"],)"
                 R"("subject":"s","text":"t","name":"campaign-only"})",
                 400, "name");
}

TEST_F(ApiTest, InvalidAddresses) {
  for (const char* bad : {"plain", "a@localhost", "a..b@example.com",
                          "a b@example.com", "a@exa mple.com",
                          "a\\r\\n@example.com", "a\\u0000@example.com"}) {
    ExpectRejected(
        "/v1/campaigns",
        Campaign("", absl::StrCat(
                         R"([{"email":"ok@example.com","data":{"name":"A"}},)",
                         R"({"email":")", bad, R"(","data":{"name":"B"}}])")),
        400, "recipients[1].email");
  }
  ExpectRejected("/v1/campaigns",
                 absl::StrReplaceAll(Campaign(), {{"news@shop", "news@@shop"}}),
                 400, "from");
  ExpectRejected("/v1/campaigns", Campaign(R"("envelope_from":"x",)"), 400,
                 "envelope_from");
  ExpectRejected("/v1/campaigns", Campaign(R"("reply_to":"x@y",)"), 400,
                 "reply_to");
  ExpectRejected("/v1/messages",
                 R"({"from":"a@example.com","to":["b@example.com","bad"],)"
                 R"("subject":"s","text":"t"})",
                 400, "to[1]");
}

TEST_F(ApiTest, LineBreaksInHeaderValues) {
  ExpectRejected("/v1/campaigns",
                 absl::StrReplaceAll(Campaign(), {{"Hi {{name}}", "Hi\\r\\nBcc: x"}}),
                 400, "subject");
  ExpectRejected("/v1/campaigns",
                 absl::StrReplaceAll(Campaign(), {{"Shop <", "Shop\\n <"}}), 400,
                 "from");
  ExpectRejected("/v1/campaigns", Campaign(R"("headers":{"X-A":"a\nb"},)"), 400,
                 "headers.X-A");
  // Merge data used in the subject may not break lines; in the body it may.
  ExpectRejected(
      "/v1/campaigns",
      Campaign("", R"([{"email":"a@example.com","data":{"name":"A\r\nBcc: x"}}])"),
      400, "recipients[0].data.name");
  const std::string body_only = absl::StrCat(
      R"({"from":"a@example.com","subject":"Hi","html":"{{bio}}",)",
      R"("recipients":[{"email":"a@example.com","data":{"bio":"l1\nl2"}}]})");
  EXPECT_EQ(Call("POST", "/v1/campaigns", body_only).status, 201);
}

TEST_F(ApiTest, TemplateErrorsAndMissingMergeData) {
  ExpectRejected("/v1/campaigns",
                 absl::StrReplaceAll(Campaign(), {{"<p>{{name}}</p>", "{{ oops"}}),
                 400, "html");
  ExpectRejected(
      "/v1/campaigns",
      Campaign("", R"([{"email":"a@example.com","data":{"name":"A"}},)"
                   R"({"email":"b@example.com","data":{"nam":"B"}}])"),
      400, "recipients[1].data.name");
  ExpectRejected("/v1/campaigns",
                 Campaign("", R"([{"email":"a@example.com"}])"), 400,
                 "recipients[0].data.name");
}

TEST_F(ApiTest, MissingFields) {
  ExpectRejected("/v1/campaigns",
                 R"({"subject":"s","text":"t","recipients":[{"email":"a@example.com"}]})",
                 400, "from");
  ExpectRejected("/v1/campaigns",
                 R"({"from":"a@example.com","text":"t","recipients":[{"email":"a@example.com"}]})",
                 400, "subject");
  ExpectRejected("/v1/campaigns",
                 R"({"from":"a@example.com","subject":"s","recipients":[{"email":"a@example.com"}]})",
                 400, "html");
  ExpectRejected("/v1/campaigns", Campaign("", "[]"), 400, "recipients");
  ExpectRejected("/v1/campaigns",
                 R"({"from":"a@example.com","subject":"s","text":"t"})", 400,
                 "recipients");
  ExpectRejected("/v1/messages",
                 R"({"from":"a@example.com","to":["b@example.com"],)"
                 R"("recipients":[{"email":"c@example.com"}],"subject":"s","text":"t"})",
                 400, "recipients");
  ExpectRejected("/v1/messages",
                 R"({"from":"a@example.com","to":["b@example.com"],)"
                 R"("subject":"s","raw":"Subject: x\r\n\r\nb"})",
                 400, "raw");
  ExpectRejected("/v1/messages",
                 R"({"from":"a@example.com","to":["a@example.com","b@example.com",)"
                 R"("c@example.com","d@example.com"],"subject":"s","text":"t"})",
                 400, "to");
}

TEST_F(ApiTest, HeaderNames) {
  ExpectRejected("/v1/campaigns", Campaign(R"("headers":{"Bad Name":"v"},)"),
                 400, "headers.Bad Name");
  for (const char* reserved :
       {"From", "to", "DATE", "Message-ID", "MIME-Version", "content-type",
        "Content-Transfer-Encoding"}) {
    ExpectRejected("/v1/campaigns",
                   Campaign(absl::StrCat(R"("headers":{")", reserved,
                                         R"(":"v"},)")),
                   400, absl::StrCat("headers.", reserved));
  }
}

TEST_F(ApiTest, SizeLimits) {
  const std::string big(5000, 'x');  // over max_message_bytes = 4096
  ExpectRejected("/v1/campaigns", Campaign(absl::StrCat(R"("text":")", big, "\",")),
                 413, "text");
  ExpectRejected("/v1/messages",
                 absl::StrCat(R"({"from":"a@example.com","to":["b@example.com"],)",
                              R"("raw":")", big, "\"}"),
                 413, "raw");
  // Over max_request_bytes (1 MiB): rejected before parsing.
  ExpectRejected("/v1/campaigns", std::string((1 << 20) + 1, ' '), 413, "");
}

}  // namespace
}  // namespace salvo::api
