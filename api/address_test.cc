// Mail address syntax: RFC 5321 mailboxes and "Name <addr>".
#include "api/address.h"

#include <string>

#include "gtest/gtest.h"

namespace salvo::api {
namespace {

TEST(AddressTest, ValidMailboxes) {
  for (const char* a :
       {"a@example.com", "first.last+tag@sub.example.co.uk",
        "\"quoted\"@example.com", "\"q\\\"x\"@example.com", "a@[127.0.0.1]",
        "a@[IPv6:::1]", "x!#$%&'*+-/=?^_`{|}~@e-x.com"}) {
    EXPECT_TRUE(IsValidMailbox(a)) << a;
  }
}

TEST(AddressTest, InvalidMailboxes) {
  const std::string local65(65, 'a');
  const std::string long_domain = std::string(63, 'd') + "." +
                                  std::string(63, 'd') + "." +
                                  std::string(63, 'd') + "." +
                                  std::string(63, 'd') + ".com";
  const std::string total255 =
      std::string(64, 'a') + "@" + std::string(63, 'b') + "." +
      std::string(63, 'c') + "." + std::string(62, 'd');
  for (const std::string& a : std::vector<std::string>{
           "", "plain", "@example.com", "a@", "a@localhost", "a..b@example.com",
           ".a@example.com", "a.@example.com", "a b@example.com",
           "a@exa mple.com", "a\r\n@example.com", std::string("a\0@x.com", 8),
           "a@-x.com", "a@x-.com", "a@x..com", "\"a b\"@example.com",
           "\"unterminated@example.com", "a@[300.1.1.1]", "a@[IPv6:zz]",
           local65 + "@example.com", "a@" + long_domain, total255,
           "ü@example.com", "a@b@example.com"}) {
    EXPECT_FALSE(IsValidMailbox(a)) << a;
  }
}

TEST(AddressTest, NameAddr) {
  absl::string_view display, addr;
  ASSERT_TRUE(ParseNameAddr(" Shop News <news@shop.example.com> ", &display,
                            &addr));
  EXPECT_EQ(display, "Shop News");
  EXPECT_EQ(addr, "news@shop.example.com");
  ASSERT_TRUE(ParseNameAddr("bare@example.com", &display, &addr));
  EXPECT_EQ(display, "");
  EXPECT_EQ(addr, "bare@example.com");
  EXPECT_FALSE(ParseNameAddr("Shop <bad>", &display, &addr));
  EXPECT_FALSE(ParseNameAddr("Sh>op <a@example.com>", &display, &addr));
  EXPECT_FALSE(ParseNameAddr("no-brackets a@example.com", &display, &addr));
  EXPECT_EQ(DomainOf("a@Example.COM"), "Example.COM");
}

TEST(AddressTest, HeaderNames) {
  EXPECT_TRUE(IsValidHeaderName("X-Campaign"));
  EXPECT_TRUE(IsValidHeaderName("List-Unsubscribe"));
  EXPECT_FALSE(IsValidHeaderName(""));
  EXPECT_FALSE(IsValidHeaderName("Bad Name"));
  EXPECT_FALSE(IsValidHeaderName("Colon:"));
  EXPECT_FALSE(IsValidHeaderName(std::string(77, 'x')));
}

}  // namespace
}  // namespace salvo::api
