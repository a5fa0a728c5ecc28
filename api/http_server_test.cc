// HttpServer over real sockets on 127.0.0.1 port 0: keep-alive, pipelining
// order, limits (413, 431), malformed input (400), Connection: close, idle
// timeout, SO_REUSEPORT, answers after the client left. The loop runs on its
// own thread; the test thread is the client.
#include "api/http_server.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "api/test_client.h"
#include "gtest/gtest.h"

namespace salvo::api {
namespace {

class HttpServerTest : public ::testing::Test {
 protected:
  // Handler: "/slow" is answered only when "/release" arrives (after it);
  // everything else echoes method, path, query and body at once.
  void StartServer(HttpServer::Limits limits = HttpServer::Limits()) {
    auto server = HttpServer::Listen(
        loop_, "127.0.0.1", 0,
        [this](HttpRequest&& req, Responder respond) {
          ++requests_;
          if (req.path == "/slow") {
            held_.push_back(std::move(respond));
            return;
          }
          HttpResponse r;
          r.content_type = "text/plain";
          const std::string* x = req.Header("x-test");
          r.body = absl::StrCat(req.method, " ", req.path, "?", req.query, " ",
                                req.body, x ? absl::StrCat(" x=", *x) : "");
          respond(std::move(r));
          if (req.path == "/release") {
            for (auto& h : held_) {
              HttpResponse slow;
              slow.body = "slow";
              h(std::move(slow));
            }
            held_.clear();
          }
          if (req.path == "/hold-forever") {
            // nothing more
          }
        },
        limits);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    thread_ = std::thread([this] { run_result_ = loop_.Run(); });
  }

  void TearDown() override {
    if (!thread_.joinable()) return;
    loop_.Post([this] {
      held_.clear();
      server_.reset();  // Close()s
    });
    loop_.Stop();
    thread_.join();
    EXPECT_EQ(run_result_, 0);
  }

  core::Loop loop_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
  int run_result_ = -1;
  int requests_ = 0;  // loop thread
  std::vector<Responder> held_;
};

TEST_F(HttpServerTest, KeepAliveServesSeveralRequests) {
  StartServer();
  TestClient c(port_);
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.Send(TestClient::Request(
        "POST", absl::StrCat("/a/", i, "?q=", i), "hello", "X-Test: Yes\r\n")));
    ClientResponse r = c.Read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, absl::StrCat("POST /a/", i, "?q=", i, " hello x=Yes"));
    EXPECT_EQ(r.Header("content-type"), "text/plain");
  }
}

TEST_F(HttpServerTest, PipelinedAnswersComeInRequestOrder) {
  StartServer();
  TestClient c(port_);
  // One send: a held request, then one that releases it. The second is
  // answered first by the handler but must be written second.
  ASSERT_TRUE(c.Send(absl::StrCat(TestClient::Request("GET", "/slow", ""),
                                  TestClient::Request("GET", "/release", "x"),
                                  TestClient::Request("GET", "/third", ""))));
  ClientResponse a = c.Read(), b = c.Read(), d = c.Read();
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "slow");
  EXPECT_EQ(a.Header("content-type"), "application/json");
  EXPECT_EQ(b.body, "GET /release? x");
  EXPECT_EQ(d.body, "GET /third? ");
}

TEST_F(HttpServerTest, ManyPipelinedRequestsBeyondTheWindow) {
  HttpServer::Limits limits;
  limits.max_pipelined = 4;
  StartServer(limits);
  TestClient c(port_);
  std::string all;
  for (int i = 0; i < 50; ++i) {
    absl::StrAppend(&all, TestClient::Request("GET", absl::StrCat("/n", i), ""));
  }
  ASSERT_TRUE(c.Send(all));
  for (int i = 0; i < 50; ++i) {
    ClientResponse r = c.Read();
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.body, absl::StrCat("GET /n", i, "? "));
  }
}

TEST_F(HttpServerTest, OversizedBodyGets413AndClose) {
  HttpServer::Limits limits;
  limits.max_body_bytes = 100;
  StartServer(limits);
  {
    TestClient c(port_);
    ASSERT_TRUE(c.Send(TestClient::Request("POST", "/ok", std::string(100, 'a'))));
    EXPECT_EQ(c.Read().status, 200);
    c.Send(TestClient::Request("POST", "/big", std::string(101, 'a')));
    ClientResponse r = c.Read();
    EXPECT_EQ(r.status, 413);
    EXPECT_NE(r.body.find("\"error\""), std::string::npos);
    EXPECT_EQ(r.Header("connection"), "close");
    EXPECT_TRUE(c.ClosedByPeer());
  }
  {
    // Chunked: the limit applies to the decoded body as it arrives.
    TestClient c(port_);
    c.Send(
        "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        "\r\n40\r\n" + std::string(64, 'b') + "\r\n40\r\n" +
        std::string(64, 'b') + "\r\n0\r\n\r\n");
    EXPECT_EQ(c.Read().status, 413);
    EXPECT_TRUE(c.ClosedByPeer());
  }
}

