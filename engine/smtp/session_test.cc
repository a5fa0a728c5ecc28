// Session against real peers on 127.0.0.1: Postfix's smtp-sink (1000
// messages over one connection, with and without PIPELINING) and a scripted
// blocking-socket server for 4xx, 5xx, a drop in the middle of DATA and a
// silent greeting; STARTTLS against a BoringSSL server on the scripted
// socket (opportunistic, verify failure, verify success with our own CA,
// plaintext injected after the 220); hostile servers (long reply line,
// endless multi-line reply, non-numeric code, duplicate replies under
// pipelining, silence at every stage, reset in DATA) none of which may lose
// a recipient or mark one delivered. Every test checks that Loop::Run()
// returned 0.
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

#include "engine/smtp/tls_engine.h"
#include "engine/smtp/tls_test_cert.h"
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
  ~Peer() { SSL_free(ssl_); }
  int fd() const { return fd_; }
  // A line without its CRLF; "" at EOF.
  std::string ReadLine() {
    while (true) {
      size_t nl = buf_.find("\r\n");
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 2);
        return line;
      }
      if (!Fill()) return "";
    }
  }
  std::string ReadBytes(size_t n) {
    while (buf_.size() < n && Fill()) {
    }
    std::string out = buf_.substr(0, n);
    buf_.erase(0, out.size());
    return out;
  }
  // Server side of STARTTLS on this socket; false if the handshake failed.
  bool StartTls(SSL_CTX* ctx) {
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    return SSL_accept(ssl_) == 1;
  }
  // Under TLS: true when the next thing the client sends is a close_notify
  // alert (SSL_read ends cleanly), false on data or a bare TCP close.
  bool ReadCloseNotify() {
    if (ssl_ == nullptr || !buf_.empty()) return false;
    char tmp[256];
    int n = SSL_read(ssl_, tmp, sizeof(tmp));
    return n == 0 && SSL_get_error(ssl_, n) == SSL_ERROR_ZERO_RETURN;
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
  void Write(const std::string& s) {
    if (ssl_ != nullptr) {
      SSL_write(ssl_, s.data(), static_cast<int>(s.size()));
    } else {
      send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
    }
  }

 private:
  bool Fill() {
    char tmp[4096];
    ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, tmp, sizeof(tmp))
                                : recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, n);
    return true;
  }

  int fd_;
  SSL* ssl_ = nullptr;
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
  TlsInfo tls;
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
    out.tls = s->tls();
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

// ------------------------------------------------------------- STARTTLS

class TlsSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = MakeCert("mx.test");  // LocalEndpoint's host name
    ctx_ = ServerCtx(cert_);
  }
  void TearDown() override { unlink(cert_.pem_path.c_str()); }

  // Greeting, EHLO offering STARTTLS, "220", the TLS handshake. False when
  // the handshake failed.
  bool UpToTls(Peer& p) {
    p.Write("220 scripted.test ESMTP\r\n");
    EXPECT_EQ(p.ReadLine(), "EHLO localhost");
    p.Write("250-scripted.test\r\n250-STARTTLS\r\n250 SIZE 100\r\n");
    EXPECT_EQ(p.ReadLine(), "STARTTLS");
    p.Write("220 2.0.0 ready\r\n");
    return p.StartTls(ctx_.get());
  }

  Cert cert_;
  bssl::UniquePtr<SSL_CTX> ctx_;
};

