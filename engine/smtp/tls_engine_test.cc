// TlsEngine client against a BoringSSL TlsEngine server entirely in memory
// (no socket): handshake, data both ways in any split, certificate
// verification (CA + host name), session resumption through
// TlsSessionCache, garbage during the handshake. Plus TlsFallbackMemory on
// a ManualClock. The self-signed certificate is made here with BoringSSL.
#include "engine/smtp/tls_engine.h"

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "engine/smtp/tls_test_cert.h"
#include "gtest/gtest.h"

namespace salvo::smtp {
namespace {

// Moves bytes both ways until neither side has anything to say. Feeds one
// byte at a time when `bytewise`.
void Pump(TlsEngine& client, TlsEngine& server, bool bytewise = false) {
  for (int round = 0; round < 50; ++round) {
    bool moved = false;
    if (!client.handshake_done()) client.Handshake();
    if (!server.handshake_done()) server.Handshake();
    std::string c2s, s2c;
    if (client.TakeCiphertext(&c2s)) {
      moved = true;
      if (bytewise) {
        for (char ch : c2s) server.FeedCiphertext(absl::string_view(&ch, 1));
      } else {
        server.FeedCiphertext(c2s);
      }
    }
    if (server.TakeCiphertext(&s2c)) {
      moved = true;
      if (bytewise) {
        for (char ch : s2c) client.FeedCiphertext(absl::string_view(&ch, 1));
      } else {
        client.FeedCiphertext(s2c);
      }
    }
    if (!moved && (client.handshake_done() || !client.error().empty()) &&
        (server.handshake_done() || !server.error().empty())) {
      return;
    }
  }
}

class TlsEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = MakeCert("mx.test");
    server_ctx_ = ServerCtx(cert_);
  }
  void TearDown() override { unlink(cert_.pem_path.c_str()); }

