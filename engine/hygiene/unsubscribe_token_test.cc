// Unsubscribe tokens: round trip, every single-bit tamper rejected, wrong
// secret rejected, malformed tokens rejected, alphabet safe for URLs and
// local parts.
#include "engine/hygiene/unsubscribe_token.h"

#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace salvo::hygiene {
namespace {

constexpr absl::string_view kSecret = "s3cret-key";

std::string MustSign(const UnsubscribeTarget& t,
                     absl::string_view secret = kSecret) {
  absl::StatusOr<std::string> tok = SignUnsubscribeToken(secret, t);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.value_or("");
}

TEST(UnsubscribeTokenTest, RoundTrip) {
  const std::string tok =
      MustSign({"tenant1", 0x0123456789abcdefULL, "Alice.Smith+x@Example.COM"});
  for (char c : tok) {
    EXPECT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                c == '-' || c == '_')
        << tok;
  }
  auto v = VerifyUnsubscribeToken(kSecret, tok);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->tenant, "tenant1");
  EXPECT_EQ(v->content_id, 0x0123456789abcdefULL);
  EXPECT_EQ(v->address, "Alice.Smith+x@Example.COM");
}

TEST(UnsubscribeTokenTest, Deterministic) {
  const UnsubscribeTarget t{"t", 7, "a@b.example"};
  EXPECT_EQ(MustSign(t), MustSign(t));
  EXPECT_NE(MustSign(t), MustSign({"t", 8, "a@b.example"}));
}

TEST(UnsubscribeTokenTest, EveryFlippedCharacterIsRejected) {
  const std::string tok = MustSign({"tenant1", 42, "bob@example.com"});
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int rejected = 0;
  for (size_t i = 0; i < tok.size(); ++i) {
    std::string bad = tok;
    // Another character of the alphabet: changes the decoded bytes, except
    // for tail bits in the last character, which make the token malformed.
    const char* p = std::strchr(kAlphabet, tok[i]);
    bad[i] = kAlphabet[((p - kAlphabet) + 1) % 64];
    auto v = VerifyUnsubscribeToken(kSecret, bad);
    EXPECT_FALSE(v.ok()) << "position " << i;
    rejected += !v.ok();
  }
  EXPECT_EQ(rejected, static_cast<int>(tok.size()));
  // Negative control: the untouched token verifies.
  EXPECT_TRUE(VerifyUnsubscribeToken(kSecret, tok).ok());
}

TEST(UnsubscribeTokenTest, ForgedPayloadWithOldMacIsRejected) {
  // Swap the address of a valid token for another while keeping the MAC.
  const std::string a = MustSign({"t", 1, "aaaa@example.com"});
  const std::string b = MustSign({"t", 1, "bbbb@example.com"});
  ASSERT_EQ(a.size(), b.size());
  // Payload: 1 + 8 + 1 + 1 + 16 = 27 bytes = exactly 36 characters; the
  // MAC follows.
  const std::string forged = b.substr(0, 36) + a.substr(36);
  ASSERT_NE(forged, a);
  ASSERT_NE(forged, b);
  auto v = VerifyUnsubscribeToken(kSecret, forged);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kPermissionDenied)
      << v.status();
}

TEST(UnsubscribeTokenTest, WrongSecretIsRejected) {
  const std::string tok = MustSign({"t", 1, "a@example.com"});
  EXPECT_EQ(VerifyUnsubscribeToken("other", tok).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyUnsubscribeToken("", tok).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(UnsubscribeTokenTest, MalformedTokensAreRejected) {
  EXPECT_FALSE(VerifyUnsubscribeToken(kSecret, "").ok());
  EXPECT_FALSE(VerifyUnsubscribeToken(kSecret, "not a token").ok());
  EXPECT_FALSE(VerifyUnsubscribeToken(kSecret, "AAAA").ok());
  EXPECT_FALSE(VerifyUnsubscribeToken(kSecret, std::string(5000, 'A')).ok());
  const std::string tok = MustSign({"t", 1, "a@example.com"});
  EXPECT_FALSE(VerifyUnsubscribeToken(kSecret, tok.substr(0, tok.size() - 4)).ok());
  EXPECT_FALSE(VerifyUnsubscribeToken(kSecret, tok + "AAAA").ok());
}

TEST(UnsubscribeTokenTest, SignRejectsBadInput) {
  EXPECT_FALSE(SignUnsubscribeToken("", {"t", 1, "a@b.c"}).ok());
  EXPECT_FALSE(SignUnsubscribeToken(kSecret, {"", 1, "a@b.c"}).ok());
  EXPECT_FALSE(SignUnsubscribeToken(kSecret, {"t", 1, ""}).ok());
  const std::string long_tenant(256, 't');
  EXPECT_FALSE(SignUnsubscribeToken(kSecret, {long_tenant, 1, "a@b.c"}).ok());
  const std::string max_tenant(255, 't');
  const std::string max_addr(512, 'a');
  const std::string tok = MustSign({max_tenant, ~0ULL, max_addr});
  auto v = VerifyUnsubscribeToken(kSecret, tok);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->tenant, max_tenant);
  EXPECT_EQ(v->address, max_addr);
  EXPECT_EQ(v->content_id, ~0ULL);
}

}  // namespace
}  // namespace salvo::hygiene
