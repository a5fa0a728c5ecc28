// The API end to end over real sockets: a real Loop on its own thread, a real
// QueueStore in $TEST_TMPDIR, HttpServer on 127.0.0.1:0, requests from
// /usr/bin/curl and from a blocking socket client.
#include <rapidjson/document.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "api/api.h"
#include "api/api_test_util.h"
#include "api/http_server.h"
#include "api/test_client.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

class ApiHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    dir_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/api_http_", ++n);
    storage::QueueStore::Options o;
    o.path = dir_;
    o.num_shards = 8;
    auto store = storage::QueueStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    config_.api_keys["k1"] = "tenant1";
    config_.max_request_bytes = 32 << 20;
    api_ = std::make_unique<Api>(config_, store_.get(), &hooks_, &registry_,
                                 clock_);
    HttpServer::Limits limits;
    limits.max_body_bytes = config_.max_request_bytes;
    auto server = HttpServer::Listen(
        loop_, "127.0.0.1", 0,
        [this](HttpRequest&& req, Responder respond) {
          api_->Handle(loop_, std::move(req), std::move(respond));
        },
        limits);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    port_ = server_->port();
    thread_ = std::thread([this] { run_result_ = loop_.Run(); });
  }

  void TearDown() override {
    if (!thread_.joinable()) return;
    loop_.Post([this] { server_.reset(); });
    loop_.Stop();
    thread_.join();
    EXPECT_EQ(run_result_, 0);
    store_.reset();
  }

  // POSTs `body` with curl; returns the status code and fills *out.
  int Curl(const std::string& path, const std::string& body, std::string* out,
           const std::string& key = "k1") {
    const std::string in_file = dir_ + "_body.json";
    const std::string out_file = dir_ + "_out.json";
    std::ofstream(in_file) << body;
    std::string cmd = absl::StrCat(
        "/usr/bin/curl -s -o ", out_file, " -w '%{http_code}' ",
        key.empty() ? "" : absl::StrCat("-H 'Authorization: Bearer ", key, "' "),
        "-H 'Content-Type: application/json' --data-binary @", in_file,
        " http://127.0.0.1:", port_, path);
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return -1;
    char code[8] = {0};
    size_t n = fread(code, 1, sizeof(code) - 1, p);
    pclose(p);
    std::ifstream f(out_file);
    out->assign(std::istreambuf_iterator<char>(f), {});
    return n > 0 ? std::atoi(code) : -1;
  }

  std::string dir_;
  config::Config config_;
  core::ManualClock clock_;
  metrics::Registry registry_;
  FakeHooks hooks_;
  std::unique_ptr<storage::QueueStore> store_;
  std::unique_ptr<Api> api_;
  core::Loop loop_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
  int run_result_ = -1;
};

TEST_F(ApiHttpTest, CampaignOfThousandRecipientsWithCurl) {
  std::string out;
  EXPECT_EQ(Curl("/v1/campaigns", CampaignJson(3), &out, ""), 401);
  EXPECT_NE(out.find("unauthenticated"), std::string::npos) << out;

  ASSERT_EQ(Curl("/v1/campaigns", CampaignJson(1000), &out), 201) << out;
  rapidjson::Document d;
  d.Parse(out.c_str());
  ASSERT_TRUE(d.IsObject()) << out;
  EXPECT_EQ(d["accepted"].GetInt(), 1000);
  const std::string id = d["id"].GetString();

  TestClient c(port_);
  c.Send(TestClient::Request("GET", "/v1/campaigns/" + id, "",
                             "X-Api-Key: k1\r\n"));
  ClientResponse r = c.Read();
  ASSERT_EQ(r.status, 200) << r.body;
  d.Parse(r.body.c_str());
  EXPECT_EQ(d["counts"]["accepted"].GetInt(), 1000);
  EXPECT_EQ(d["counts"]["queued"].GetInt(), 1000);

  std::set<uint16_t> want, got;
  for (int i = 0; i < 7; ++i) {
    want.insert(store_->ShardForDomain(absl::StrCat("d", i, ".example.com")));
  }
  for (const auto& [shard, lane, due] : hooks_.calls()) {
    EXPECT_EQ(lane, storage::BulkLaneFor("tenant1"));
    EXPECT_EQ(due, clock_.NowMillis());
    EXPECT_TRUE(got.insert(shard).second);
  }
  EXPECT_EQ(got, want);
}

TEST_F(ApiHttpTest, KeepAliveWithPipelinedRequests) {
  TestClient c(port_);
  // A submission (answered after the commit) then a health check (answered
  // at once): the answers still come in request order on one connection.
  ASSERT_TRUE(c.Send(absl::StrCat(
      TestClient::Request("POST", "/v1/campaigns", CampaignJson(10),
                          "Authorization: Bearer k1\r\n"),
      TestClient::Request("GET", "/healthz", ""))));
  ClientResponse a = c.Read();
  ClientResponse b = c.Read();
  EXPECT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.body, "{\"status\":\"ok\"}");
  // Still open: a third request on the same connection.
  c.Send(TestClient::Request("GET", "/metrics", ""));
  ClientResponse m = c.Read();
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("salvo_http_requests_total"), std::string::npos);
}

TEST_F(ApiHttpTest, OversizedBodyGets413) {
  TestClient c(port_);
  c.Send(absl::StrCat("POST /v1/campaigns HTTP/1.1\r\nHost: t\r\n"
                      "Authorization: Bearer k1\r\nContent-Length: ",
                      config_.max_request_bytes + 1, "\r\n\r\n{"));
  ClientResponse r = c.Read();
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("\"error\""), std::string::npos);
  EXPECT_TRUE(c.ClosedByPeer());
  int64_t queued = 0;
  for (int s = 0; s < store_->num_shards(); ++s) {
    queued += store_->CountQueued(s).value_or(-1);
  }
  EXPECT_EQ(queued, 0);
}

TEST_F(ApiHttpTest, MalformedHttpGets400) {
  TestClient c(port_);
  c.Send("GARBAGE / HTTP/9\r\n\r\n");
  ClientResponse r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(c.ClosedByPeer());
}

// Not a speed assertion: prints how long a 100,000-recipient campaign takes
// from the first byte sent to the durable 201.
TEST_F(ApiHttpTest, HundredThousandRecipients) {
  const std::string body = CampaignJson(100000, 500);
  TestClient c(port_);
  const absl::Time start = absl::Now();
  c.Send(TestClient::Request("POST", "/v1/campaigns", body,
                             "Authorization: Bearer k1\r\n"));
  ClientResponse r = c.Read();
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":100000"), std::string::npos);
  std::printf("100000-recipient campaign (%zu bytes): 201 after %s\n",
              body.size(), absl::FormatDuration(took).c_str());
}

}  // namespace
}  // namespace salvo::api
