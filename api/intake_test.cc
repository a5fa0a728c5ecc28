// Issue 3 intake features end to end over real sockets (HttpServer on
// 127.0.0.1:0, a real Loop on its own thread, a real QueueStore in
// $TEST_TMPDIR, a ManualClock): send_at / expires_at scheduling, the
// Idempotency-Key replay and conflict rules, and streamed recipient uploads
// (NDJSON and CSV, chunked durable commits, bad lines, other tenants).
#include <rapidjson/document.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/api.h"
#include "api/api_test_util.h"
#include "api/http_server.h"
#include "api/test_client.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

// 2026-11-24T09:00:00Z; the clock starts in 2023.
constexpr int64_t kSendAtMs = 1795510800000;

class IntakeTest : public ApiFixture {
 protected:
  void SetUp() override {
    config_.api_keys["k1"] = "tenant1";
    config_.api_keys["k2"] = "tenant2";
    config_.max_request_bytes = 8 << 20;
    StartApi("intake", 4);
    api_->SetUploadChunkRecipients(3);
    auto server = HttpServer::Listen(
        loop_, "127.0.0.1", 0, [this](HttpRequest&& req, Responder respond) {
          api_->Handle(loop_, std::move(req), std::move(respond));
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    StartLoop();
  }

  void TearDown() override {
    loop_.Post([this] { server_.reset(); });
    ApiFixture::TearDown();
  }

  ClientResponse Post(const std::string& path, const std::string& body,
                      std::string headers = "", const std::string& key = "k1") {
    TestClient c(server_->port());
    EXPECT_TRUE(c.connected());
    absl::StrAppend(&headers, "Authorization: Bearer ", key, "\r\n");
    EXPECT_TRUE(c.Send(TestClient::Request("POST", path, body, headers)));
    return c.Read();
  }
  ClientResponse Get(const std::string& path) {
    TestClient c(server_->port());
    EXPECT_TRUE(c.Send(TestClient::Request("GET", path, "",
                                           "Authorization: Bearer k1\r\n")));
    return c.Read();
  }

  // Bulk entries due at or before now_ms, over all shards and buckets.
  std::vector<storage::QueueEntry> Due(int64_t now_ms) {
    std::vector<storage::QueueEntry> all, page;
    for (int s = 0; s < store_->num_shards(); ++s) {
      for (int lane = 1; lane < storage::kNumLanes; ++lane) {
        std::string cursor;
        EXPECT_TRUE(store_->ScanDue(s, static_cast<storage::Lane>(lane),
                                    now_ms, 1000, &cursor, &page)
                        .ok());
        all.insert(all.end(), page.begin(), page.end());
      }
    }
    return all;
  }
  static std::string IdOf(const ClientResponse& r) {
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    if (!d.IsObject() || !d.HasMember("id")) return "";
    return d["id"].GetString();
  }
  static std::string FieldOf(const ClientResponse& r) {
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    if (!d.IsObject() || !d.HasMember("error") ||
        !d["error"].HasMember("field")) {
      return "";
    }
    return d["error"]["field"].GetString();
  }
  // A stream campaign; returns its id.
  std::string CreateStream(const std::string& key = "k1") {
    ClientResponse r = Post(
        "/v1/campaigns",
        "{\"from\":\"news@shop.example.com\",\"subject\":\"Hi {{name}}\","
        "\"text\":\"Hello {{name}}\",\"stream\":true}",
        "", key);
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_TRUE(absl::StrContains(r.body, "\"accepted\":0")) << r.body;
    return IdOf(r);
  }

  std::unique_ptr<HttpServer> server_;
};

std::string WithFields(std::string campaign, const std::string& fields) {
  // Inserts `fields` (",\"k\":v...") before the closing brace.
  campaign.insert(campaign.size() - 1, fields);
  return campaign;
}

TEST_F(IntakeTest, SendAtMakesEntriesDueThen) {
  ClientResponse r = Post(
      "/v1/campaigns",
      WithFields(CampaignJson(5), ",\"send_at\":\"2026-11-24T09:00:00Z\","
                                  "\"expires_at\":\"2026-11-25T09:00:00Z\""));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(TotalQueued(), 5);
  EXPECT_TRUE(Due(clock_.NowMillis()).empty());
  EXPECT_TRUE(Due(kSendAtMs - 1).empty());
  std::vector<storage::QueueEntry> due = Due(kSendAtMs);
  ASSERT_EQ(due.size(), 5u);
  for (const auto& e : due) {
    EXPECT_EQ(e.key.due_ms, kSendAtMs);
    EXPECT_EQ(e.rec.expires_ms(), kSendAtMs + 24 * 3600 * 1000);
  }
  for (const auto& call : hooks_.calls()) EXPECT_EQ(std::get<2>(call), kSendAtMs);

  ClientResponse st = Get("/v1/campaigns/" + IdOf(r));
  ASSERT_EQ(st.status, 200);
  EXPECT_TRUE(absl::StrContains(st.body, "\"send_at\":\"2026-11-24T09:00:00Z\""))
      << st.body;
  EXPECT_TRUE(
      absl::StrContains(st.body, "\"expires_at\":\"2026-11-25T09:00:00Z\""));
}

TEST_F(IntakeTest, SendAtInThePastIsNowAndExpiresInCountsFromDue) {
  ClientResponse r = Post(
      "/v1/messages",
      "{\"from\":\"a@shop.example.com\",\"subject\":\"s\",\"text\":\"t\","
      "\"to\":[\"x@example.org\"],\"send_at\":\"2001-01-01T00:00:00+02:00\","
      "\"expires_in\":\"1h\"}");
  ASSERT_EQ(r.status, 201) << r.body;
  std::vector<storage::QueueEntry> page;
  int64_t found = 0;
  for (int s = 0; s < store_->num_shards(); ++s) {
    std::string cursor;
    ASSERT_TRUE(store_->ScanDue(s, storage::Lane::kTransactional,
                                clock_.NowMillis(), 10, &cursor, &page)
                    .ok());
    for (const auto& e : page) {
      EXPECT_EQ(e.key.due_ms, clock_.NowMillis());
      EXPECT_EQ(e.rec.expires_ms(), clock_.NowMillis() + 3600 * 1000);
      ++found;
    }
  }
  EXPECT_EQ(found, 1);
}

TEST_F(IntakeTest, BadScheduleFieldsAreRejected) {
  struct Case {
    std::string fields;
    std::string field;
  } cases[] = {
      {",\"send_at\":\"tomorrow\"", "send_at"},
      {",\"send_at\":\"2026-11-24 09:00:00\"", "send_at"},
      {",\"send_at\":1795510800", "send_at"},
      {",\"expires_at\":\"2026-11-24T09:00:00Z\",\"expires_in\":\"1h\"",
       "expires_in"},
      {",\"expires_in\":\"1h\",\"expires_at\":\"2026-11-24T09:00:00Z\"",
       "expires_at"},
      {",\"send_at\":\"2026-11-24T09:00:00Z\","
       "\"expires_at\":\"2026-11-24T08:00:00Z\"",
       "expires_at"},
      {",\"expires_at\":\"2001-01-01T00:00:00Z\"", "expires_at"},
  };
  for (const Case& c : cases) {
    ClientResponse r = Post("/v1/campaigns", WithFields(CampaignJson(2), c.fields));
    EXPECT_EQ(r.status, 400) << c.fields << " " << r.body;
    EXPECT_EQ(FieldOf(r), c.field) << c.fields << " " << r.body;
  }
  EXPECT_EQ(TotalQueued(), 0);
}

TEST_F(IntakeTest, IdempotentReplayReturnsTheOriginalAndQueuesNothing) {
  const std::string body = CampaignJson(4);
  ClientResponse first =
      Post("/v1/campaigns", body, "Idempotency-Key: order-77\r\n");
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(TotalQueued(), 4);
  const size_t hook_calls = hooks_.calls().size();

  ClientResponse again =
      Post("/v1/campaigns", body, "Idempotency-Key: order-77\r\n");
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(again.Header("idempotent-replayed"), "true");
  EXPECT_EQ(TotalQueued(), 4);
  EXPECT_EQ(hooks_.calls().size(), hook_calls);

  // Same key, other body: 422 naming the header; nothing queued.
  ClientResponse other =
      Post("/v1/campaigns", CampaignJson(5), "Idempotency-Key: order-77\r\n");
  EXPECT_EQ(other.status, 422) << other.body;
  EXPECT_EQ(FieldOf(other), "Idempotency-Key");
  EXPECT_EQ(TotalQueued(), 4);

  // Same key and body on another path: a different request.
  ClientResponse path = Post(
      "/v1/messages",
      "{\"from\":\"a@shop.example.com\",\"subject\":\"s\",\"text\":\"t\","
      "\"to\":[\"x@example.org\"]}",
      "Idempotency-Key: order-77\r\n");
  EXPECT_EQ(path.status, 422);

  // Keys are per tenant.
  ClientResponse t2 =
      Post("/v1/campaigns", body, "Idempotency-Key: order-77\r\n", "k2");
  EXPECT_EQ(t2.status, 201);
  EXPECT_NE(IdOf(t2), IdOf(first));
  EXPECT_EQ(TotalQueued(), 8);

  // After the window the key is free again.
  clock_.Advance(absl::Hours(24));
  ClientResponse later =
      Post("/v1/campaigns", CampaignJson(5), "Idempotency-Key: order-77\r\n");
  EXPECT_EQ(later.status, 201) << later.body;
  EXPECT_EQ(TotalQueued(), 13);

  // A bad key is a 400 naming the header.
  ClientResponse bad = Post("/v1/campaigns", body,
                            absl::StrCat("Idempotency-Key: ",
                                         std::string(300, 'k'), "\r\n"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(FieldOf(bad), "Idempotency-Key");
}

TEST_F(IntakeTest, FailedRequestIsNotRecorded) {
  ClientResponse bad = Post("/v1/campaigns", "{\"from\":1}",
                            "Idempotency-Key: k-1\r\n");
  EXPECT_EQ(bad.status, 400);
  ClientResponse good =
      Post("/v1/campaigns", CampaignJson(2), "Idempotency-Key: k-1\r\n");
  EXPECT_EQ(good.status, 201) << good.body;
}

TEST_F(IntakeTest, ConcurrentDuplicatesQueueOnce) {
  // Two connections send the same keyed request back to back; whichever
  // comes second is answered 409 (in progress) or with the replay, never
  // with a second submission.
  const std::string body = CampaignJson(3);
  const std::string req = TestClient::Request(
      "POST", "/v1/campaigns", body,
      "Authorization: Bearer k1\r\nIdempotency-Key: dup\r\n");
  TestClient a(server_->port()), b(server_->port());
  ASSERT_TRUE(a.Send(req));
  ASSERT_TRUE(b.Send(req));
  ClientResponse ra = a.Read(), rb = b.Read();
  int created = 0;
  for (const ClientResponse* r : {&ra, &rb}) {
    EXPECT_TRUE(r->status == 201 || r->status == 409) << r->body;
    if (r->status == 201) ++created;
    if (r->status == 409) EXPECT_EQ(FieldOf(*r), "Idempotency-Key");
  }
  EXPECT_GE(created, 1);
  if (created == 2) {
    EXPECT_EQ(ra.body, rb.body);
  }
  EXPECT_EQ(TotalQueued(), 3);
}

TEST_F(IntakeTest, StreamCampaignTakesNdjsonInDurableChunks) {
  const std::string id = CreateStream();
  ASSERT_FALSE(id.empty());
  std::string ndjson;
  for (int i = 0; i < 7; ++i) {
    absl::StrAppend(&ndjson, "{\"email\":\"u", i, "@d", i % 3,
                    ".example.com\",\"data\":{\"name\":\"N", i, "\"}}\n");
  }
  ndjson += "\n";  // trailing blank line
  ClientResponse r = Post("/v1/campaigns/" + id + "/recipients", ndjson,
                          "Content-Type: application/x-ndjson\r\n"
                          "Idempotency-Key: up-1\r\n");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "\"chunks\":3")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "\"accepted\":7")) << r.body;
  EXPECT_EQ(TotalQueued(), 7);
  EXPECT_EQ(Due(clock_.NowMillis()).size(), 7u);
  ClientResponse st = Get("/v1/campaigns/" + id);
  EXPECT_TRUE(absl::StrContains(st.body, "\"accepted\":7")) << st.body;

  ClientResponse again = Post("/v1/campaigns/" + id + "/recipients", ndjson,
                              "Content-Type: application/x-ndjson\r\n"
                              "Idempotency-Key: up-1\r\n");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, r.body);
  EXPECT_EQ(TotalQueued(), 7);
}

