// DkimSigner / DkimSigners: Create() validation, header shape and folding,
// bottom-most duplicate, dot-unstuffed body hash, buffer reuse, domain
// lookup. Keys are made at test time with BoringSSL (Ed25519 from a fixed
// seed, so its signatures are deterministic). Cryptographic verification by
// an independent implementation is in dkim_verify_test.py.
#include "engine/dkim/dkim_signer.h"

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace salvo::dkim {
namespace {

std::string PemOf(EVP_PKEY* pkey) {
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_TRUE(PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0,
                                       nullptr, nullptr));
  const uint8_t* data;
  size_t len;
  BIO_mem_contents(bio, &data, &len);
  std::string pem(reinterpret_cast<const char*>(data), len);
  BIO_free(bio);
  EVP_PKEY_free(pkey);
  return pem;
}

std::string RsaPem(int bits) {
  RSA* rsa = RSA_new();
  BIGNUM* e = BN_new();
  BN_set_word(e, RSA_F4);
  EXPECT_TRUE(RSA_generate_key_ex(rsa, bits, e, nullptr));
  BN_free(e);
  EVP_PKEY* pkey = EVP_PKEY_new();
  EVP_PKEY_assign_RSA(pkey, rsa);
  return PemOf(pkey);
}

std::string Ed25519Pem(uint8_t seed_byte = 7) {
  uint8_t seed[32];
  for (int i = 0; i < 32; ++i) seed[i] = static_cast<uint8_t>(seed_byte + i);
  return PemOf(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, 32));
}

const std::string& Rsa2048() {
  static const std::string* pem = new std::string(RsaPem(2048));
  return *pem;
}

SignerOptions Options(Algorithm a) {
  SignerOptions o;
  o.domain = "Shop.Example";
  o.selector = a == Algorithm::kRsaSha256 ? "s2048" : "ed1";
  o.algorithm = a;
  o.private_key_pem = a == Algorithm::kRsaSha256 ? Rsa2048() : Ed25519Pem();
  return o;
}

const core::ManualClock& Clock() {
  static const core::ManualClock* clock =
      new core::ManualClock(absl::FromUnixSeconds(1700000000));
  return *clock;
}

std::unique_ptr<const DkimSigner> MakeSigner(const SignerOptions& o) {
  auto s = DkimSigner::Create(o, Clock());
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

constexpr absl::string_view kMessage =
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "Message-ID: <abc.1@mta.shop.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "From: Shop <news@shop.example>\r\n"
    "To: someone@example.org\r\n"
    "Subject: Weekly offers\r\n"
    "X-Campaign: 42\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello,\r\n"
    "..a line that starts with a dot\r\n"
    "\r\n";

std::string TagValue(absl::string_view header, absl::string_view tag) {
  // Unfold, then find "; tag=" or ": tag=".
  std::string flat = absl::StrReplaceAll(header, {{"\r\n\t", ""},
                                                  {"\r\n", ""}});
  for (absl::string_view part : absl::StrSplit(flat, ';')) {
    part = absl::StripLeadingAsciiWhitespace(part);
    if (absl::StartsWith(part, "DKIM-Signature:")) {
      part = absl::StripLeadingAsciiWhitespace(part.substr(15));
    }
    if (absl::StartsWith(part, absl::StrCat(tag, "="))) {
      return std::string(part.substr(tag.size() + 1));
    }
  }
  return "";
}

TEST(DkimSignerCreateTest, RejectsBadOptions) {
  auto expect_error = [](const SignerOptions& o, absl::string_view words) {
    auto s = DkimSigner::Create(o, Clock());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), testing::HasSubstr(words));
  };
  SignerOptions o = Options(Algorithm::kRsaSha256);
  o.algorithm = Algorithm::kEd25519Sha256;
  expect_error(o, "needs an Ed25519 key");
  o = Options(Algorithm::kEd25519Sha256);
  o.algorithm = Algorithm::kRsaSha256;
  expect_error(o, "needs an RSA key");
  o = Options(Algorithm::kRsaSha256);
  o.private_key_pem = RsaPem(768);
  expect_error(o, "768 bits");
  o.private_key_pem = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
  expect_error(o, "cannot parse the private key PEM");
  o.private_key_pem = "";
  expect_error(o, "exactly one of");
  o.private_key_file = "/nonexistent/dkim.pem";
  expect_error(o, "cannot read private key file /nonexistent/dkim.pem");
  o = Options(Algorithm::kRsaSha256);
  o.private_key_file = "/tmp/x.pem";
  expect_error(o, "exactly one of");
  o = Options(Algorithm::kRsaSha256);
  o.domain = "";
  expect_error(o, "domain");
  o = Options(Algorithm::kRsaSha256);
  o.selector = "a;b";
  expect_error(o, "selector");
  o = Options(Algorithm::kRsaSha256);
  o.headers = {"to", "subject"};
  expect_error(o, "must include From");
  o.headers = {"from", "x bad"};
  expect_error(o, "bad header name");
  EXPECT_FALSE(ParseAlgorithm("rsa-sha1").ok());
  EXPECT_EQ(*ParseAlgorithm("ED25519-SHA256"), Algorithm::kEd25519Sha256);
  EXPECT_EQ(*ParseAlgorithm("rsa"), Algorithm::kRsaSha256);
}

