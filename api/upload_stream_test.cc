// Streamed recipient uploads over real sockets: HttpServer with the Api's
// stream route on 127.0.0.1:0, a real QueueStore in $TEST_TMPDIR, bodies sent
// with curl (-T -: chunked, Expect: 100-continue) and with a raw chunked
// client. Bodies are far over max_body_bytes; a bad line answers 400 with
// the committed count; a small commit window bounds what is held in memory.
#include <rapidjson/document.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "api/api.h"
#include "api/api_test_util.h"
#include "api/http_server.h"
#include "api/test_client.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

constexpr int64_t kMaxBody = 64 << 10;

class UploadStreamTest : public ApiFixture {
 protected:
  void Start(size_t chunk, int window) {
    config_.api_keys["k1"] = "tenant1";
    config_.max_request_bytes = kMaxBody;
    StartApi("upload_stream", 8);
    api_->SetUploadChunkRecipients(chunk);
    api_->SetUploadWindow(window);
    HttpServer::Limits limits;
    limits.max_body_bytes = kMaxBody;
    auto server = HttpServer::Listen(
        loop_, "127.0.0.1", 0,
        [this](HttpRequest&& req, Responder respond) {
          api_->Handle(loop_, std::move(req), std::move(respond));
        },
        limits);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->SetStreamRoute(api_->UploadStreamRoute(loop_));
    port_ = server_->port();
    StartLoop();
    HttpResponse r = Call("POST", "/v1/campaigns",
                          "{\"from\":\"news@shop.example.com\",\"subject\":"
                          "\"Hi {{name}}\",\"text\":\"Hello {{name}}\","
                          "\"stream\":true}");
    ASSERT_EQ(r.status, 201) << r.body;
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    id_ = d["id"].GetString();
    storage::HexToId(id_, &content_id_);
  }

  void TearDown() override {
    absl::Notification closed;
    loop_.Post([this, &closed] {
      server_.reset();
      closed.Notify();
    });
    closed.WaitForNotification();
    ApiFixture::TearDown();
  }

  int64_t Accepted() {
    auto c = store_->GetCounts(content_id_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->accepted : -1;
  }

  static std::string Ndjson(int from, int to) {
    std::string s;
    for (int i = from; i < to; ++i) {
      absl::StrAppend(&s, "{\"email\":\"user", i, "@d", i % 7,
                      ".example.com\",\"data\":{\"name\":\"N", i, "\"}}\n");
    }
    return s;
  }

  // Sends `body` as HTTP/1.1 chunked in pieces of `piece` bytes.
  static std::string Chunked(absl::string_view body, size_t piece) {
    std::string out;
    for (size_t i = 0; i < body.size(); i += piece) {
      absl::string_view p = body.substr(i, piece);
      absl::StrAppend(&out, absl::Hex(p.size()), "\r\n", p, "\r\n");
    }
    out += "0\r\n\r\n";
    return out;
  }

  std::string Head(absl::string_view type) {
    return absl::StrCat("POST /v1/campaigns/", id_,
                        "/recipients HTTP/1.1\r\nHost: t\r\n"
                        "Authorization: Bearer k1\r\nContent-Type: ",
                        type, "\r\nTransfer-Encoding: chunked\r\n\r\n");
  }

  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::string id_;
  uint64_t content_id_ = 0;
};

TEST_F(UploadStreamTest, CurlChunkedUploadFarOverMaxBody) {
  Start(/*chunk=*/1000, /*window=*/2);
  const std::string file =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/upload.ndjson");
  const std::string body = Ndjson(0, 50000);
  ASSERT_GT(body.size(), static_cast<size_t>(10 * kMaxBody));
  std::ofstream(file) << body;
  // -T - reads stdin: chunked transfer encoding and Expect: 100-continue.
  const std::string cmd = absl::StrCat(
      "/usr/bin/curl -sS -X POST -T - -H 'Authorization: Bearer k1' "
      "-H 'Content-Type: application/x-ndjson' -w ' %{http_code}' "
      "http://127.0.0.1:", port_, "/v1/campaigns/", id_, "/recipients < ",
      file);
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  EXPECT_TRUE(absl::EndsWith(out, " 200")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\"chunks\":50,\"accepted\":50000"))
      << out;
  EXPECT_TRUE(absl::StrContains(out, "\"lines\":50000")) << out;
  EXPECT_EQ(Accepted(), 50000);
  EXPECT_EQ(TotalQueued(), 50000);
  // Other routes keep the limit.
  HttpServer::Limits l;
  TestClient c(port_);
  c.Send(absl::StrCat("POST /v1/campaigns HTTP/1.1\r\nContent-Length: ",
                      kMaxBody + 1, "\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 413);
}

TEST_F(UploadStreamTest, CsvRecordsSpanningPiecesAndLastLineWithoutBreak) {
  Start(/*chunk=*/3, /*window=*/2);
  const std::string csv =
      "email,name,note\r\n"
      "a@d1.example.com,\"Ann, \"\"the\"\"\",\"two\nlines\"\r\n"
      "\n"
      "b@d2.example.com,Bob,\n"
      "c@d3.example.com,\"C\",x\n"
      "d@d4.example.com,Dee,\"\"\n"
      "e@d5.example.com,Eve,y";
  for (size_t piece : {1, 2, 5, 7}) {
    TestClient c(port_);
    ASSERT_TRUE(c.Send(Head("text/csv") + Chunked(csv, piece)));
    ClientResponse r = c.Read();
    ASSERT_EQ(r.status, 200) << "piece " << piece << ": " << r.body;
    EXPECT_TRUE(absl::StrContains(r.body, "\"chunks\":2,\"accepted\":5"))
        << r.body;
    EXPECT_TRUE(absl::StrContains(r.body, "\"lines\":7")) << r.body;
  }
  EXPECT_EQ(TotalQueued(), 20);
  // A bad row before anything was committed: resume from row 2.
  TestClient c(port_);
  ASSERT_TRUE(c.Send(Head("text/csv") +
                     Chunked("email,name,note\nnope,A,\n", 4)));
  ClientResponse r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(absl::StrContains(r.body, "\"field\":\"row 2\"")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "resume from row 2 after the header"))
      << r.body;
}

TEST_F(UploadStreamTest, BadLineAnswers400WithCommittedCountAndKeepsItsChunkOut) {
  Start(/*chunk=*/1000, /*window=*/2);
  std::string body = Ndjson(0, 2500);
  body += "{\"email\":\"not an address\",\"data\":{\"name\":\"x\"}}\n";
  body += Ndjson(2501, 6000);  // read and dropped
  TestClient c(port_);
  ASSERT_TRUE(c.Send(Head("application/x-ndjson") + Chunked(body, 4000)));
  ClientResponse r = c.Read();
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "line 2501")) << r.body;
  EXPECT_TRUE(absl::StrContains(
      r.body, "2000 recipients in 2 chunks were committed; resume from line 2001"))
      << r.body;
  EXPECT_EQ(Accepted(), 2000);
  EXPECT_EQ(TotalQueued(), 2000);
  // The connection stays usable: resume from line 2001 (the fixed body).
  std::string rest = Ndjson(2000, 6000);
  ASSERT_TRUE(c.Send(Head("application/x-ndjson") + Chunked(rest, 65536)));
  r = c.Read();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Accepted(), 6000);
}

