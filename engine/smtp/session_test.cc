// Session against real peers on 127.0.0.1: Postfix's smtp-sink (1000
// messages over one connection, with and without PIPELINING) and a scripted
// blocking-socket server for 4xx, 5xx, a drop in the middle of DATA and a
// silent greeting. Every test checks that Loop::Run() returned 0.
#include "engine/smtp/session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::smtp {
namespace {

Endpoint LocalEndpoint(int port) {
  Endpoint e;
  auto* sin = reinterpret_cast<sockaddr_in*>(&e.addr);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  e.host_name = "mx.test";
  return e;
}

int ListenOnFreePort(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) return -1;
  socklen_t len = sizeof(sin);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  *port = ntohs(sin.sin_port);
  return fd;
}

bool CanConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0;
  close(fd);
  return ok;
}

// Postfix's smtp-sink on a free port for the life of the object.
class SmtpSink {
 public:
  explicit SmtpSink(std::vector<std::string> flags) {
    int fd = ListenOnFreePort(&port_);
    close(fd);  // smtp-sink binds it again right away
    std::vector<std::string> args = {"/usr/sbin/smtp-sink", "-u", "root"};
    for (auto& f : flags) args.push_back(f);
    args.push_back("127.0.0.1:" + std::to_string(port_));
    args.push_back("100");
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 250 && !CanConnect(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~SmtpSink() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  int port() const { return port_; }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
};

// One connection on a blocking socket, run by a script on its own thread.
class Peer {
 public:
  explicit Peer(int fd) : fd_(fd) {}
  // A line without its CRLF; "" at EOF.
  std::string ReadLine() {
    while (true) {
      size_t nl = buf_.find("\r\n");
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 2);
        return line;
      }
      char tmp[4096];
      ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
      if (n <= 0) return "";
      buf_.append(tmp, n);
    }
  }
  // Reads the message up to the "." line; returns its line count.
  int ReadData() {
    int lines = 0;
    while (true) {
      std::string l = ReadLine();
      if (l == ".") return lines;
      ++lines;
    }
  }
  void Write(const std::string& s) { send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }

 private:
  int fd_;
  std::string buf_;
};

class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(Peer&)> script) {
    int fd = ListenOnFreePort(&port_);
    listen(fd, 4);
    thread_ = std::thread([fd, script] {
      int c = accept(fd, nullptr, nullptr);
      Peer peer(c);
      script(peer);
      close(c);
      close(fd);
    });
  }
  ~ScriptedServer() { thread_.join(); }
  int port() const { return port_; }

 private:
  int port_ = 0;
  std::thread thread_;
};

Transaction MakeTxn(int i, std::vector<std::string> rcpts = {"rcpt@b.test"}) {
  Transaction t;
  t.mail_from = "sender@a.test";
  t.rcpts = std::move(rcpts);
  t.data = "Subject: message " + std::to_string(i) +
           "\r\nFrom: sender@a.test\r\n\r\nHello.\r\n..leading dot\r\n";
  return t;
}

// Runs a session on a fresh loop: `on_ready(session, n)` is called on the
// n-th ready (0-based). Returns the close reason; *run_rc gets Run()'s value.
struct Outcome {
  Reply closed;
  int closed_calls = 0;
  int run_rc = -1;
  Extensions ext;
  int transactions = 0;
};

Outcome RunSession(int port, const SessionOptions& options,
                   std::function<void(Session*, int)> on_ready) {
  core::Loop loop;
  Outcome out;
  std::unique_ptr<Session> session;
  int readies = 0;
  Session::Callbacks cb;
  cb.on_ready = [&](Session* s) { on_ready(s, readies++); };
  cb.on_closed = [&](Session* s, const Reply& why) {
    ++out.closed_calls;
    out.closed = why;
    out.ext = s->extensions();
    out.transactions = s->transactions();
    loop.Post([&] {
      session.reset();
      loop.Stop();
    });
  };
  loop.Post([&] {
    session = Session::Create(loop, options, LocalEndpoint(port), cb);
    session->Connect();
  });
  out.run_rc = loop.Run();
  return out;
}

class SinkTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Pipelining, SinkTest, ::testing::Bool());