TEST(DkimSignerCreateTest, ReadsKeyFile) {
  std::string path = absl::StrCat(testing::TempDir(), "/ed.pem");
  std::ofstream(path) << Ed25519Pem();
  SignerOptions o = Options(Algorithm::kEd25519Sha256);
  o.private_key_pem.clear();
  o.private_key_file = path;
  auto from_file = MakeSigner(o);
  auto from_text = MakeSigner(Options(Algorithm::kEd25519Sha256));
  ASSERT_TRUE(from_file && from_text);
  EXPECT_EQ(from_file->dns_record(), from_text->dns_record());
  EXPECT_TRUE(absl::StartsWith(from_file->dns_record(),
                               "v=DKIM1; k=ed25519; p="));
  std::remove(path.c_str());
}

TEST(DkimSignerTest, HeaderShapeAndFolding) {
  for (Algorithm a : {Algorithm::kRsaSha256, Algorithm::kEd25519Sha256}) {
    auto signer = MakeSigner(Options(a));
    ASSERT_TRUE(signer);
    std::string header;
    ASSERT_TRUE(signer->Sign(kMessage, &header).ok());
    EXPECT_TRUE(absl::StartsWith(
        header, absl::StrCat("DKIM-Signature: v=1; a=", AlgorithmName(a),
                             "; c=relaxed/relaxed; d=shop.example;")))
        << header;
    ASSERT_TRUE(absl::EndsWith(header, "\r\n"));
    // Split a named copy: views into a temporary would dangle.
    const std::string unterminated = header.substr(0, header.size() - 2);
    std::vector<absl::string_view> lines =
        absl::StrSplit(unterminated, "\r\n");
    EXPECT_GT(lines.size(), 3u);
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_LE(lines[i].size(), 78u) << lines[i];
      if (i > 0) {
        EXPECT_EQ(lines[i].front(), '\t') << lines[i];
      }
      EXPECT_EQ(lines[i].find_first_of("\r\n"), absl::string_view::npos)
          << absl::CEscape(header);
    }
    EXPECT_EQ(TagValue(header, "s"), signer->selector());
    EXPECT_EQ(TagValue(header, "t"), "1700000000");
    // Present names only, in configured order; X-Campaign is not signed.
    EXPECT_EQ(TagValue(header, "h"),
              "from:to:subject:date:message-id:mime-version:content-type");
    size_t sig_bytes = a == Algorithm::kRsaSha256 ? 256 : 64;
    EXPECT_EQ(TagValue(header, "b").size(), 4 * ((sig_bytes + 2) / 3));
  }
}

TEST(DkimSignerTest, LongDomainStillFolds) {
  SignerOptions o = Options(Algorithm::kEd25519Sha256);
  o.domain = std::string(60, 'd') + ".example";
  o.selector = std::string(50, 's');
  auto signer = MakeSigner(o);
  std::string header;
  ASSERT_TRUE(signer->Sign("From: a@x\r\n\r\n", &header).ok());
  for (absl::string_view line : absl::StrSplit(header, "\r\n")) {
    EXPECT_LE(line.size(), 78u) << line;
  }
  EXPECT_EQ(TagValue(header, "d"), o.domain);
  EXPECT_EQ(TagValue(header, "s"), o.selector);
}