TEST_F(UploadStreamTest, SlowCommitsStopReadingSoMemoryStaysBounded) {
  // Window 1, small chunks: the loop parses faster than each WAL sync, so
  // without read backpressure commits and buffered bytes would pile up.
  Start(/*chunk=*/200, /*window=*/1);
  const std::string body = Ndjson(0, 100000);  // ~6 MB
  TestClient c(port_);
  std::thread sender([&] {
    EXPECT_TRUE(c.Send(Head("application/x-ndjson") + Chunked(body, 1 << 16)));
  });
  ClientResponse r = c.Read();
  sender.join();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Accepted(), 100000);
  const Api::UploadMarks m = api_->upload_marks();
  EXPECT_EQ(m.max_outstanding, 1);
  EXPECT_LT(m.max_buffered_bytes, 3 * (64 << 10)) << m.max_buffered_bytes;
}

TEST_F(UploadStreamTest, ContentLengthBodyOverMaxBodyWith100Continue) {
  Start(/*chunk=*/1000, /*window=*/2);
  const std::string body = Ndjson(0, 5000);
  ASSERT_GT(body.size(), static_cast<size_t>(kMaxBody));
  TestClient c(port_);
  ASSERT_TRUE(c.Send(absl::StrCat(
      "POST /v1/campaigns/", id_,
      "/recipients HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer k1\r\n"
      "Content-Type: application/x-ndjson\r\nExpect: 100-continue\r\n"
      "Content-Length: ",
      body.size(), "\r\n\r\n")));
  ASSERT_TRUE(c.Send(body));  // Read() skips the interim 100 Continue
  ClientResponse r = c.Read();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "\"chunks\":5,\"accepted\":5000"))
      << r.body;
  EXPECT_EQ(Accepted(), 5000);
}

TEST_F(UploadStreamTest, RouteErrorsAnswerAndDropTheBody) {
  Start(/*chunk=*/1000, /*window=*/2);
  const std::string body = Chunked(Ndjson(0, 3000), 5000);
  TestClient c(port_);
  ASSERT_TRUE(c.Send(absl::StrCat("POST /v1/campaigns/", id_,
                                  "/recipients HTTP/1.1\r\nContent-Type: "
                                  "application/x-ndjson\r\nTransfer-Encoding:"
                                  " chunked\r\n\r\n",
                                  body)));
  EXPECT_EQ(c.Read().status, 401);
  ASSERT_TRUE(c.Send(Head("text/plain") + body));
  EXPECT_EQ(c.Read().status, 415);
  ASSERT_TRUE(c.Send(absl::StrCat(
      "POST /v1/campaigns/00000000000000ff/recipients HTTP/1.1\r\n"
      "Authorization: Bearer k1\r\nContent-Type: application/x-ndjson\r\n"
      "Transfer-Encoding: chunked\r\n\r\n",
      body)));
  EXPECT_EQ(c.Read().status, 404);
  EXPECT_EQ(TotalQueued(), 0);
}

}  // namespace
}  // namespace salvo::api
