// base64url against RFC 4648 vectors and a round trip of every length.
#include "engine/hygiene/base64url.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::hygiene {
namespace {

std::string Enc(absl::string_view s) {
  std::string out;
  AppendBase64Url(reinterpret_cast<const uint8_t*>(s.data()), s.size(), &out);
  return out;
}

TEST(Base64UrlTest, Rfc4648Vectors) {
  EXPECT_EQ(Enc(""), "");
  EXPECT_EQ(Enc("f"), "Zg");
  EXPECT_EQ(Enc("fo"), "Zm8");
  EXPECT_EQ(Enc("foo"), "Zm9v");
  EXPECT_EQ(Enc("foob"), "Zm9vYg");
  EXPECT_EQ(Enc("fooba"), "Zm9vYmE");
  EXPECT_EQ(Enc("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Enc("\xfb\xff"), "-_8");  // the two url-safe characters
}

TEST(Base64UrlTest, RoundTripAndRejects) {
  std::string data;
  for (int n = 0; n < 70; ++n) {
    std::string enc = Enc(data);
    std::vector<uint8_t> back(enc.size());
    size_t m = 0;
    ASSERT_TRUE(DecodeBase64Url(enc, back.data(), &m)) << n;
    ASSERT_EQ(std::string(back.begin(), back.begin() + m), data);
    data.push_back(static_cast<char>(n * 37 + 11));
  }
  uint8_t out[16];
  size_t m;
  EXPECT_FALSE(DecodeBase64Url("Zm9v=", out, &m));  // padding
  EXPECT_FALSE(DecodeBase64Url("Zm+v", out, &m));   // standard alphabet
  EXPECT_FALSE(DecodeBase64Url("Zm9vY", out, &m));  // length % 4 == 1
  EXPECT_FALSE(DecodeBase64Url("Zh", out, &m));     // tail bits set
  EXPECT_TRUE(DecodeBase64Url("Zg", out, &m));
}

}  // namespace
}  // namespace salvo::hygiene
