// List-Unsubscribe values: the RFC 2369 form with and without mailto, the
// token inside verifies, and disabled options append nothing.
#include "engine/hygiene/list_unsubscribe.h"

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace salvo::hygiene {
namespace {

TEST(ListUnsubscribeTest, ValueForm) {
  std::string out;
  AppendListUnsubscribeValue("TOK", "unsub.example.com",
                             "https://mail.example.com/", &out);
  EXPECT_EQ(out,
            "<mailto:unsubscribe@unsub.example.com?subject=unsubscribe-TOK>, "
            "<https://mail.example.com/v1/unsubscribe/TOK>");
  out.clear();
  AppendListUnsubscribeValue("TOK", "", "https://h.example", &out);
  EXPECT_EQ(out, "<https://h.example/v1/unsubscribe/TOK>");
  out.clear();
  AppendListUnsubscribeValue("TOK", "d.example", "", &out);
  EXPECT_EQ(out, "");
}

TEST(ListUnsubscribeTest, SignedValueCarriesAVerifiableToken) {
  HygieneOptions o;
  o.unsubscribe_secret = "k";
  o.unsubscribe_base_url = "https://h.example";
  o.unsubscribe_mailto_domain = "d.example";
  std::string out = "prefix:";
  ASSERT_TRUE(AppendListUnsubscribe(o, {"t1", 9, "x@y.example"}, &out).ok());
  ASSERT_TRUE(absl::StartsWith(
      out, "prefix:<mailto:unsubscribe@d.example?subject=unsubscribe-"))
      << out;
  const size_t slash = out.rfind('/');
  ASSERT_NE(slash, std::string::npos);
  const std::string token = out.substr(slash + 1, out.size() - slash - 2);
  EXPECT_NE(out.find("?subject=unsubscribe-" + token + ">"), std::string::npos)
      << out;
  auto v = VerifyUnsubscribeToken("k", token);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->tenant, "t1");
  EXPECT_EQ(v->content_id, 9u);
  EXPECT_EQ(v->address, "x@y.example");
}

TEST(ListUnsubscribeTest, DisabledAppendsNothing) {
  HygieneOptions o;
  o.unsubscribe_base_url = "https://h.example";
  std::string out;
  ASSERT_TRUE(AppendListUnsubscribe(o, {"t1", 9, "x@y.example"}, &out).ok());
  EXPECT_EQ(out, "");
  o.unsubscribe_secret = "k";
  o.unsubscribe_base_url = "";
  ASSERT_TRUE(AppendListUnsubscribe(o, {"t1", 9, "x@y.example"}, &out).ok());
  EXPECT_EQ(out, "");
  o.unsubscribe_base_url = "https://h.example";
  EXPECT_FALSE(AppendListUnsubscribe(o, {"", 9, "x@y.example"}, &out).ok());
}

}  // namespace
}  // namespace salvo::hygiene
