// Tests for CompiledContent: golden messages (testdata/*.ref, stored with LF
// line ends), merge and escaping, decoding the output back, wire-form limits,
// errors, and no allocation per render once the buffer has grown.
// Regenerate the goldens after an intended change with:
//   SALVO_UPDATE_GOLDENS=1 bazel run //engine/render:template_test
#include "engine/render/template.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/render/test_decode.h"
#include "bench/alloc_counter.h"
#include "gtest/gtest.h"

// Counts heap allocations so a test can assert that Render() makes none.
using salvo::bench::g_allocations;

namespace salvo::render {
namespace {

using testing::DecodeHeaderValue;
using testing::Message;
using testing::ParseMessage;
using testing::QpDecode;
using testing::ToLf;
using testing::UndotStuff;

constexpr absl::string_view kGoldenDir = "engine/render/testdata/";
const absl::Time kDate = absl::FromUnixSeconds(1700000000);

std::shared_ptr<const CompiledContent> MustCompile(const storage::Content& c) {
  auto compiled = CompiledContent::Compile(c);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  return compiled.ok() ? *compiled : nullptr;
}

void ExpectWireForm(absl::string_view wire) {
  ASSERT_TRUE(absl::EndsWith(wire, "\r\n"));
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\r') {
      ASSERT_TRUE(i + 1 < wire.size() && wire[i + 1] == '\n') << "bare CR at " << i;
    } else if (wire[i] == '\n') {
      ASSERT_TRUE(i > 0 && wire[i - 1] == '\r') << "bare LF at " << i;
    }
  }
  for (absl::string_view line : absl::StrSplit(wire, "\r\n")) {
    ASSERT_LE(line.size(), 998u);
    ASSERT_FALSE(absl::StartsWith(line, ".") && !absl::StartsWith(line, ".."))
        << "not dot-stuffed: " << line;
  }
}

void ExpectGolden(absl::string_view name, absl::string_view wire) {
  ExpectWireForm(wire);
  const std::string path = absl::StrCat(kGoldenDir, name, ".ref");
  const char* update = std::getenv("SALVO_UPDATE_GOLDENS");
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (update != nullptr && workspace != nullptr) {
    std::ofstream(absl::StrCat(workspace, "/", path), std::ios::binary) << ToLf(wire);
    return;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << "missing golden " << path;
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(ToLf(wire), want.str()) << "golden " << path;
}

storage::Content TextContent() {
  storage::Content c;
  c.set_id(7);
  c.set_from("Shop <news@shop.example>");
  c.set_subject("Hello {{ first_name }}");
  c.set_text(
      "Hi {{first_name}},\n.a line that starts with a dot\nFrom here on, "
      "100% = {{{ score }}} \nbye {{email}}\n");
  c.set_reply_to("Help Desk <help@shop.example>");
  auto* h = c.add_headers();
  h->set_name("List-Unsubscribe");
  h->set_value("<mailto:unsub+{{email}}@shop.example>");
  return c;
}

storage::Content HtmlContent() {
  storage::Content c;
  c.set_id(8);
  c.set_from("news@shop.example");
  c.set_subject("Your order {{order}}");
  c.set_html(
      "<p>Dear {{name}},</p>\n<p>{{{banner}}}</p>\n<p>Sent to {{ email }}</p>\n");
  return c;
}

storage::Content BothContent() {
  storage::Content c;
  c.set_id(9);
  c.set_from("\"Café Müller\" <cafe@example.de>");
  c.set_subject("Grüße, {{name}}! Unser Angebot für diese Woche");
  c.set_text("Hallo {{name}},\nKaffee für 2,50 €.\n");
  c.set_html("<p>Hallo {{name}},</p><p>Kaffee f&uuml;r 2,50 &euro;.</p>");
  return c;
}

RenderInput Input(absl::Span<const MergeField> fields,
                  absl::string_view rcpt = "ann@example.org") {
  RenderInput in;
  in.rcpt = rcpt;
  in.fields = fields;
  in.message_id = "m1.abc@mta.shop.example";
  in.date = kDate;
  return in;
}

TEST(TemplateTest, TextOnlyGolden) {
  auto c = MustCompile(TextContent());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->fields(), (std::vector<std::string>{"first_name", "score"}));
  EXPECT_EQ(c->header_fields(), (std::vector<std::string>{"first_name"}));
  const MergeField fields[] = {{"first_name", "Ann"}, {"score", "99 "}};
  std::string out;
  ASSERT_TRUE(c->Render(Input(fields), &out).ok());
  ExpectGolden("text_only", out);

  const Message m = ParseMessage(UndotStuff(out));
  EXPECT_EQ(m.Header("Subject"), "Hello Ann");
  EXPECT_EQ(m.Header("To"), "ann@example.org");
  EXPECT_EQ(m.Header("List-Unsubscribe"),
            "<mailto:unsub+ann@example.org@shop.example>");
  EXPECT_EQ(QpDecode(m.body),
            "Hi Ann,\r\n.a line that starts with a dot\r\nFrom here on, "
            "100% = 99  \r\nbye ann@example.org\r\n");
}

