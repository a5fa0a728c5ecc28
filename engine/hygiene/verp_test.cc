// VERP: round trip over edge ids, case-insensitive parse, and rejects.
#include "engine/hygiene/verp.h"

#include <random>

#include "gtest/gtest.h"

namespace salvo::hygiene {
namespace {

TEST(VerpTest, BuildsTheDocumentedForm) {
  EXPECT_EQ(BuildVerp({0x1a2b, 0xff}, "bounce.example.com"),
            "bounces+0000000000001a2b.00000000000000ff@bounce.example.com");
}

TEST(VerpTest, RoundTrip) {
  std::mt19937_64 rng(12345);
  std::vector<VerpIds> cases = {{0, 0}, {~0ULL, ~0ULL}, {1, ~0ULL}};
  for (int i = 0; i < 100; ++i) cases.push_back({rng(), rng()});
  for (const VerpIds& ids : cases) {
    const std::string addr = BuildVerp(ids, "b.example");
    auto back = ParseVerp(addr, "b.example");
    ASSERT_TRUE(back.has_value()) << addr;
    EXPECT_TRUE(*back == ids) << addr;
  }
}

TEST(VerpTest, ParseIsCaseInsensitive) {
  auto ids = ParseVerp("BOUNCES+0000000000001A2B.00000000000000FF@B.Example",
                       "b.example");
  ASSERT_TRUE(ids.has_value());
  EXPECT_EQ(ids->content_id, 0x1a2bu);
  EXPECT_EQ(ids->recipient_id, 0xffu);
}

TEST(VerpTest, Rejects) {
  const std::string good =
      "bounces+0000000000001a2b.00000000000000ff@b.example";
  ASSERT_TRUE(ParseVerp(good).has_value());  // negative control
  EXPECT_FALSE(ParseVerp(good, "other.example").has_value());
  EXPECT_FALSE(ParseVerp("bounce+0000000000001a2b.00000000000000ff@b.example"));
  EXPECT_FALSE(ParseVerp("bounces+000000000001a2b.00000000000000ff@b.example"));
  EXPECT_FALSE(ParseVerp("bounces+0000000000001a2b-00000000000000ff@b.example"));
  EXPECT_FALSE(ParseVerp("bounces+0000000000001a2g.00000000000000ff@b.example"));
  EXPECT_FALSE(ParseVerp("bounces+0000000000001a2b.00000000000000ff@"));
  EXPECT_FALSE(ParseVerp("bounces+0000000000001a2b.00000000000000ff"));
  EXPECT_FALSE(ParseVerp("user@example.com"));
}

}  // namespace
}  // namespace salvo::hygiene