TEST_F(IntakeTest, NdjsonBadLineNamesItAndQueuesNothingOfItsChunk) {
  const std::string id = CreateStream();
  // Chunks of 3: lines 1-3 commit, line 5 is bad (no name field), so the
  // second chunk (lines 4-6) is not written.
  std::string ndjson;
  for (int i = 1; i <= 6; ++i) {
    if (i == 5) {
      ndjson += "{\"email\":\"u5@example.com\"}\n";
    } else {
      absl::StrAppend(&ndjson, "{\"email\":\"u", i,
                      "@example.com\",\"data\":{\"name\":\"x\"}}\n");
    }
  }
  ClientResponse r = Post("/v1/campaigns/" + id + "/recipients", ndjson,
                          "Content-Type: application/x-ndjson\r\n");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(FieldOf(r), "line 5");
  EXPECT_TRUE(absl::StrContains(r.body, "3 recipients in 1 earlier chunks"))
      << r.body;
  EXPECT_EQ(TotalQueued(), 3);

  ClientResponse bad_json =
      Post("/v1/campaigns/" + id + "/recipients",
           "{\"email\":\"a@example.com\",\"data\":{\"name\":\"x\"}}\n{oops\n",
           "Content-Type: application/x-ndjson\r\n");
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_EQ(FieldOf(bad_json), "line 2");
  EXPECT_EQ(TotalQueued(), 3);
}

