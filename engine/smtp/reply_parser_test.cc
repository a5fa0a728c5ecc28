// ReplyParser: multi-line replies, enhanced codes, limits, any input split.
#include "engine/smtp/reply_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::smtp {
namespace {

struct Parsed {
  std::vector<Reply> replies;
  bool error = false;
  std::string why;
};

// chunk == 0: all at once; else pieces of `chunk` bytes.
Parsed ParseAll(const std::string& input, size_t chunk, bool esc = false) {
  ReplyParser p;
  p.set_enhanced_status_codes(esc);
  Parsed out;
  size_t step = chunk == 0 ? input.size() : chunk;
  for (size_t pos = 0; pos < input.size() && !out.error; pos += step) {
    absl::string_view in = absl::string_view(input).substr(pos, step);
    Reply r;
    while (true) {
      ReplyParser::Status s = p.Parse(&in, &r);
      if (s == ReplyParser::Status::kReply) {
        out.replies.push_back(r);
        continue;
      }
      if (s == ReplyParser::Status::kError) {
        out.error = true;
        out.why = p.error();
      }
      break;
    }
  }
  return out;
}

class SplitTest : public ::testing::TestWithParam<size_t> {};

TEST_P(SplitTest, MultiLineEhloAndSingleLines) {
  std::string in =
      "220 mx.example.com ESMTP\r\n"
      "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
      "250 ENHANCEDSTATUSCODES\r\n"
      "250 2.1.0 Ok\n"
      "550 5.1.1 <a@b>: unknown\r\n"
      "354\r\n";
  Parsed p = ParseAll(in, GetParam());
  ASSERT_FALSE(p.error) << p.why;
  ASSERT_EQ(p.replies.size(), 5u);
  EXPECT_EQ(p.replies[0].code, 220);
  EXPECT_EQ(p.replies[0].text, "mx.example.com ESMTP");
  EXPECT_EQ(p.replies[1].code, 250);
  EXPECT_EQ(p.replies[1].text,
            "mx.example.com\nPIPELINING\nSIZE 1000\nENHANCEDSTATUSCODES");
  EXPECT_EQ(p.replies[2].enhanced, "2.1.0");
  EXPECT_EQ(p.replies[2].text, "Ok");
  EXPECT_EQ(p.replies[3].code, 550);
  EXPECT_EQ(p.replies[3].enhanced, "5.1.1");
  EXPECT_EQ(p.replies[3].text, "<a@b>: unknown");
  EXPECT_TRUE(p.replies[3].IsPermanent());
  EXPECT_EQ(p.replies[4].code, 354);
  EXPECT_EQ(p.replies[4].text, "");
}

INSTANTIATE_TEST_SUITE_P(Splits, SplitTest, ::testing::Values(0, 1, 2, 7));

TEST(ReplyParserTest, EnhancedCodeNeedsMatchingClassUnlessAdvertised) {
  Parsed p = ParseAll("250 5.1.1 odd\r\n450 4.7.1 later\r\n250 2.0 short\r\n", 0);
  ASSERT_EQ(p.replies.size(), 3u);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[0].text, "5.1.1 odd");
  EXPECT_EQ(p.replies[1].enhanced, "4.7.1");
  EXPECT_EQ(p.replies[2].enhanced, "");
  Parsed q = ParseAll("250 5.1.1 odd\r\n", 0, /*esc=*/true);
  EXPECT_EQ(q.replies[0].enhanced, "5.1.1");
  Parsed r = ParseAll("550 5.1.10x bad\r\n550 5.1234.1 bad\r\n", 0, true);
  EXPECT_EQ(r.replies[0].enhanced, "");
  EXPECT_EQ(r.replies[1].enhanced, "");
}

TEST(ReplyParserTest, EnhancedCodeStrippedFromEveryLine) {
  Parsed p = ParseAll("550-5.7.1 first\r\n550 5.7.1 second\r\n", 1);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].enhanced, "5.7.1");
  EXPECT_EQ(p.replies[0].text, "first\nsecond");
  EXPECT_EQ(p.replies[0].ToString(), "550 5.7.1 first");
}