TEST(TemplateTest, HtmlOnlyGoldenAndEscaping) {
  auto c = MustCompile(HtmlContent());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->fields(), (std::vector<std::string>{"banner", "name", "order"}));
  EXPECT_EQ(c->header_fields(), (std::vector<std::string>{"order"}));
  const MergeField fields[] = {{"order", "#12 & <b>"},
                               {"name", "<Tom & \"Jerry\" O'Neil>"},
                               {"banner", "<b>50% off</b>"}};
  std::string out;
  ASSERT_TRUE(c->Render(Input(fields, "o'brien&co@example.org"), &out).ok());
  ExpectGolden("html_only", out);

  const Message m = ParseMessage(UndotStuff(out));
  EXPECT_EQ(m.Header("Subject"), "Your order #12 & <b>");  // no escaping
  EXPECT_EQ(m.Header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(QpDecode(m.body),
            "<p>Dear &lt;Tom &amp; &quot;Jerry&quot; O&#39;Neil&gt;,</p>\r\n"
            "<p><b>50% off</b></p>\r\n<p>Sent to o&#39;brien&amp;co@example.org</p>\r\n");
}

TEST(TemplateTest, MultipartGoldenAndDecode) {
  auto c = MustCompile(BothContent());
  ASSERT_NE(c, nullptr);
  const MergeField fields[] = {{"name", "Jürgen"}};
  std::string out;
  ASSERT_TRUE(c->Render(Input(fields), &out).ok());
  ExpectGolden("multipart", out);

  const Message m = ParseMessage(UndotStuff(out));
  EXPECT_EQ(m.Header("From"), "Café Müller <cafe@example.de>");
  EXPECT_EQ(m.Header("Subject"), "Grüße, Jürgen! Unser Angebot für diese Woche");
  EXPECT_EQ(m.Header("MIME-Version"), "1.0");
  const std::string ct = m.Header("Content-Type");
  const size_t b = ct.find("boundary=\"");
  ASSERT_NE(b, std::string::npos);
  const std::string boundary = ct.substr(b + 10, ct.size() - b - 11);
  EXPECT_TRUE(absl::StartsWith(boundary, "=_salvo_"));
  // The first delimiter may open the body: split "\r\n" + body.
  std::vector<std::string> parts = absl::StrSplit(
      absl::StrCat("\r\n", m.body), absl::StrCat("\r\n--", boundary));
  ASSERT_EQ(parts.size(), 4u);  // preamble, text, html, "--\r\n"
  EXPECT_EQ(parts[0], "");
  EXPECT_EQ(parts[3], "--\r\n");
  EXPECT_TRUE(absl::EndsWith(m.body, absl::StrCat("--", boundary, "--\r\n")));
  const Message text = ParseMessage(absl::StripPrefix(parts[1], "\r\n"));
  const Message html = ParseMessage(absl::StripPrefix(parts[2], "\r\n"));
  EXPECT_EQ(text.Header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(html.Header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(QpDecode(text.body), "Hallo Jürgen,\r\nKaffee für 2,50 €.\r\n");
  EXPECT_EQ(QpDecode(html.body),
            "<p>Hallo Jürgen,</p><p>Kaffee f&uuml;r 2,50 &euro;.</p>");
}

TEST(TemplateTest, RawGolden) {
  storage::Content c;
  c.set_raw("From: a@b.example\nTo: c@d.example\nSubject: raw\n\nline\n.dot\r\rend");
  auto compiled = MustCompile(c);
  ASSERT_NE(compiled, nullptr);
  EXPECT_TRUE(compiled->fields().empty());
  std::string out;
  ASSERT_TRUE(compiled->Render(Input({}), &out).ok());
  ExpectGolden("raw", out);

  // Date and Message-ID present: nothing is added.
  c.set_raw("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-id: <x@y>\r\n\r\nbody");
  compiled = MustCompile(c);
  ASSERT_NE(compiled, nullptr);
  ASSERT_TRUE(compiled->Render(Input({}), &out).ok());
  EXPECT_EQ(out, "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-id: <x@y>\r\n\r\nbody\r\n");
}

TEST(TemplateTest, LongSingleLineStaysUnder998) {
  storage::Content c;
  c.set_from("a@b.example");
  c.set_subject(std::string(5000, 's'));
  c.set_text(std::string(5000, 't') + "{{x}}");
  c.set_html(std::string(5000, 'h'));
  auto compiled = MustCompile(c);
  ASSERT_NE(compiled, nullptr);
  const std::string value(5000, 'v');
  const MergeField fields[] = {{"x", value}};
  std::string out;
  ASSERT_TRUE(compiled->Render(Input(fields), &out).ok());
  ExpectWireForm(out);
  const Message m = ParseMessage(UndotStuff(out));
  EXPECT_EQ(m.Header("Subject"), std::string(5000, 's'));
}

TEST(TemplateTest, HeaderValuesLoseCrLf) {
  storage::Content c;
  c.set_from("a@b.example");
  c.set_subject("Hi {{name}}");
  c.set_text("x");
  auto compiled = MustCompile(c);
  ASSERT_NE(compiled, nullptr);
  const MergeField fields[] = {{"name", "Eve\r\nBcc: all@example.org"}};
  std::string out;
  ASSERT_TRUE(compiled->Render(Input(fields, "v@x\r\nBcc: y@z"), &out).ok());
  ExpectWireForm(out);
  EXPECT_FALSE(absl::StrContains(out, "\r\nBcc:")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Subject: Hi Eve  Bcc: all@example.org\r\n"));
}

TEST(TemplateTest, MissingFieldIsFailedPrecondition) {
  auto c = MustCompile(TextContent());
  ASSERT_NE(c, nullptr);
  const MergeField fields[] = {{"first_name", "Ann"}, {"other", "x"}};
  std::string out;
  const absl::Status s = c->Render(Input(fields), &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "\"score\"")) << s;
}

TEST(TemplateTest, MalformedTemplatesNameThePart) {
  struct Case {
    const char* part;
    const char* tmpl;
  };
  const Case cases[] = {
      {"subject", "Hi {{name"},    {"subject", "Hi {{}}"},
      {"html", "<p>{{ }}</p>"},    {"html", "{{{raw}}"},
      {"text", "{{na me}}"},       {"text", "{{a$b}}"},
      {"from", "{{x <a@b>"},       {"headers.X-Tag", "{{"},
  };
  for (const Case& tc : cases) {
    storage::Content c;
    c.set_from("a@b.example");
    c.set_text("ok");
    const absl::string_view part = tc.part;
    if (part == "subject") c.set_subject(tc.tmpl);
    if (part == "html") c.set_html(tc.tmpl);
    if (part == "text") c.set_text(tc.tmpl);
    if (part == "from") c.set_from(tc.tmpl);
    if (part == "headers.X-Tag") {
      auto* h = c.add_headers();
      h->set_name("X-Tag");
      h->set_value(tc.tmpl);
    }
    const auto compiled = CompiledContent::Compile(c);
    ASSERT_FALSE(compiled.ok()) << tc.tmpl;
    EXPECT_EQ(compiled.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(compiled.status().message(),
                                 absl::StrCat(part, ": ")))
        << compiled.status();
  }
}

TEST(TemplateTest, ReservedAndBadHeaderNamesRejected) {
  for (const char* name : {"Subject", "content-type", "Bad Name", "", ".dot"}) {
    storage::Content c = TextContent();
    auto* h = c.add_headers();
    h->set_name(name);
    h->set_value("v");
    EXPECT_EQ(CompiledContent::Compile(c).status().code(),
              absl::StatusCode::kInvalidArgument)
        << name;
  }
}

TEST(TemplateTest, RawLineOver998Rejected) {
  storage::Content c;
  c.set_raw("Subject: x\n\n" + std::string(999, 'a') + "\n");
  const auto compiled = CompiledContent::Compile(c);
  EXPECT_EQ(compiled.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(compiled.status().message(), "raw: "));
  c.set_raw("Subject: x\n\n" + std::string(998, 'a') + "\n");
  EXPECT_TRUE(CompiledContent::Compile(c).ok());
}

TEST(TemplateTest, LongFromStaysUnder998) {
  storage::Content c;
  c.set_from("{{name}} <news@shop.example>");
  c.set_text("x");
  auto compiled = MustCompile(c);
  ASSERT_NE(compiled, nullptr);
  const std::string name(3000, 'N');
  const MergeField fields[] = {{"name", name}};
  std::string out;
  ASSERT_TRUE(compiled->Render(Input(fields), &out).ok());
  ExpectWireForm(out);
  EXPECT_EQ(ParseMessage(out).Header("From"), name + " <news@shop.example>");
}

TEST(TemplateTest, NoAllocationPerRender) {
  auto c = MustCompile(BothContent());
  ASSERT_NE(c, nullptr);
  const MergeField fields[] = {{"name", "Jürgen"}};
  std::string out;
  ASSERT_TRUE(c->Render(Input(fields), &out).ok());  // grows the buffers
  const long probe = g_allocations.load();
  std::string* counted = new std::string(100, 'x');  // the counter works
  delete counted;
  ASSERT_GT(g_allocations.load(), probe);
  const long before = g_allocations.load();
  for (int i = 0; i < 10; ++i) {
    if (!c->Render(Input(fields), &out).ok()) FAIL();
  }
  EXPECT_EQ(g_allocations.load() - before, 0);
}

}  // namespace
}  // namespace salvo::render