TEST_F(HttpServerTest, OversizedHeadersGet431) {
  HttpServer::Limits limits;
  limits.max_header_bytes = 1024;
  StartServer(limits);
  TestClient c(port_);
  c.Send(TestClient::Request("GET", "/", "",
                             absl::StrCat("X-Big: ", std::string(2000, 'h'),
                                          "\r\n")));
  EXPECT_EQ(c.Read().status, 431);
  EXPECT_TRUE(c.ClosedByPeer());
}

TEST_F(HttpServerTest, MalformedRequestGets400AndClose) {
  StartServer();
  TestClient c(port_);
  // A good request first: its answer must still come out.
  c.Send(absl::StrCat(TestClient::Request("GET", "/first", ""),
                      "NOT HTTP AT ALL\r\n\r\n"));
  EXPECT_EQ(c.Read().status, 200);
  ClientResponse r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad_request"), std::string::npos);
  EXPECT_TRUE(c.ClosedByPeer());
}

TEST_F(HttpServerTest, ConnectionCloseAndHttp10) {
  StartServer();
  {
    TestClient c(port_);
    c.Send(TestClient::Request("GET", "/x", "", "Connection: close\r\n"));
    ClientResponse r = c.Read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.Header("connection"), "close");
    EXPECT_TRUE(c.ClosedByPeer());
  }
  {
    TestClient c(port_);
    c.Send("GET /old HTTP/1.0\r\n\r\n");
    EXPECT_EQ(c.Read().body, "GET /old? ");
    EXPECT_TRUE(c.ClosedByPeer());
  }
}

TEST_F(HttpServerTest, IdleConnectionIsClosed) {
  HttpServer::Limits limits;
  limits.idle_timeout_ms = 50;
  StartServer(limits);
  TestClient c(port_);
  c.Send("GET /partial HTTP/1.1\r\nHost:");  // never finished
  EXPECT_TRUE(c.ClosedByPeer());
}

TEST_F(HttpServerTest, AnswerAfterClientLeftIsDropped) {
  StartServer();
  {
    TestClient c(port_);
    c.Send(TestClient::Request("GET", "/slow", ""));
    absl::Notification seen;
    // Wait until the handler holds the responder.
    while (true) {
      loop_.Post([&] {
        if (!held_.empty() && !seen.HasBeenNotified()) seen.Notify();
      });
      if (seen.WaitForNotificationWithTimeout(absl::Milliseconds(10))) break;
    }
  }  // client gone
  // Answer on the loop after the server noticed the EOF or not: either way
  // nothing may crash, and a new client is still served.
  TestClient c2(port_);
  c2.Send(TestClient::Request("GET", "/release", ""));
  EXPECT_EQ(c2.Read().status, 200);
}

TEST(HttpServerReusePort, TwoLoopsShareOnePort) {
  core::Loop a(0), b(1);
  auto handler = [](HttpRequest&&, Responder r) { r(HttpResponse()); };
  auto sa = HttpServer::Listen(a, "127.0.0.1", 0, handler);
  ASSERT_TRUE(sa.ok());
  auto sb = HttpServer::Listen(b, "127.0.0.1", (*sa)->port(), handler);
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_EQ((*sa)->port(), (*sb)->port());
  (*sa)->Close();
  (*sb)->Close();
  a.Stop();
  b.Stop();
  EXPECT_EQ(a.Run(), 0);
  EXPECT_EQ(b.Run(), 0);
}

TEST(SplitHostPortTest, Forms) {
  auto v4 = SplitHostPort("127.0.0.1:8025");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->first, "127.0.0.1");
  EXPECT_EQ(v4->second, 8025);
  auto v6 = SplitHostPort("[::1]:0");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_FALSE(SplitHostPort("nohost").ok());
  EXPECT_FALSE(SplitHostPort("h:99999").ok());
}

}  // namespace
}  // namespace salvo::api
