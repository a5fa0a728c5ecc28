// The suppression routes, suppression at accept, and the one-click
// unsubscribe endpoint, against a real QueueStore in $TEST_TMPDIR, a
// ManualClock and a loop on its own thread (Run() must return 0).
#include <rapidjson/document.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "api/api.h"
#include "api/api_test_util.h"
#include "engine/hygiene/unsubscribe_token.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

constexpr char kSecret[] = "unsub-secret";

class SuppressionApiTest : public ApiFixture {
 protected:
  void SetUp() override {
    config_.api_keys["k1"] = "tenant1";
    config_.api_keys["k2"] = "tenant2";
    config_.max_request_bytes = 1 << 20;
    config_.max_message_bytes = 4096;
    config_.max_recipients_per_message = 5;
    StartApi("suppression_api", 8);
    sup_ = std::make_unique<storage::SuppressionStore>(store_.get());
    api_->SetUnsubscribeSecret(kSecret);
    StartLoop();
  }

  bool Suppressed(const std::string& tenant, const std::string& address,
                  storage::SuppressionEntry* m = nullptr) {
    auto hit = sup_->IsSuppressed(tenant, address, m);
    EXPECT_TRUE(hit.ok()) << hit.status();
    return hit.value_or(false);
  }

  static rapidjson::Document Parse(const std::string& body) {
    rapidjson::Document d;
    d.Parse(body.c_str());
    EXPECT_FALSE(d.HasParseError()) << body;
    return d;
  }

  std::unique_ptr<storage::SuppressionStore> sup_;
};

std::string Campaign(const std::string& recipients) {
  return absl::StrCat(
      R"({"from":"Shop <news@shop.example.com>","subject":"Hi",)",
      R"("html":"<p>x</p>","recipients":)", recipients, "}");
}

