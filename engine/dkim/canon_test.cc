// Relaxed canonicalization: RFC 6376 3.4.6 example, trailing empty lines,
// dot-unstuffing, header splitting with continuation lines.
#include "engine/dkim/canon.h"

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace salvo::dkim {
namespace {

struct StringSink {
  std::string out;
  void Append(absl::string_view s) { out.append(s.data(), s.size()); }
};

// Both body forms; every body test also checks that they agree.
std::string Body(absl::string_view body) {
  StringSink sink;
  CanonicalizeBodyRelaxed(body, sink);
  StringSink runs;
  CanonicalizeBodyRelaxedRuns(body, runs);
  EXPECT_EQ(runs.out, sink.out) << "runs differ for body: " << body;
  return sink.out;
}

std::string Headers(absl::string_view message) {
  StringSink sink;
  SplitHeaders(message, [&](const HeaderField& f) {
    CanonicalizeHeaderRelaxed(f, true, sink);
  });
  return sink.out;
}

// RFC 6376 section 3.4.6, relaxed/relaxed.
TEST(CanonTest, Rfc6376Example) {
  const absl::string_view message =
      "A: X\r\n"
      "B : Y\t\r\n"
      "\tZ  \r\n"
      "\r\n"
      " C \r\n"
      "D \t E\r\n"
      "\r\n"
      "\r\n";
  StringSink headers;
  size_t body = SplitHeaders(message, [&](const HeaderField& f) {
    CanonicalizeHeaderRelaxed(f, true, headers);
  });
  EXPECT_EQ(headers.out, "a:X\r\nb:Y Z\r\n");
  EXPECT_EQ(Body(message.substr(body)), " C\r\nD E\r\n");
}

TEST(CanonTest, EmptyBodyIsEmpty) {
  EXPECT_EQ(Body(""), "");
  EXPECT_EQ(Body("\r\n\r\n  \r\n\t\r\n"), "");
}

TEST(CanonTest, TrailingEmptyLinesDroppedInnerOnesKept) {
  EXPECT_EQ(Body("a\r\n\r\n\r\nb\r\n\r\n \r\n"), "a\r\n\r\n\r\nb\r\n");
}

TEST(CanonTest, LastLineWithoutCrlfGetsOne) {
  EXPECT_EQ(Body("a  b \t"), "a b\r\n");
}

TEST(CanonTest, DotStuffedLinesAreUnstuffed) {
  EXPECT_EQ(Body("..\r\n..hidden\r\n.. x  \r\nend\r\n"),
            ".\r\n.hidden\r\n. x\r\nend\r\n");
  // A header line may be stuffed too.
  EXPECT_EQ(Headers("..X-Dot: v\r\n\r\n"), ".x-dot:v\r\n");
}

TEST(CanonTest, HeaderUnfoldsAndTrims) {
  EXPECT_EQ(Headers("Subject:   Hello\r\n \t  wide\r\n  world  \r\n\r\nb\r\n"),
            "subject:Hello wide world\r\n");
  EXPECT_EQ(Headers("X-Empty:\r\n\r\n"), "x-empty:\r\n");
  EXPECT_EQ(Headers("X-Ws: \t \r\n\r\n"), "x-ws:\r\n");
}

TEST(CanonTest, SplitHeadersFindsFieldsAndBody) {
  const absl::string_view message =
      "From: a@b.example\r\n"
      "To: c@d.example,\r\n"
      "  e@f.example\r\n"
      "no colon here\r\n"
      "Subject : hi\r\n"
      "\r\n"
      "body\r\n";
  std::vector<std::pair<std::string, std::string>> fields;
  size_t body = SplitHeaders(message, [&](const HeaderField& f) {
    fields.emplace_back(std::string(f.name), std::string(f.raw));
  });
  EXPECT_THAT(
      fields,
      testing::ElementsAre(
          testing::Pair("From", "From: a@b.example\r\n"),
          testing::Pair("To", "To: c@d.example,\r\n  e@f.example\r\n"),
          testing::Pair("Subject", "Subject : hi\r\n")));
  EXPECT_EQ(message.substr(body), "body\r\n");
}

TEST(CanonTest, NoBody) {
  const absl::string_view message = "From: a@b.example\r\n";
  EXPECT_EQ(SplitHeaders(message, [](const HeaderField&) {}), message.size());
}

TEST(CanonTest, LongHeaderNameIsLowercasedInChunks) {
  std::string name(150, 'Q');
  EXPECT_EQ(Headers(name + ": v\r\n\r\n"), std::string(150, 'q') + ":v\r\n");
}

// A plain, non-streaming reading of RFC 6376 3.4.4 over an unstuffed body
// with CRLF lines, to check the streaming one against.
std::string ReferenceBody(const std::string& wire) {
  std::vector<std::string> lines = absl::StrSplit(wire, "\r\n");
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (std::string& line : lines) {
    if (!line.empty() && line[0] == '.') line.erase(0, 1);  // unstuff
    std::string out;
    for (char c : line) {
      bool ws = c == ' ' || c == '\t';
      if (ws && !out.empty() && out.back() == ' ') continue;
      out.push_back(ws ? ' ' : c);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    line = out;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return "";
  return absl::StrJoin(lines, "\r\n") + "\r\n";
}

// Seeded random bodies from a small alphabet rich in the cases that matter.
TEST(CanonTest, StreamingBodyMatchesReference) {
  std::mt19937 rng(20240601);
  const char* pieces[] = {"a", "b.", ".", " ", "\t", "\r\n", "\r\n.",
                          "\r\n..", "\r\n \r\n", "xyz", "  \t "};
  for (int round = 0; round < 20000; ++round) {
    std::string body;
    int n = rng() % 24;
    for (int i = 0; i < n; ++i) body += pieces[rng() % 11];
    if (!body.empty() && rng() % 4 != 0) body += "\r\n";
    // The reference reads CRLF lines only; keep bodies without a bare CR.
    ASSERT_EQ(Body(body), ReferenceBody(body)) << "body: " << body;
  }
}

// The whole-body SIMD check against a byte loop: one TAB or one SP pair at
// every offset of strings long enough to cross several 16-byte steps.
TEST(CanonTest, HasTabOrDoubleSpaceAtEveryOffset) {
  using canon_internal::HasTabOrDoubleSpace;
  EXPECT_FALSE(HasTabOrDoubleSpace(""));
  EXPECT_FALSE(HasTabOrDoubleSpace(" "));
  EXPECT_TRUE(HasTabOrDoubleSpace("  "));
  for (size_t len = 1; len < 70; ++len) {
    std::string base;
    for (size_t i = 0; i < len; ++i) base += (i % 2 == 0) ? 'a' : ' ';
    EXPECT_FALSE(HasTabOrDoubleSpace(base)) << len;
    for (size_t at = 0; at < len; ++at) {
      std::string t = base;
      t[at] = '\t';
      EXPECT_TRUE(HasTabOrDoubleSpace(t)) << len << " " << at;
      if (at + 1 < len) {
        t = base;
        t[at] = ' ';
        t[at + 1] = ' ';
        EXPECT_TRUE(HasTabOrDoubleSpace(t)) << len << " " << at;
      }
    }
  }
}

// Long bodies of plain lines (the fast path) with and without one SP pair
// or TAB somewhere, against the reference.
TEST(CanonTest, PlainAndMixedLongBodiesMatchReference) {
  std::string plain;
  for (int i = 0; i < 40; ++i) {
    plain += (i % 7 == 0) ? "..dot stuffed line \r\n" : "some words here\r\n";
  }
  plain += "\r\n\r\n";
  ASSERT_EQ(Body(plain), ReferenceBody(plain));
  for (size_t at = 0; at + 1 < plain.size(); ++at) {
    if (plain[at] == '\r' || plain[at] == '\n') continue;
    std::string t = plain;
    t[at] = '\t';
    ASSERT_EQ(Body(t), ReferenceBody(t)) << at;
    if (plain[at + 1] == '\r') continue;
    t = plain;
    t[at] = ' ';
    t[at + 1] = ' ';
    ASSERT_EQ(Body(t), ReferenceBody(t)) << at;
  }
}

// Long seeded random bodies (many 16-byte scan steps), bare CR and LF
// included: the run form against the line-by-line form.
TEST(CanonTest, RunsMatchLineByLineOnLongRandomBodies) {
  std::mt19937 rng(20250107);
  const char* pieces[] = {"word", "b.", ".", " ", "\t", "\r\n", "\r\n.",
                          "\r\n..", "\r\n \r\n", "some longer words here",
                          "  \t ", "\n", "\r", "\r\n\r\n", "x "};
  constexpr int kPieces = sizeof(pieces) / sizeof(pieces[0]);
  for (int round = 0; round < 5000; ++round) {
    std::string body;
    int n = rng() % 300;
    for (int i = 0; i < n; ++i) {
      // Mostly plain words and CRLFs, so long clean runs occur.
      int k = rng() % 4 == 0 ? rng() % kPieces : (rng() % 2 ? 9 : 5);
      body += pieces[k];
    }
    if (rng() % 3 == 0) body += "\r\n";
    StringSink lines, runs;
    CanonicalizeBodyRelaxed(body, lines);
    CanonicalizeBodyRelaxedRuns(body, runs);
    ASSERT_EQ(runs.out, lines.out) << "round " << round << " body: " << body;
  }
}

}  // namespace
}  // namespace salvo::dkim