TEST_F(TlsSessionTest, OpportunisticDeliversOverTlsWithBdat) {
  const std::string body = "Subject: t\r\n\r\n.leading dot\r\n";
  ScriptedServer server([&](Peer& p) {
    ASSERT_TRUE(UpToTls(p));
    EXPECT_EQ(p.ReadLine(), "EHLO localhost");  // again, under TLS
    p.Write("250-scripted.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    EXPECT_EQ(p.ReadLine(), "MAIL FROM:<sender@a.test>");
    EXPECT_EQ(p.ReadLine(), "RCPT TO:<a@b.test>");
    EXPECT_EQ(p.ReadLine(), "RCPT TO:<c@b.test>");
    p.Write("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n");
    EXPECT_EQ(p.ReadLine(), "BDAT " + std::to_string(body.size()) + " LAST");
    EXPECT_EQ(p.ReadBytes(body.size()), body);  // un-dot-stuffed
    p.Write("250 2.0.0 queued\r\n");
    EXPECT_EQ(p.ReadLine(), "QUIT");
    p.Write("221 bye\r\n");
    EXPECT_TRUE(p.ReadCloseNotify()) << "no TLS close_notify after QUIT";
  });
  TransactionResult got;
  Outcome o = RunSession(server.port(), SessionOptions(), [&](Session* s, int n) {
    if (n == 0) {
      EXPECT_TRUE(s->tls().active);
      Transaction t = MakeTxn(0, {"a@b.test", "c@b.test"});
      t.data = "Subject: t\r\n\r\n..leading dot\r\n";  // wire form
      s->Send(std::move(t), [&](TransactionResult r) { got = std::move(r); });
    } else {
      s->Quit();
    }
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(o.closed.code, 221) << o.closed.ToString();
  ASSERT_EQ(got.rcpts.size(), 2u);
  EXPECT_EQ(got.ForRecipient(0).code, 250);
  EXPECT_EQ(got.ForRecipient(1).code, 550);
  EXPECT_TRUE(o.tls.active);
  EXPECT_FALSE(o.tls.verified);
  EXPECT_EQ(o.tls.version, "TLSv1.3");
  EXPECT_FALSE(o.tls.cipher.empty());
  EXPECT_TRUE(o.ext.chunking);
  EXPECT_EQ(o.ext.size, -1);  // the plaintext EHLO's SIZE was forgotten
}

TEST_F(TlsSessionTest, RequiredVerifyRejectsSelfSignedCert) {
  ScriptedServer server([&](Peer& p) {
    EXPECT_FALSE(UpToTls(p));  // the client aborts the handshake
  });
  SessionOptions options;
  options.tls.policy = TlsPolicy::kRequiredVerify;  // system CA store
  Outcome o = RunSession(server.port(), options, [&](Session*, int) {
    ADD_FAILURE() << "never ready";
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(o.closed_calls, 1);
  EXPECT_EQ(o.closed.stage, Stage::kTlsHandshake);
  EXPECT_TRUE(o.closed.IsTransient());
  EXPECT_NE(o.closed.text.find("certificate"), std::string::npos)
      << o.closed.text;
  EXPECT_FALSE(o.tls.active);
}

TEST_F(TlsSessionTest, RequiredVerifyAcceptsCertFromOurCa) {
  ScriptedServer server([&](Peer& p) {
    ASSERT_TRUE(UpToTls(p));
    EXPECT_EQ(p.ReadLine(), "EHLO localhost");
    p.Write("250 scripted.test\r\n");
    EXPECT_EQ(p.ReadLine(), "QUIT");
    p.Write("221 bye\r\n");
    EXPECT_TRUE(p.ReadCloseNotify()) << "no TLS close_notify after QUIT";
  });
  auto context = TlsClientContext::Create(cert_.pem_path);
  ASSERT_TRUE(context.ok());
  SessionOptions options;
  options.tls.policy = TlsPolicy::kRequiredVerify;
  options.tls.context = context->get();
  Outcome o = RunSession(server.port(), options,
                         [&](Session* s, int) { s->Quit(); });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(o.closed.code, 221) << o.closed.ToString();
  EXPECT_TRUE(o.tls.verified);
}

class InjectionTest : public TlsSessionTest,
                      public ::testing::WithParamInterface<bool> {};
INSTANTIATE_TEST_SUITE_P(SameWrite, InjectionTest, ::testing::Bool());

TEST_P(InjectionTest, PlaintextAfterStartTls220Closes) {
  const bool same_write = GetParam();
  ScriptedServer server([&](Peer& p) {
    p.Write("220 scripted.test ESMTP\r\n");
    EXPECT_EQ(p.ReadLine(), "EHLO localhost");
    p.Write("250-scripted.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    EXPECT_EQ(p.ReadLine(), "STARTTLS");
    const std::string inject = "250-scripted.test\r\n250 PIPELINING\r\n";
    if (same_write) {
      p.Write("220 ready\r\n" + inject);
    } else {
      p.Write("220 ready\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      p.Write(inject);
    }
    while (!p.ReadLine().empty()) {
    }
  });
  Outcome o = RunSession(server.port(), SessionOptions(), [&](Session*, int) {
    ADD_FAILURE() << "never ready";
  });
  EXPECT_EQ(o.run_rc, 0);
  EXPECT_EQ(o.closed_calls, 1);
  EXPECT_EQ(o.closed.stage, Stage::kStartTls);
  EXPECT_NE(o.closed.text.find("CVE-2021-38371"), std::string::npos)
      << o.closed.text;
  EXPECT_FALSE(o.tls.active);
}

// ------------------------------------------------------- hostile servers

// A plain (no PIPELINING) server that behaves until `bad`, where it runs
// `act` instead of answering.
void Misbehave(Peer& p, Stage bad, const std::function<void(Peer&)>& act) {
  struct Step {
    Stage stage;
    const char* expect;  // line prefix to read first (null: none)
    const char* reply;
  };
  const Step steps[] = {
      {Stage::kGreeting, nullptr, "220 scripted.test ESMTP\r\n"},
      {Stage::kEhlo, "EHLO", "250-scripted.test\r\n250 ENHANCEDSTATUSCODES\r\n"},
      {Stage::kMail, "MAIL", "250 2.1.0 ok\r\n"},
      {Stage::kRcpt, "RCPT", "250 2.1.5 ok\r\n"},
      {Stage::kRcpt, "RCPT", "250 2.1.5 ok\r\n"},  // two recipients
      {Stage::kData, "DATA", "354 go\r\n"},
      {Stage::kDataEnd, nullptr, "250 2.0.0 queued\r\n"},
      {Stage::kQuit, "QUIT", "221 bye\r\n"},
  };
  for (const Step& step : steps) {
    if (step.stage == Stage::kDataEnd) {
      p.ReadData();
    } else if (step.expect != nullptr) {
      EXPECT_EQ(p.ReadLine().substr(0, 4), step.expect);
    }
    if (step.stage == bad) {
      act(p);  // at the first of two RCPTs
      return;
    }
    p.Write(step.reply);
  }
}

void ReadUntilEof(Peer& p) {
  while (!p.ReadLine().empty()) {
  }
}

struct HostileOutcome {
  Outcome session;
  std::vector<TransactionResult> results;
};

HostileOutcome RunAgainst(Stage bad, std::function<void(Peer&)> act) {
  ScriptedServer server(
      [bad, act](Peer& p) { Misbehave(p, bad, act); });
  SessionOptions options;
  for (absl::Duration* t :
       {&options.timeouts.greeting, &options.timeouts.ehlo,
        &options.timeouts.mail, &options.timeouts.rcpt,
        &options.timeouts.data_init, &options.timeouts.data_end,
        &options.timeouts.quit}) {
    *t = absl::Milliseconds(100);
  }
  HostileOutcome h;
  h.session = RunSession(server.port(), options, [&](Session* s, int n) {
    if (n == 0) {
      s->Send(MakeTxn(0, {"a@b.test", "c@b.test"}),
              [&](TransactionResult r) { h.results.push_back(std::move(r)); });
    } else {
      s->Quit();
    }
  });
  return h;
}

// Every recipient of every transaction is transient and not delivered.
void ExpectNothingDelivered(const HostileOutcome& h) {
  EXPECT_EQ(h.session.run_rc, 0);
  EXPECT_EQ(h.session.closed_calls, 1);
  for (const TransactionResult& r : h.results) {
    for (size_t i = 0; i < r.rcpts.size(); ++i) {
      EXPECT_TRUE(r.ForRecipient(i).IsTransient())
          << i << ": " << r.ForRecipient(i).ToString();
    }
  }
}

TEST(HostileTest, SilenceAtEveryStageTimesOut) {
  for (Stage bad : {Stage::kGreeting, Stage::kEhlo, Stage::kMail,
                    Stage::kRcpt, Stage::kData, Stage::kDataEnd,
                    Stage::kQuit}) {
    SCOPED_TRACE(StageName(bad));
    HostileOutcome h = RunAgainst(bad, ReadUntilEof);
    EXPECT_EQ(h.session.closed.stage, bad);
    EXPECT_NE(h.session.closed.text.find("timeout"), std::string::npos)
        << h.session.closed.text;
    if (bad == Stage::kQuit) {
      ASSERT_EQ(h.results.size(), 1u);  // delivered before QUIT hung
      EXPECT_EQ(h.results[0].ForRecipient(1).code, 250);
      EXPECT_EQ(h.session.run_rc, 0);
      continue;
    }
    EXPECT_EQ(h.results.size(), bad >= Stage::kMail ? 1u : 0u);
    ExpectNothingDelivered(h);
  }
}

TEST(HostileTest, ReplyLineLongerThanTheLimit) {
  HostileOutcome h = RunAgainst(Stage::kMail, [](Peer& p) {
    p.Write("250 " + std::string(5000, 'x') + "\r\n");
    ReadUntilEof(p);
  });
  ASSERT_EQ(h.results.size(), 1u);
  ExpectNothingDelivered(h);
  EXPECT_NE(h.session.closed.text.find("too long"), std::string::npos);
}

TEST(HostileTest, EndlessMultiLineReply) {
  HostileOutcome h = RunAgainst(Stage::kRcpt, [](Peer& p) {
    for (int i = 0; i < 500; ++i) p.Write("250-and more\r\n");
    ReadUntilEof(p);
  });
  ASSERT_EQ(h.results.size(), 1u);
  ExpectNothingDelivered(h);
  EXPECT_NE(h.session.closed.text.find("too many lines"), std::string::npos);
}

TEST(HostileTest, NonNumericCode) {
  HostileOutcome h = RunAgainst(Stage::kData, [](Peer& p) {
    p.Write("OK go ahead\r\n");
    ReadUntilEof(p);
  });
  ASSERT_EQ(h.results.size(), 1u);
  ExpectNothingDelivered(h);
  EXPECT_NE(h.session.closed.text.find("not numeric"), std::string::npos);
}

TEST(HostileTest, ResetInTheMiddleOfData) {
  HostileOutcome h = RunAgainst(Stage::kData, [](Peer& p) {
    p.Write("354 go\r\n");
    p.ReadLine();
    linger l{1, 0};  // close() below (by ScriptedServer) sends RST
    setsockopt(p.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  });
  ASSERT_EQ(h.results.size(), 1u);
  ExpectNothingDelivered(h);
  EXPECT_EQ(h.results[0].ForRecipient(0).stage, Stage::kDataEnd);
}

TEST(HostileTest, DuplicateReplyUnderPipelining) {
  ScriptedServer server([](Peer& p) {
    Greet(p, /*pipelining=*/true);
    for (int i = 0; i < 3; ++i) p.ReadLine();  // MAIL, RCPT, DATA
    p.Write("250 OK\r\n250 OK\r\n");           // MAIL answered twice
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    p.Write("550 5.1.1 no such user\r\n354 go\r\n");
    ReadUntilEof(p);
  });
  std::vector<TransactionResult> got;
  Outcome o = RunSession(server.port(), SessionOptions(), [&](Session* s, int n) {
    if (n == 0) {
      s->Send(MakeTxn(0), [&](TransactionResult r) { got.push_back(std::move(r)); });
    } else {
      s->Quit();
    }
  });
  EXPECT_EQ(o.run_rc, 0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].ForRecipient(0).IsTransient())
      << got[0].ForRecipient(0).ToString();
  EXPECT_NE(o.closed.text.find("desync"), std::string::npos) << o.closed.text;
}

}  // namespace
}  // namespace salvo::smtp
