// RecipientReader: NDJSON and RFC 4180 CSV records, blank lines, and the
// line/row named in each kind of error. Pure: no store, no loop.
#include "api/recipient_upload.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::api {
namespace {

using Result = RecipientReader::Result;
using Format = RecipientReader::Format;

// "where: message" of the first error, or "" when every record reads.
std::string FirstError(Format f, const std::string& body, int* records) {
  RecipientReader r(f, body);
  storage::Recipient rec;
  std::string where, message;
  *records = 0;
  for (;;) {
    Result res = r.Next(&rec, &where, &message);
    if (res == Result::kEnd) return "";
    if (res == Result::kError) return where + ": " + message;
    ++*records;
  }
}

TEST(RecipientReaderTest, FormatFor) {
  Format f;
  EXPECT_TRUE(RecipientReader::FormatFor("application/x-ndjson", &f));
  EXPECT_EQ(f, Format::kNdjson);
  EXPECT_TRUE(RecipientReader::FormatFor("Text/CSV; charset=utf-8", &f));
  EXPECT_EQ(f, Format::kCsv);
  EXPECT_FALSE(RecipientReader::FormatFor("application/json", &f));
}

TEST(RecipientReaderTest, CsvQuotingAndLineEndings) {
  const std::string body =
      "email,name,note\r\n"
      "a@example.com,\"Smith, Ann\",\"two\r\nlines\"\r\n"
      "\n"
      "b@example.com,,\"\"\"q\"\"\"";  // no final line break
  RecipientReader r(Format::kCsv, body);
  storage::Recipient rec;
  std::string where, message;
  ASSERT_EQ(r.Next(&rec, &where, &message), Result::kRecord) << message;
  EXPECT_EQ(rec.address(), "a@example.com");
  ASSERT_EQ(rec.fields_size(), 2);
  EXPECT_EQ(rec.fields(0).name(), "name");
  EXPECT_EQ(rec.fields(0).value(), "Smith, Ann");
  EXPECT_EQ(rec.fields(1).value(), "two\r\nlines");
  ASSERT_EQ(r.Next(&rec, &where, &message), Result::kRecord) << message;
  EXPECT_EQ(rec.fields(0).value(), "");
  EXPECT_EQ(rec.fields(1).value(), "\"q\"");
  EXPECT_TRUE(r.AtEnd());
  EXPECT_EQ(r.Next(&rec, &where, &message), Result::kEnd);
  EXPECT_EQ(r.records(), 2);
}

TEST(RecipientReaderTest, CsvErrorsNameTheRow) {
  int n = 0;
  EXPECT_EQ(FirstError(Format::kCsv, "mail,name\n", &n),
            "row 1: the header row must start with \"email\"");
  EXPECT_EQ(FirstError(Format::kCsv, "email,a,a\n", &n),
            "row 1: header column \"a\" appears twice");
  EXPECT_EQ(FirstError(Format::kCsv, "email,a\nx@example.com,1\ny@example.com\n",
                       &n),
            "row 3: has 1 fields, the header 2");
  EXPECT_EQ(n, 1);
  EXPECT_EQ(FirstError(Format::kCsv, "email\n\"x@example.com\n", &n),
            "row 2: unterminated quoted field");
  EXPECT_EQ(FirstError(Format::kCsv, "email\nx\"@example.com\n", &n),
            "row 2: a quote inside an unquoted field (use \"...\" around it)");
  EXPECT_EQ(FirstError(Format::kCsv, "email\n\"x@example.com\"z\n", &n),
            "row 2: text after a closing quote");
  EXPECT_EQ(FirstError(Format::kCsv, "", &n), "");
}

TEST(RecipientReaderTest, NdjsonRecordsAndErrorsNameTheLine) {
  int n = 0;
  EXPECT_EQ(FirstError(Format::kNdjson,
                       "{\"email\":\"a@example.com\",\"data\":{\"k\":\"v\"}}\n"
                       "\r\n"
                       "{\"email\":\"b@example.com\"}",
                       &n),
            "");
  EXPECT_EQ(n, 2);
  EXPECT_EQ(FirstError(Format::kNdjson,
                       "{\"email\":\"a@example.com\"}\n\n{\"email\":\"bad\"}\n",
                       &n),
            "line 3: email: not a valid address");
  EXPECT_EQ(FirstError(Format::kNdjson, "{\"email\":\"a@example.com\",\"x\":1}",
                       &n),
            "line 1: x: unknown field");
  EXPECT_EQ(FirstError(Format::kNdjson,
                       "{\"email\":\"a@example.com\",\"data\":{\"k\":1}}", &n),
            "line 1: data.k: must be a string");
  EXPECT_EQ(FirstError(Format::kNdjson, "{\"data\":{}}", &n),
            "line 1: email: is required");
  EXPECT_EQ(FirstError(Format::kNdjson, "[1]", &n),
            "line 1: must be a JSON object");
}

// The fast NDJSON path and the rapidjson path read the same records: lines
// in the common shape, and lines that need the DOM (escapes, other key
// order, spacing, unicode), give equal protos.
TEST(RecipientReaderTest, NdjsonFastPathMatchesTheDomPath) {
  const std::string body =
      "{\"email\":\"a@x.example\",\"data\":{\"n\":\"A\",\"m\":\"\"}}\n"
      " { \"email\" : \"b@x.example\" , \"data\" : { } } \r\n"
      "{\"email\":\"c@x.example\"}\n"
      "{\"data\":{\"n\":\"D\"},\"email\":\"d@x.example\"}\n"
      "{\"email\":\"e@x.example\",\"data\":{\"n\":\"q\\\"uote \\u00e9\"}}\n"
      "{\"email\":\"f@x.example\",\"data\":{\"n\":\"caf\xc3\xa9\"}}\n";
  RecipientReader r(Format::kNdjson, body);
  storage::Recipient rec;
  std::string where, message;
  std::vector<std::string> got;
  while (r.Next(&rec, &where, &message) == Result::kRecord) {
    std::string s = rec.address();
    for (const auto& f : rec.fields()) s += "|" + f.name() + "=" + f.value();
    got.push_back(s);
  }
  EXPECT_EQ(message, "");
  const std::vector<std::string> want = {
      "a@x.example|n=A|m=", "b@x.example", "c@x.example", "d@x.example|n=D",
      "e@x.example|n=q\"uote \xc3\xa9", "f@x.example|n=caf\xc3\xa9"};
  EXPECT_EQ(got, want);
  // Not the fast shape and not valid either: the DOM path words the error.
  int records = 0;
  EXPECT_EQ(FirstError(Format::kNdjson,
                       "{\"email\":\"a@x.example\",\"data\":{\"n\":1}}\n",
                       &records),
            "line 1: data.n: must be a string");
  EXPECT_EQ(FirstError(Format::kNdjson,
                       "{\"email\":\"a@x.example\"}\n{\"email\":\"bad\"}\n",
                       &records),
            "line 2: email: not a valid address");
  EXPECT_EQ(records, 1);
}

// A body fed in pieces: CompleteEnd finds where whole records end (a quoted
// CSV line break is not an end) and SetInput carries header and line count.
TEST(RecipientReaderTest, PiecesThroughCompleteEndAndSetInput) {
  const std::string body =
      "email,note\na@x.example,\"one\ntwo\"\nb@x.example,\"\"\"\"\nc@x.example,z";
  for (size_t piece = 1; piece <= body.size(); ++piece) {
    RecipientReader r(Format::kCsv, absl::string_view());
    std::string pending;
    size_t complete = 0, scanned = 0;
    bool in_quotes = false;
    storage::Recipient rec;
    std::string where, message, got;
    auto drain = [&] {
      Result res;
      while ((res = r.Next(&rec, &where, &message)) == Result::kRecord) {
        got += rec.address() + "=" + rec.fields(0).value() + ";";
      }
      EXPECT_EQ(res, Result::kEnd) << piece << " " << where << ": " << message;
      const size_t used = r.consumed();
      pending.erase(0, used);
      complete -= used;
      scanned -= used;
    };
    for (size_t i = 0; i < body.size(); i += piece) {
      pending += body.substr(i, piece);
      complete = RecipientReader::CompleteEnd(Format::kCsv, pending, complete,
                                              &scanned, &in_quotes);
      r.SetInput(absl::string_view(pending.data(), complete));
      drain();
    }
    r.SetInput(pending);
    drain();
    EXPECT_EQ(got, "a@x.example=one\ntwo;b@x.example=\";c@x.example=z;")
        << piece;
    EXPECT_EQ(r.lines(), 4);
  }
}

}  // namespace
}  // namespace salvo::api