TEST_F(SuppressionApiTest, AddListRemove) {
  HttpResponse r = Call("POST", "/v1/suppressions",
                        R"({"entries":["Bob@Example.com","@spam.example"]})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, R"({"added":2})");
  r = Call("POST", "/v1/suppressions",
           R"({"entries":["bob@example.com","x.example"],"reason":"bounce"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, R"({"added":1})");
  EXPECT_TRUE(Suppressed("tenant1", "BOB@example.COM"));
  EXPECT_FALSE(Suppressed("tenant2", "bob@example.com"));

  // Page through with limit=2: 3 entries, 2 pages.
  std::set<std::string> seen;
  r = Call("GET", "/v1/suppressions", "", "k1", "limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document d = Parse(r.body);
  ASSERT_EQ(d["entries"].Size(), 2u) << r.body;
  for (const auto& e : d["entries"].GetArray()) {
    seen.insert(e["entry"].GetString());
    EXPECT_STREQ(e["created_at"].GetString(), "2023-11-14T22:13:20Z");
  }
  ASSERT_TRUE(d["next_cursor"].IsString()) << r.body;
  r = Call("GET", "/v1/suppressions", "", "k1",
           absl::StrCat("cursor=", d["next_cursor"].GetString(), "&limit=2"));
  ASSERT_EQ(r.status, 200) << r.body;
  d = Parse(r.body);
  ASSERT_EQ(d["entries"].Size(), 1u) << r.body;
  seen.insert(d["entries"][0]["entry"].GetString());
  EXPECT_TRUE(d["next_cursor"].IsNull());
  EXPECT_EQ(seen, (std::set<std::string>{"bob@example.com", "@spam.example",
                                         "@x.example"}));
  // Other tenants see nothing.
  r = Call("GET", "/v1/suppressions", "", "k2");
  EXPECT_EQ(r.body, R"({"entries":[],"next_cursor":null})");

  r = Call("DELETE", "/v1/suppressions/%40spam.example");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(Suppressed("tenant1", "a@spam.example"));
  r = Call("DELETE", "/v1/suppressions/@spam.example");
  EXPECT_EQ(r.status, 404) << r.body;
  r = Call("DELETE", "/v1/suppressions/BOB@example.com", "", "k2");
  EXPECT_EQ(r.status, 404) << r.body;  // another tenant's entry
  EXPECT_TRUE(Suppressed("tenant1", "bob@example.com"));
}

TEST_F(SuppressionApiTest, RejectsBadRequests) {
  EXPECT_EQ(Call("POST", "/v1/suppressions", R"({"entries":["a b@c.example"]})")
                .status, 400);
  EXPECT_EQ(Call("POST", "/v1/suppressions", R"({"entries":[]})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/suppressions",
                 R"({"entries":["a@b.example"],"reason":"whim"})").status,
            400);
  EXPECT_EQ(Call("POST", "/v1/suppressions", R"({"entries":["a@b.example"],"x":1})")
                .status, 400);
  EXPECT_EQ(Call("POST", "/v1/suppressions", "not json").status, 400);
  EXPECT_EQ(Call("GET", "/v1/suppressions", "", "k1", "limit=0").status, 400);
  EXPECT_EQ(Call("GET", "/v1/suppressions", "", "k1", "cursor=zz").status, 400);
  EXPECT_EQ(Call("DELETE", "/v1/suppressions/%4").status, 400);
  EXPECT_EQ(Call("POST", "/v1/suppressions", R"({"entries":["a@b.example"]})", "")
                .status, 401);
  HttpResponse r = Call("PUT", "/v1/suppressions", "{}");
  EXPECT_EQ(r.status, 405);
  ASSERT_FALSE(r.headers.empty());
  EXPECT_EQ(r.headers[0].second, "GET, POST");
  EXPECT_FALSE(Suppressed("tenant1", "a@b.example"));
}

TEST_F(SuppressionApiTest, SubmissionsSkipSuppressedRecipients) {
  ASSERT_EQ(Call("POST", "/v1/suppressions",
                 R"({"entries":["b@example.org","@blocked.example"]})")
                .status,
            201);
  const std::string body = Campaign(
      R"([{"email":"a@example.com"},{"email":"B@Example.ORG"},)"
      R"({"email":"c@blocked.example"},{"email":"d@example.net"}])");
  HttpResponse r = Call("POST", "/v1/campaigns", body);
  ASSERT_EQ(r.status, 201) << r.body;
  rapidjson::Document d = Parse(r.body);
  EXPECT_EQ(d["accepted"].GetInt(), 2) << r.body;
  ASSERT_TRUE(d.HasMember("suppressed")) << r.body;
  ASSERT_EQ(d["suppressed"].Size(), 2u);
  EXPECT_STREQ(d["suppressed"][0]["email"].GetString(), "B@Example.ORG");
  EXPECT_STREQ(d["suppressed"][0]["entry"].GetString(), "b@example.org");
  EXPECT_STREQ(d["suppressed"][1]["email"].GetString(), "c@blocked.example");
  EXPECT_STREQ(d["suppressed"][1]["entry"].GetString(), "@blocked.example");
  EXPECT_EQ(TotalQueued(), 2);
  uint64_t id = 0;
  ASSERT_TRUE(storage::HexToId(d["id"].GetString(), &id));
  auto counts = store_->GetCounts(id);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->accepted, 2);

  // Negative control: another tenant's identical campaign queues all four.
  r = Call("POST", "/v1/campaigns", body, "k2");
  ASSERT_EQ(r.status, 201) << r.body;
  d = Parse(r.body);
  EXPECT_EQ(d["accepted"].GetInt(), 4);
  EXPECT_FALSE(d.HasMember("suppressed"));
  EXPECT_EQ(TotalQueued(), 6);

  // Transactional messages too; all suppressed still answers 201.
  r = Call("POST", "/v1/messages",
           R"({"from":"a@shop.example.com","subject":"s","text":"t",)"
           R"("to":["x@blocked.example"]})");
  ASSERT_EQ(r.status, 201) << r.body;
  d = Parse(r.body);
  EXPECT_EQ(d["accepted"].GetInt(), 0);
  EXPECT_EQ(d["suppressed"].Size(), 1u);
  EXPECT_EQ(TotalQueued(), 6);
}

TEST_F(SuppressionApiTest, OneClickUnsubscribe) {
  auto token = hygiene::SignUnsubscribeToken(
      kSecret, {"tenant1", 77, "Reader@News.example"});
  ASSERT_TRUE(token.ok());
  const std::string path = absl::StrCat("/v1/unsubscribe/", *token);

  // GET: a confirmation form, no state change.
  HttpResponse r = Call("GET", path, "", "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StartsWith(r.content_type, "text/html"));
  EXPECT_NE(r.body.find("<form method=\"post\">"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("name=\"List-Unsubscribe\" value=\"One-Click\""),
            std::string::npos);
  EXPECT_FALSE(Suppressed("tenant1", "reader@news.example"));

  // Tampered token: rejected, nothing written.
  std::string bad = *token;
  bad[12] = bad[12] == 'A' ? 'B' : 'A';
  r = Call("POST", absl::StrCat("/v1/unsubscribe/", bad), "List-Unsubscribe=One-Click", "");
  EXPECT_EQ(r.status, 400) << r.body;
  auto other = hygiene::SignUnsubscribeToken(
      "other-secret", {"tenant1", 77, "Reader@News.example"});
  r = Call("POST", absl::StrCat("/v1/unsubscribe/", *other),
           "List-Unsubscribe=One-Click", "");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_FALSE(Suppressed("tenant1", "reader@news.example"));

  // POST (RFC 8058 body, no API key): the address is suppressed.
  r = Call("POST", path, "List-Unsubscribe=One-Click", "");
  ASSERT_EQ(r.status, 200) << r.body;
  storage::SuppressionEntry m;
  ASSERT_TRUE(Suppressed("tenant1", "reader@news.example", &m));
  EXPECT_EQ(m.entry, "Reader@news.example");
  EXPECT_EQ(m.reason, storage::SuppressionReason::kUnsubscribe);
  EXPECT_FALSE(Suppressed("tenant2", "reader@news.example"));
  // Idempotent.
  EXPECT_EQ(Call("POST", path, "List-Unsubscribe=One-Click", "").status, 200);

  // Disabled (no secret): 404 even for a valid token.
  api_->SetUnsubscribeSecret("");
  EXPECT_EQ(Call("POST", path, "List-Unsubscribe=One-Click", "").status, 404);
  EXPECT_EQ(Call("GET", path, "", "").status, 404);
}

}  // namespace
}  // namespace salvo::api
