// Test tool: sends one message over one Session and prints one line of
// key=value results (for tls_interop_test.py against a real Postfix).
// Usage: smtp_send_one <port> <mx_host_name> <disabled|opportunistic|
//        required|required_verify> <ca_file or -> <from> <rcpt>...
// Main thread only.
#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "engine/core/loop.h"
#include "engine/smtp/session.h"
#include "engine/smtp/tls_engine.h"

namespace salvo::smtp {
namespace {

int Main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s port host policy ca_file from rcpt...\n",
                 argv[0]);
    return 2;
  }
  Endpoint peer;
  auto* sin = reinterpret_cast<sockaddr_in*>(&peer.addr);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(std::atoi(argv[1]));
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  peer.host_name = argv[2];
  SessionOptions options;
  options.helo_name = "client.test";
  const std::string policy = argv[3];
  for (TlsPolicy p : {TlsPolicy::kDisabled, TlsPolicy::kOpportunistic,
                      TlsPolicy::kRequired, TlsPolicy::kRequiredVerify}) {
    if (policy == TlsPolicyName(p)) options.tls.policy = p;
  }
  std::unique_ptr<TlsClientContext> context;
  if (std::string(argv[4]) != "-") {
    auto c = TlsClientContext::Create(argv[4]);
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
      return 2;
    }
    context = std::move(*c);
    options.tls.context = context.get();
  }
  Transaction txn;
  txn.mail_from = argv[5];
  for (int i = 6; i < argc; ++i) txn.rcpts.push_back(argv[i]);
  txn.data =
      "From: <" + txn.mail_from + ">\r\nSubject: interop\r\n\r\nHello.\r\n"
      "..a stuffed dot line\r\n";

  core::Loop loop;
  std::unique_ptr<Session> session;
  std::string line;
  Session::Callbacks cb;
  cb.on_ready = [&](Session* s) {
    if (s->transactions() > 0) {
      s->Quit();
      return;
    }
    s->Send(std::move(txn), [&](TransactionResult r) {
      for (size_t i = 0; i < r.rcpts.size(); ++i) {
        line += "rcpt" + std::to_string(i) + "=" +
                std::to_string(r.ForRecipient(i).code) + " ";
      }
    });
  };
  cb.on_closed = [&](Session* s, const Reply& why) {
    const TlsInfo& t = s->tls();
    line += "tls=" + std::string(t.active ? t.version : "none") +
            " cipher=" + (t.cipher.empty() ? "none" : t.cipher) +
            " verified=" + std::to_string(t.verified) +
            " chunking=" + std::to_string(s->extensions().chunking) +
            " closed_stage=" + StageName(why.stage) +
            " closed=" + why.ToString();
    loop.Post([&] {
      session.reset();
      loop.Stop();
    });
  };
  loop.Post([&] {
    session = Session::Create(loop, options, peer, cb);
    session->Connect();
  });
  int rc = loop.Run();
  std::printf("%s run_rc=%d\n", line.c_str(), rc);
  return 0;
}

}  // namespace
}  // namespace salvo::smtp

int main(int argc, char** argv) { return salvo::smtp::Main(argc, argv); }