TEST_F(IntakeTest, CsvUploadWithQuotingAndABadRow) {
  const std::string id = CreateStream();
  ClientResponse ok = Post("/v1/campaigns/" + id + "/recipients",
                           "email,name\r\n"
                           "a@example.com,\"Smith, Ann\"\r\n"
                           "b@example.com,\"say \"\"hi\"\"\"\r\n",
                           "Content-Type: text/csv; charset=utf-8\r\n");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(absl::StrContains(ok.body, "\"accepted\":2"));
  std::vector<storage::QueueEntry> due = Due(clock_.NowMillis());
  ASSERT_EQ(due.size(), 2u);
  std::set<std::string> names;
  for (const auto& e : due) names.insert(e.rec.fields(0).value());
  EXPECT_TRUE(names.count("Smith, Ann"));
  EXPECT_TRUE(names.count("say \"hi\""));

  ClientResponse bad = Post("/v1/campaigns/" + id + "/recipients",
                            "email,name\nc@example.com,C\nnot-an-address,D\n",
                            "Content-Type: text/csv\r\n");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(FieldOf(bad), "row 3");
  EXPECT_EQ(TotalQueued(), 2);

  // A subject field with a line break (the subject uses {{name}}).
  ClientResponse header = Post("/v1/campaigns/" + id + "/recipients",
                               "email,name\nc@example.com,\"a\nb\"\n",
                               "Content-Type: text/csv\r\n");
  EXPECT_EQ(header.status, 400) << header.body;
  EXPECT_EQ(FieldOf(header), "row 2");
  EXPECT_EQ(TotalQueued(), 2);
}

