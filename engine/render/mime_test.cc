// Tests for the MIME helpers: quoted-printable, header folding and RFC 2047,
// dates and raw normalization, each decoded back with test_decode.
#include "engine/render/mime.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/render/test_decode.h"
#include "gtest/gtest.h"

namespace salvo::render {
namespace {

using testing::DecodeHeaderValue;
using testing::QpDecode;
using testing::UndotStuff;

std::string Qp(absl::string_view text) {
  std::string out;
  QpWriter qp(&out);
  qp.Write(text);
  qp.Finish();
  return out;
}

// Text with line breaks made canonical (CRLF), as QP decodes it.
std::string Canonical(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
    if (s[i] == '\r' || s[i] == '\n') {
      out.append("\r\n");
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<absl::string_view> Lines(absl::string_view wire) {
  return absl::StrSplit(wire, "\r\n");
}

void ExpectWireForm(absl::string_view wire, size_t max_line) {
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') {
      ASSERT_TRUE(i + 1 < wire.size() && wire[i + 1] == '\n') << "bare CR at " << i;
    } else if (wire[i] == '\n') {
      ASSERT_TRUE(i > 0 && wire[i - 1] == '\r') << "bare LF at " << i;
    }
  }
  for (absl::string_view line : Lines(UndotStuff(wire))) {
    EXPECT_LE(line.size(), max_line) << line;
  }
}

void ExpectQpRoundTrip(absl::string_view text) {
  const std::string qp = Qp(text);
  ExpectWireForm(qp, 76);
  for (absl::string_view line : Lines(qp)) {
    if (!line.empty()) {
      EXPECT_NE(line.back(), ' ') << "trailing space in " << line;
      EXPECT_NE(line.back(), '\t') << "trailing tab in " << line;
    }
    for (unsigned char c : line) EXPECT_LT(c, 0x80) << line;
  }
  EXPECT_EQ(QpDecode(UndotStuff(qp)), Canonical(text));
}

TEST(QpWriterTest, Examples) {
  EXPECT_EQ(Qp("hello world"), "hello world");
  EXPECT_EQ(Qp("a=b"), "a=3Db");
  EXPECT_EQ(Qp("caf\xc3\xa9"), "caf=C3=A9");
  EXPECT_EQ(Qp("end \nnext\t\r\nlast "), "end=20\r\nnext=09\r\nlast=20");
  EXPECT_EQ(Qp("From me\n.dot\nFrom"), "=46rom me\r\n..dot\r\n=46rom");
  EXPECT_EQ(Qp("a\rb\r\n\nc"), "a\r\nb\r\n\r\nc");
  EXPECT_EQ(Qp(std::string(80, 'x')),
            std::string(75, 'x') + "=\r\n" + std::string(5, 'x'));
}

TEST(QpWriterTest, RoundTripsAcrossWrites) {
  std::string out;
  {
    QpWriter qp(&out);
    qp.Write("line one \r");  // space before a CR split from its LF
    qp.Write("\nsecond");
    qp.WriteHtmlEscaped(" <b>&\"'");
    EXPECT_FALSE(qp.Finish());
  }
  EXPECT_EQ(QpDecode(out), "line one \r\nsecond &lt;b&gt;&amp;&quot;&#39;");
}

TEST(QpWriterTest, RoundTripsRandomText) {
  std::mt19937 rng(42);
  const std::string alphabet = std::string("ab .=F\t\r\n\xc3\xa9\x01~") + '\0';
  for (int round = 0; round < 300; ++round) {
    std::string text;
    const int n = rng() % 400;
    for (int i = 0; i < n; ++i) text.push_back(alphabet[rng() % alphabet.size()]);
    ExpectQpRoundTrip(text);
  }
}

TEST(QpWriterTest, LongSingleLine) {
  ExpectQpRoundTrip(std::string(5000, 'y'));
  ExpectQpRoundTrip(std::string(5000, '='));
  ExpectQpRoundTrip(std::string(5000, ' '));
}

std::string Header(absl::string_view name, absl::string_view value) {
  std::string out;
  AppendUnstructuredHeader(name, value, &out);
  return out;
}

// Header line -> value after the colon, decoded.
std::string Decoded(absl::string_view line, absl::string_view name) {
  EXPECT_EQ(line.substr(0, name.size() + 1), std::string(name) + ":");
  EXPECT_EQ(line.substr(line.size() - 2), "\r\n");
  return DecodeHeaderValue(line.substr(name.size() + 1, line.size() - name.size() - 3));
}

TEST(HeaderTest, AsciiStaysPlainAndFolds) {
  EXPECT_EQ(Header("Subject", "Hello there"), "Subject: Hello there\r\n");
  std::string words;
  for (int i = 0; i < 40; ++i) words += "word" + std::to_string(i) + " ";
  words += "end";
  const std::string h = Header("Subject", words);
  ExpectWireForm(h, 78);
  EXPECT_GT(Lines(h).size(), 3u);
  EXPECT_EQ(Decoded(h, "Subject"), words);
}

TEST(HeaderTest, CrLfBecomeSpaces) {
  EXPECT_EQ(Header("X-Tag", "a\r\nBcc: evil@x\nb\rc"),
            "X-Tag: a  Bcc: evil@x b c\r\n");
}

TEST(HeaderTest, NonAsciiIsEncodedAndFolded) {
  std::string subject;
  for (int i = 0; i < 30; ++i) subject += "Grüße aus Köln, 日本語 ";
  const std::string h = Header("Subject", subject);
  ExpectWireForm(h, 78);
  for (absl::string_view line : Lines(h)) {
    for (unsigned char c : line) ASSERT_LT(c, 0x80);
    // Every encoded-word is at most 75 octets.
    for (absl::string_view word : absl::StrSplit(line, ' ')) {
      if (word.substr(0, 2) == "=?") {
        EXPECT_LE(word.size(), 75u);
      }
    }
  }
  EXPECT_EQ(Decoded(h, "Subject"), subject);
  // Each word decodes to whole UTF-8 characters.
  for (absl::string_view line : Lines(h)) {
    for (absl::string_view word : absl::StrSplit(line, ' ')) {
      if (word.substr(0, 2) != "=?") continue;
      const std::string text = DecodeHeaderValue(word);
      ASSERT_FALSE(text.empty());
      EXPECT_NE(static_cast<unsigned char>(text[0]) & 0xC0, 0x80) << word;
    }
  }
}

TEST(HeaderTest, LongWordIsEncodedUnder998) {
  const std::string value(5000, 'z');
  const std::string h = Header("Subject", value);
  ExpectWireForm(h, 78);
  EXPECT_EQ(Decoded(h, "Subject"), value);
}

std::string Address(absl::string_view value) {
  std::string out;
  AppendAddressHeader("From", value, &out);
  return out;
}

// A display name short enough to quote but mostly '\\' or '"' doubles when
// escaped; it must still fit a line (found by the render fuzzer: a
// 1087-byte From line).
TEST(HeaderTest, DisplayNamesThatGrowWhenQuotedAreEncoded) {
  for (char c : {'\\', '"'}) {
    const std::string display = "Shop " + std::string(600, c);
    const std::string h = Address(display + " <news@shop.example>");
    ExpectWireForm(h, 998);
    EXPECT_NE(h.find("=?UTF-8?"), std::string::npos) << h;
  }
}

TEST(HeaderTest, Addresses) {
  EXPECT_EQ(Address("news@shop.example"), "From: news@shop.example\r\n");
  EXPECT_EQ(Address("Shop <news@shop.example>"),
            "From: Shop <news@shop.example>\r\n");
  EXPECT_EQ(Address("Shop, Inc. <n@s.example>"),
            "From: \"Shop, Inc.\" <n@s.example>\r\n");
  EXPECT_EQ(Address("\"Shop, Inc.\" <n@s.example>"),
            "From: \"Shop, Inc.\" <n@s.example>\r\n");
  const std::string h = Address("\"Café Müller\" <cafe@example.de>");
  EXPECT_EQ(h, "From: =?UTF-8?B?Q2Fmw6kgTcO8bGxlcg==?= <cafe@example.de>\r\n");
  EXPECT_EQ(Decoded(h, "From"), "Café Müller <cafe@example.de>");
}

TEST(DateTest, Rfc5322Utc) {
  std::string out;
  AppendRfc5322Date(absl::FromUnixSeconds(1700000000), &out);
  EXPECT_EQ(out, "Tue, 14 Nov 2023 22:13:20 +0000");
  out.clear();
  AppendRfc5322Date(absl::FromUnixSeconds(951782400), &out);  // leap day
  EXPECT_EQ(out, "Tue, 29 Feb 2000 00:00:00 +0000");
  out.clear();
  AppendRfc5322Date(absl::FromUnixSeconds(0), &out);
  EXPECT_EQ(out, "Thu, 01 Jan 1970 00:00:00 +0000");
}

TEST(RawTest, NormalizesAndStuffs) {
  std::string out;
  EXPECT_EQ(AppendNormalizedRaw("A: b\n\n.hi\r..x\r\nend", &out), 4u);
  EXPECT_EQ(out, "A: b\r\n\r\n..hi\r\n...x\r\nend\r\n");
}

}  // namespace
}  // namespace salvo::render