  std::unique_ptr<TlsClientContext> ClientContext(const std::string& ca) {
    auto c = TlsClientContext::Create(ca);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  Cert cert_;
  bssl::UniquePtr<SSL_CTX> server_ctx_;
};

TEST_F(TlsEngineTest, HandshakeAndDataBothWays) {
  auto ctx = ClientContext("");
  auto client = TlsEngine::Client(ctx->ctx(), "mx.test", false, nullptr);
  auto server = TlsEngine::Server(server_ctx_.get());
  ASSERT_TRUE(client.ok() && server.ok());
  EXPECT_EQ((*client)->Handshake(), TlsEngine::Progress::kWantMore);
  Pump(**client, **server, /*bytewise=*/true);
  ASSERT_TRUE((*client)->handshake_done()) << (*client)->error();
  ASSERT_TRUE((*server)->handshake_done()) << (*server)->error();
  TlsInfo info = (*client)->info();
  EXPECT_TRUE(info.active);
  EXPECT_FALSE(info.verified);
  EXPECT_FALSE(info.resumed);
  EXPECT_EQ(info.version, "TLSv1.3");
  EXPECT_FALSE(info.cipher.empty());

  std::string big(200000, 'x');
  ASSERT_TRUE((*client)->WritePlaintext("EHLO me\r\n").ok());
  ASSERT_TRUE((*client)->WritePlaintext(big).ok());
  std::string wire;
  ASSERT_TRUE((*client)->TakeCiphertext(&wire));
  EXPECT_EQ(wire.find("EHLO"), std::string::npos);  // encrypted
  std::string got;
  for (size_t i = 0; i < wire.size(); i += 777) {  // odd splits
    (*server)->FeedCiphertext(absl::string_view(wire).substr(i, 777));
    ASSERT_TRUE((*server)->ReadPlaintext(&got).ok());
  }
  EXPECT_EQ(got, "EHLO me\r\n" + big);

  ASSERT_TRUE((*server)->WritePlaintext("250 ok\r\n").ok());
  std::string back;
  (*server)->TakeCiphertext(&back);
  (*client)->FeedCiphertext(back);
  std::string plain;
  ASSERT_TRUE((*client)->ReadPlaintext(&plain).ok());
  EXPECT_EQ(plain, "250 ok\r\n");
}

TEST_F(TlsEngineTest, VerifiesChainAndHostName) {
  auto ctx = ClientContext(cert_.pem_path);
  {
    auto client = TlsEngine::Client(ctx->ctx(), "mx.test", true, nullptr);
    auto server = TlsEngine::Server(server_ctx_.get());
    Pump(**client, **server);
    ASSERT_TRUE((*client)->handshake_done()) << (*client)->error();
    EXPECT_TRUE((*client)->info().verified);
  }
  {
    auto client = TlsEngine::Client(ctx->ctx(), "other.test", true, nullptr);
    auto server = TlsEngine::Server(server_ctx_.get());
    Pump(**client, **server);
    EXPECT_FALSE((*client)->handshake_done());
    EXPECT_EQ((*client)->Handshake(), TlsEngine::Progress::kFailed);
    EXPECT_NE((*client)->error().find("certificate"), std::string::npos)
        << (*client)->error();
  }
}

TEST_F(TlsEngineTest, SelfSignedFailsAgainstSystemStore) {
  auto ctx = ClientContext(kSystemCaFile);
  auto client = TlsEngine::Client(ctx->ctx(), "mx.test", true, nullptr);
  auto server = TlsEngine::Server(server_ctx_.get());
  Pump(**client, **server);
  EXPECT_FALSE((*client)->handshake_done());
  EXPECT_NE((*client)->error().find("certificate"), std::string::npos)
      << (*client)->error();
  // Without verification the same server is fine (opportunistic).
  auto c2 = TlsEngine::Client(ctx->ctx(), "mx.test", false, nullptr);
  auto s2 = TlsEngine::Server(server_ctx_.get());
  Pump(**c2, **s2);
  EXPECT_TRUE((*c2)->handshake_done()) << (*c2)->error();
}

TEST_F(TlsEngineTest, ResumesThroughSessionCache) {
  auto ctx = ClientContext("");
  const std::string key = "mx.test[127.0.0.1]:25";
  {
    auto client = TlsEngine::Client(ctx->ctx(), "mx.test", false, nullptr);
    auto server = TlsEngine::Server(server_ctx_.get());
    Pump(**client, **server);
    ASSERT_TRUE((*client)->handshake_done());
    // TLS 1.3 tickets come after the handshake (BoringSSL sends them with
    // the server's first write); reading picks them up.
    std::string plain, wire;
    ASSERT_TRUE((*server)->WritePlaintext("250 ok\r\n").ok());
    (*server)->TakeCiphertext(&wire);
    (*client)->FeedCiphertext(wire);
    ASSERT_TRUE((*client)->ReadPlaintext(&plain).ok());
    EXPECT_EQ(plain, "250 ok\r\n");
    auto s = (*client)->TakeNewSession();
    ASSERT_NE(s, nullptr);
    ctx->sessions().Put(key, std::move(s));
  }
  ASSERT_NE(ctx->sessions().Get(key), nullptr);
  auto client = TlsEngine::Client(ctx->ctx(), "mx.test", false,
                                  ctx->sessions().Get(key));
  auto server = TlsEngine::Server(server_ctx_.get());
  Pump(**client, **server);
  ASSERT_TRUE((*client)->handshake_done());
  EXPECT_TRUE((*client)->info().resumed);
}

TEST_F(TlsEngineTest, PlaintextDuringHandshakeFails) {
  auto ctx = ClientContext("");
  auto client = TlsEngine::Client(ctx->ctx(), "mx.test", false, nullptr);
  ASSERT_EQ((*client)->Handshake(), TlsEngine::Progress::kWantMore);
  (*client)->FeedCiphertext("250 injected\r\n");
  EXPECT_EQ((*client)->Handshake(), TlsEngine::Progress::kFailed);
  EXPECT_FALSE((*client)->error().empty());
  EXPECT_FALSE((*client)->handshake_done());
}

TEST(TlsSessionCacheTest, EvictsOldestAndDropsNull) {
  TlsSessionCache cache(2);
  cache.Put("a", nullptr);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.Get("a"), nullptr);
}

TEST(TlsClientContextTest, MissingCaFileIsAnError) {
  EXPECT_FALSE(TlsClientContext::Create("/nonexistent/ca.pem").ok());
  EXPECT_NE(TlsClientContext::ThreadDefault(), nullptr);
}

TEST(TlsFallbackMemoryTest, RemembersUntilTtl) {
  core::ManualClock clock;
  TlsFallbackMemory memory(clock, absl::Hours(1), /*capacity=*/2);
  EXPECT_FALSE(memory.ShouldSkipTls("mx1"));
  memory.Remember("mx1");
  EXPECT_TRUE(memory.ShouldSkipTls("mx1"));
  EXPECT_FALSE(memory.ShouldSkipTls("mx2"));
  clock.Advance(absl::Minutes(59));
  EXPECT_TRUE(memory.ShouldSkipTls("mx1"));
  clock.Advance(absl::Minutes(2));
  EXPECT_FALSE(memory.ShouldSkipTls("mx1"));
  EXPECT_EQ(memory.size(), 0u);
  memory.Remember("a");
  memory.Remember("b");
  memory.Remember("c");  // full of live entries: starts over
  EXPECT_LE(memory.size(), 2u);
  EXPECT_TRUE(memory.ShouldSkipTls("c"));
}

}  // namespace
}  // namespace salvo::smtp