TEST_F(IntakeTest, UploadIsOnlyForTheOwnerAndStreamCampaigns) {
  const std::string id = CreateStream();
  const std::string line = "{\"email\":\"a@example.com\",\"data\":{\"name\":\"x\"}}\n";
  ClientResponse other = Post("/v1/campaigns/" + id + "/recipients", line,
                              "Content-Type: application/x-ndjson\r\n", "k2");
  EXPECT_EQ(other.status, 404) << other.body;
  ClientResponse nobody = Post("/v1/campaigns/00000000000000ff/recipients",
                               line, "Content-Type: application/x-ndjson\r\n");
  EXPECT_EQ(nobody.status, 404);
  ClientResponse type = Post("/v1/campaigns/" + id + "/recipients", line,
                             "Content-Type: application/json\r\n");
  EXPECT_EQ(type.status, 415);
  ClientResponse plain = Post("/v1/campaigns", CampaignJson(1));
  ASSERT_EQ(plain.status, 201);
  ClientResponse closed =
      Post("/v1/campaigns/" + IdOf(plain) + "/recipients", line,
           "Content-Type: application/x-ndjson\r\n");
  EXPECT_EQ(closed.status, 409);
  EXPECT_EQ(TotalQueued(), 1);
  // A stream campaign with recipients inline is refused.
  ClientResponse inline_rcpts =
      Post("/v1/campaigns", WithFields(CampaignJson(1), ",\"stream\":true"));
  EXPECT_EQ(inline_rcpts.status, 400);
  EXPECT_EQ(FieldOf(inline_rcpts), "recipients");
}

}  // namespace
}  // namespace salvo::api