TEST(DkimSignerTest, BodyHashIsOfTheUnstuffedRelaxedBody) {
  auto signer = MakeSigner(Options(Algorithm::kEd25519Sha256));
  std::string header;
  ASSERT_TRUE(signer->Sign(kMessage, &header).ok());
  // Independently: the canonical body written out by hand.
  const std::string body = "Hello,\r\n.a line that starts with a dot\r\n";
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(body.data()), body.size(), digest);
  uint8_t b64[64];
  size_t n = EVP_EncodeBlock(b64, digest, sizeof(digest));
  EXPECT_EQ(TagValue(header, "bh"),
            std::string(reinterpret_cast<char*>(b64), n));
}

TEST(DkimSignerTest, Ed25519IsDeterministicAndUsesTheBottomMostDuplicate) {
  auto signer = MakeSigner(Options(Algorithm::kEd25519Sha256));
  auto sign = [&](absl::string_view m) {
    std::string h;
    EXPECT_TRUE(signer->SignAt(m, absl::FromUnixSeconds(1700000000), &h).ok());
    return h;
  };
  const std::string base = "From: a@shop.example\r\n";
  std::string both = base + "Subject: first\r\nSubject: second\r\n\r\nx\r\n";
  std::string second = base + "Subject: second\r\n\r\nx\r\n";
  std::string first = base + "Subject: first\r\n\r\nx\r\n";
  EXPECT_EQ(sign(both), sign(both));
  EXPECT_EQ(sign(both), sign(second));
  EXPECT_NE(sign(both), sign(first));
  // Relaxed: header case, WSP and folding do not change the signature.
  std::string loose =
      "FROM :   a@shop.example \r\nsubject: first\r\nSUBJECT:\r\n  second\r\n"
      "\r\nx   \r\n\r\n";
  EXPECT_EQ(sign(loose), sign(second));
  // The body does.
  EXPECT_NE(sign(base + "Subject: second\r\n\r\ny\r\n"), sign(second));
}

TEST(DkimSignerTest, NoFromIsFailedPrecondition) {
  auto signer = MakeSigner(Options(Algorithm::kEd25519Sha256));
  std::string header = "junk";
  absl::Status s = signer->Sign("To: a@b.example\r\n\r\nbody\r\n", &header);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DkimSignerTest, SignReusesTheCallersBuffer) {
  auto signer = MakeSigner(Options(Algorithm::kRsaSha256));
  std::string header;
  ASSERT_TRUE(signer->Sign(kMessage, &header).ok());
  const char* data = header.data();
  size_t size = header.size();
  ASSERT_TRUE(signer->Sign(kMessage, &header).ok());
  EXPECT_EQ(header.data(), data);
  EXPECT_EQ(header.size(), size);
}

TEST(DkimSignersTest, LooksUpDomainsCaseInsensitively) {
  auto set = DkimSigners::Create(
      {Options(Algorithm::kRsaSha256), Options(Algorithm::kEd25519Sha256)},
      Clock());
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->size(), 2u);
  EXPECT_TRUE(set->HasDomain("SHOP.example"));
  EXPECT_FALSE(set->HasDomain("example"));
  std::string headers = "stale";
  ASSERT_TRUE(set->SignFor("other.example", kMessage, &headers).ok());
  EXPECT_EQ(headers, "");
  ASSERT_TRUE(set->SignFor("sHoP.ExAmPlE", kMessage, &headers).ok());
  std::vector<std::string> sigs = absl::StrSplit(headers, "DKIM-Signature:",
                                                 absl::SkipEmpty());
  ASSERT_EQ(sigs.size(), 2u);
  EXPECT_THAT(sigs[0], testing::HasSubstr("a=rsa-sha256"));
  EXPECT_THAT(sigs[1], testing::HasSubstr("a=ed25519-sha256"));

  auto dup = DkimSigners::Create(
      {Options(Algorithm::kEd25519Sha256), Options(Algorithm::kEd25519Sha256)},
      Clock());
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(DkimSignersTest, AddressDomain) {
  EXPECT_EQ(AddressDomain("Shop <news@Shop.Example>"), "Shop.Example");
  EXPECT_EQ(AddressDomain("news@shop.example"), "shop.example");
  EXPECT_EQ(AddressDomain("\"a@b\" <c@d.example>"), "d.example");
  EXPECT_EQ(AddressDomain("nobody"), "");
}

}  // namespace
}  // namespace salvo::dkim