TEST(ReplyParserTest, Errors) {
  EXPECT_TRUE(ParseAll("hello\r\n", 0).error);
  EXPECT_TRUE(ParseAll("25\r\n", 0).error);
  EXPECT_TRUE(ParseAll("abc ok\r\n", 0).error);
  EXPECT_TRUE(ParseAll("650 out of range\r\n", 0).error);
  EXPECT_TRUE(ParseAll("270 out of range\r\n", 0).error);
  EXPECT_TRUE(ParseAll("250_x\r\n", 0).error);
  Parsed mixed = ParseAll("250-a\r\n251 b\r\n", 1);
  EXPECT_TRUE(mixed.error);
  EXPECT_EQ(mixed.why, "inconsistent code in multi-line reply");
}

TEST(ReplyParserTest, LineLimit) {
  std::string ok = "250 " + std::string(ReplyParser::kMaxLineOctets - 4, 'x');
  Parsed p = ParseAll(ok + "\r\n", 1);
  ASSERT_FALSE(p.error) << p.why;
  EXPECT_EQ(p.replies.size(), 1u);
  for (size_t chunk : {0, 1, 100}) {
    Parsed q = ParseAll(ok + "y\r\n", chunk);
    EXPECT_TRUE(q.error) << chunk;
    EXPECT_EQ(q.why, "reply line too long");
  }
  // Without any line end, the parser gives up instead of buffering forever.
  ReplyParser parser;
  std::string endless(10000, 'x');
  absl::string_view in = endless;
  Reply r;
  EXPECT_EQ(parser.Parse(&in, &r), ReplyParser::Status::kError);
}

TEST(ReplyParserTest, LineCountLimit) {
  std::string in;
  for (int i = 0; i < ReplyParser::kMaxLines - 1; ++i) in += "250-x\r\n";
  Parsed p = ParseAll(in + "250 end\r\n", 0);
  ASSERT_FALSE(p.error);
  EXPECT_EQ(p.replies.size(), 1u);
  Parsed q = ParseAll(in + "250-x\r\n250 end\r\n", 0);
  EXPECT_TRUE(q.error);
  EXPECT_EQ(q.why, "reply has too many lines");
}

TEST(ReplyParserTest, ErrorIsStickyUntilReset) {
  ReplyParser p;
  Reply r;
  absl::string_view bad = "xyz\r\n250 ok\r\n";
  EXPECT_EQ(p.Parse(&bad, &r), ReplyParser::Status::kError);
  absl::string_view good = "250 ok\r\n";
  EXPECT_EQ(p.Parse(&good, &r), ReplyParser::Status::kError);
  p.Reset();
  EXPECT_EQ(p.Parse(&good, &r), ReplyParser::Status::kReply);
  EXPECT_EQ(r.code, 250);
}

TEST(ReplyParserTest, MidReplyAndPartialLine) {
  ReplyParser p;
  Reply r;
  absl::string_view a = "250-a\r\n25";
  EXPECT_EQ(p.Parse(&a, &r), ReplyParser::Status::kNeedMore);
  EXPECT_TRUE(p.mid_reply());
  absl::string_view b = "0 b\r";
  EXPECT_EQ(p.Parse(&b, &r), ReplyParser::Status::kNeedMore);
  absl::string_view c = "\n";
  EXPECT_EQ(p.Parse(&c, &r), ReplyParser::Status::kReply);
  EXPECT_EQ(r.text, "a\nb");
  EXPECT_FALSE(p.mid_reply());
}

TEST(ReplyTest, ToStringAndStageName) {
  Reply r;
  r.code = 421;
  r.text = "closing\nmore";
  EXPECT_EQ(r.ToString(), "421 closing");
  r.synthetic = true;
  r.text = "timeout waiting for data reply";
  EXPECT_EQ(r.ToString(), "local: timeout waiting for data reply");
  EXPECT_STREQ(StageName(Stage::kDataEnd), "data_end");
  EXPECT_TRUE(r.IsTransient());
}

}  // namespace
}  // namespace salvo::smtp