TEST_P(SinkTest, ThousandMessagesOverOneConnection) {
  const bool pipelining = GetParam();
  SmtpSink sink(pipelining ? std::vector<std::string>{}
                           : std::vector<std::string>{"-p"});
  constexpr int kMessages = 1000;
  int delivered = 0;
  int failed = 0;
  Reply first_failure;
  Outcome o = RunSession(sink.port(), SessionOptions(), [&](Session* s, int n) {
    if (n >= kMessages) {
      s->Quit();
      return;
    }
    ASSERT_TRUE(s->idle());
    s->Send(MakeTxn(n, {"a@b.test", "c@d.test"}), [&](TransactionResult r) {
      for (size_t i = 0; i < r.rcpts.size(); ++i) {
        if (r.ForRecipient(i).code == 250) {
          ++delivered;
        } else {
          if (failed++ == 0) first_failure = r.ForRecipient(i);
        }
      }
    });
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(failed, 0) << first_failure.ToString();
  EXPECT_EQ(delivered, 2 * kMessages);
  EXPECT_EQ(o.transactions, kMessages);
  EXPECT_EQ(o.closed_calls, 1);
  EXPECT_EQ(o.closed.code, 221) << o.closed.ToString();
  EXPECT_EQ(o.ext.pipelining, pipelining);
}

TEST(SinkRejectTest, HardRejectedRcptIsPermanent) {
  SmtpSink sink({"-f", "RCPT"});
  Reply got;
  Outcome o = RunSession(sink.port(), SessionOptions(), [&](Session* s, int n) {
    if (n == 0) {
      s->Send(MakeTxn(0), [&](TransactionResult r) { got = r.ForRecipient(0); });
    } else {
      s->Quit();
    }
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(got.code, 500) << got.ToString();
  EXPECT_EQ(got.stage, Stage::kRcpt);
  EXPECT_TRUE(got.IsPermanent());
  EXPECT_EQ(o.closed.code, 221);
}

TEST(SinkRejectTest, Reply421AfterDataIsTransient) {
  SmtpSink sink({"-Q", "DATA"});
  Reply got;
  Outcome o = RunSession(sink.port(), SessionOptions(), [&](Session* s, int) {
    s->Send(MakeTxn(0), [&](TransactionResult r) { got = r.ForRecipient(0); });
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(got.code, 421) << got.ToString();
  EXPECT_EQ(got.stage, Stage::kData);
  EXPECT_EQ(o.closed.code, 421);
  EXPECT_EQ(o.closed_calls, 1);
}

void Greet(Peer& p, bool pipelining) {
  p.Write("220 scripted.test ESMTP\r\n");
  EXPECT_EQ(p.ReadLine(), "EHLO localhost");
  p.Write(pipelining ? "250-scripted.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
                     : "250-scripted.test\r\n250 ENHANCEDSTATUSCODES\r\n");
}

TEST(ScriptedTest, TempFailThenSuccess) {
  ScriptedServer server([](Peer& p) {
    Greet(p, /*pipelining=*/false);
    EXPECT_EQ(p.ReadLine(), "MAIL FROM:<sender@a.test>");
    p.Write("451 4.3.0 try again later\r\n");
    EXPECT_EQ(p.ReadLine(), "MAIL FROM:<sender@a.test>");
    p.Write("250 2.1.0 ok\r\n");
    EXPECT_EQ(p.ReadLine(), "RCPT TO:<rcpt@b.test>");
    p.Write("250 2.1.5 ok\r\n");
    EXPECT_EQ(p.ReadLine(), "DATA");
    p.Write("354 go\r\n");
    EXPECT_EQ(p.ReadData(), 5);
    p.Write("250 2.0.0 queued\r\n");
    EXPECT_EQ(p.ReadLine(), "QUIT");
    p.Write("221 2.0.0 bye\r\n");
  });
  std::vector<Reply> got;
  Outcome o = RunSession(server.port(), SessionOptions(), [&](Session* s, int n) {
    if (n < 2) {
      s->Send(MakeTxn(n), [&](TransactionResult r) { got.push_back(r.ForRecipient(0)); });
    } else {
      s->Quit();
    }
  });
  EXPECT_EQ(o.run_rc, 0);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].code, 451);
  EXPECT_EQ(got[0].enhanced, "4.3.0");
  EXPECT_TRUE(got[0].IsTransient());
  EXPECT_EQ(got[1].code, 250);
  EXPECT_EQ(o.closed.code, 221);
  EXPECT_EQ(o.transactions, 2);
}

TEST(ScriptedTest, PermanentRejectsPipelined) {
  ScriptedServer server([](Peer& p) {
    Greet(p, /*pipelining=*/true);
    EXPECT_EQ(p.ReadLine(), "MAIL FROM:<sender@a.test>");
    EXPECT_EQ(p.ReadLine(), "RCPT TO:<bad@b.test>");
    EXPECT_EQ(p.ReadLine(), "RCPT TO:<good@b.test>");
    EXPECT_EQ(p.ReadLine(), "DATA");
    p.Write("250 2.1.0 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n");
    p.ReadData();
    p.Write("554 5.7.1 message refused\r\n");
    EXPECT_EQ(p.ReadLine(), "QUIT");
    p.Write("221 bye\r\n");
  });
  TransactionResult got;
  Outcome o = RunSession(server.port(), SessionOptions(), [&](Session* s, int n) {
    if (n == 0) {
      s->Send(MakeTxn(0, {"bad@b.test", "good@b.test"}),
              [&](TransactionResult r) { got = std::move(r); });
    } else {
      s->Quit();
    }
  });
  EXPECT_EQ(o.run_rc, 0);
  ASSERT_EQ(got.rcpts.size(), 2u);
  EXPECT_EQ(got.ForRecipient(0).code, 550);
  EXPECT_EQ(got.ForRecipient(0).enhanced, "5.1.1");
  EXPECT_EQ(got.ForRecipient(1).code, 554);
  EXPECT_EQ(got.ForRecipient(1).stage, Stage::kDataEnd);
  EXPECT_TRUE(o.ext.pipelining);
}

TEST(ScriptedTest, DropInTheMiddleOfData) {
  ScriptedServer server([](Peer& p) {
    Greet(p, /*pipelining=*/true);
    for (int i = 0; i < 3; ++i) p.ReadLine();
    p.Write("250 ok\r\n250 ok\r\n354 go\r\n");
    p.ReadLine();  // the first line of the body, then hang up
  });
  std::vector<TransactionResult> got;
  int readies = 0;
  Outcome o = RunSession(server.port(), SessionOptions(), [&](Session* s, int n) {
    ++readies;
    Transaction t = MakeTxn(0);
    t.data.append(std::string(1 << 20, 'x')).append("\r\n");
    s->Send(std::move(t), [&](TransactionResult r) { got.push_back(std::move(r)); });
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(readies, 1);
  ASSERT_EQ(got.size(), 1u);
  const Reply& r = got[0].ForRecipient(0);
  EXPECT_EQ(r.code, 0) << r.ToString();
  EXPECT_TRUE(r.synthetic);
  EXPECT_TRUE(r.IsTransient());
  EXPECT_EQ(r.stage, Stage::kDataEnd);
  EXPECT_EQ(o.closed_calls, 1);
  EXPECT_TRUE(o.closed.synthetic);
}

TEST(ScriptedTest, SilentGreetingTimesOut) {
  ScriptedServer server([](Peer& p) { p.ReadLine(); /* until the client hangs up */ });
  SessionOptions options;
  options.timeouts.greeting = absl::Milliseconds(50);
  Outcome o = RunSession(server.port(), options, [&](Session*, int) {
    ADD_FAILURE() << "never ready";
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(o.closed_calls, 1);
  EXPECT_EQ(o.closed.stage, Stage::kGreeting);
  EXPECT_TRUE(o.closed.synthetic);
}

TEST(SessionTest, ConnectRefused) {
  int port = 0;
  close(ListenOnFreePort(&port));  // nothing listens there now
  Outcome o = RunSession(port, SessionOptions(), [&](Session*, int) {
    ADD_FAILURE() << "never ready";
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(o.closed_calls, 1);
  EXPECT_EQ(o.closed.stage, Stage::kConnect);
  EXPECT_EQ(o.closed.code, 0);
}

TEST(SessionTest, EndpointToString) {
  EXPECT_EQ(LocalEndpoint(2525).ToString(), "mx.test[127.0.0.1]:2525");
}

}  // namespace
}  // namespace salvo::smtp
