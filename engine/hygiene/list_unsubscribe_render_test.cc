// The renderer's List-Unsubscribe support (render::RenderInput::
// list_unsubscribe) with a value built by hygiene: golden message
// (testdata/list_unsubscribe.ref, LF line ends), folding without RFC 2047,
// replacement of the content's own header, raw messages, and no header when
// the field is empty. Regenerate the golden after an intended change with:
//   SALVO_UPDATE_GOLDENS=1 bazel run //engine/hygiene:list_unsubscribe_render_test
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/hygiene/list_unsubscribe.h"
#include "engine/render/template.h"
#include "engine/render/test_decode.h"
#include "gtest/gtest.h"

namespace salvo::hygiene {
namespace {

using render::CompiledContent;
using render::RenderInput;

const absl::Time kDate = absl::FromUnixSeconds(1700000000);

storage::Content TextContent() {
  storage::Content c;
  c.set_id(7);
  c.set_from("Shop <news@shop.example>");
  c.set_subject("Hello");
  c.set_text("Hi {{email}}\n");
  storage::Header* h = c.add_headers();
  h->set_name("X-Campaign");
  h->set_value("spring");
  return c;
}

std::string ListUnsubscribe(absl::string_view rcpt) {
  HygieneOptions o;
  o.unsubscribe_secret = "golden-secret";
  o.unsubscribe_base_url = "https://mail.shop.example";
  o.unsubscribe_mailto_domain = "unsub.shop.example";
  std::string v;
  EXPECT_TRUE(AppendListUnsubscribe(o, {"tenant1", 7, rcpt}, &v).ok());
  return v;
}

std::string MustRender(const storage::Content& content,
                       absl::string_view list_unsubscribe,
                       absl::string_view rcpt = "ann@example.org") {
  auto compiled = CompiledContent::Compile(content);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  if (!compiled.ok()) return "";
  RenderInput in;
  in.rcpt = rcpt;
  in.message_id = "m1@mta.shop.example";
  in.date = kDate;
  in.list_unsubscribe = list_unsubscribe;
  std::string out;
  absl::Status s = (*compiled)->Render(in, &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

void ExpectWireForm(absl::string_view wire) {
  ASSERT_TRUE(absl::EndsWith(wire, "\r\n"));
  for (size_t i = 0; i < wire.size(); ++i) {
    if (wire[i] == '\n') {
      ASSERT_TRUE(i > 0 && wire[i - 1] == '\r') << i;
    }
    if (wire[i] == '\r') {
      ASSERT_TRUE(i + 1 < wire.size() && wire[i + 1] == '\n') << i;
    }
  }
  for (absl::string_view line : absl::StrSplit(wire, "\r\n")) {
    ASSERT_LE(line.size(), 998u);
  }
}

int CountHeader(const render::testing::Message& m, absl::string_view name) {
  int n = 0;
  for (const auto& h : m.headers) n += absl::EqualsIgnoreCase(h.first, name);
  return n;
}

TEST(ListUnsubscribeRenderTest, Golden) {
  const std::string value = ListUnsubscribe("ann@example.org");
  const std::string wire = MustRender(TextContent(), value);
  ExpectWireForm(wire);
  const std::string path = "engine/hygiene/testdata/list_unsubscribe.ref";
  const char* update = std::getenv("SALVO_UPDATE_GOLDENS");
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (update != nullptr && workspace != nullptr) {
    std::ofstream(absl::StrCat(workspace, "/", path), std::ios::binary)
        << render::testing::ToLf(wire);
    return;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in.good()) << "missing golden " << path;
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(render::testing::ToLf(wire), want.str());
}

TEST(ListUnsubscribeRenderTest, FoldedBetweenUrisAndUnfoldsToTheValue) {
  const std::string value = ListUnsubscribe("ann@example.org");
  const std::string wire = MustRender(TextContent(), value);
  const auto msg =
      render::testing::ParseMessage(render::testing::UndotStuff(wire));
  EXPECT_EQ(CountHeader(msg, "List-Unsubscribe"), 1);
  EXPECT_EQ(msg.Header("List-Unsubscribe"), value);
  EXPECT_EQ(msg.Header("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
  EXPECT_EQ(wire.find("=?"), std::string::npos);  // never RFC 2047
  // After the content's own headers, before the body's MIME headers.
  const size_t own = wire.find("X-Campaign: spring\r\n");
  const size_t lu = wire.find("List-Unsubscribe: ");
  const size_t ct = wire.find("Content-Type: ");
  ASSERT_NE(own, std::string::npos);
  EXPECT_LT(own, lu);
  EXPECT_LT(lu, ct);
  // Folded only at the space between the two URIs: each URI is whole.
  const std::string head = wire.substr(lu, wire.find("List-Unsubscribe-Post") - lu);
  EXPECT_NE(head.find(",\r\n <https://mail.shop.example/v1/unsubscribe/"),
            std::string::npos)
      << head;
}

TEST(ListUnsubscribeRenderTest, EmptyValueAddsNothing) {
  const std::string with = MustRender(TextContent(), ListUnsubscribe("a@b.cd"));
  const std::string without = MustRender(TextContent(), "");
  EXPECT_EQ(without.find("List-Unsubscribe"), std::string::npos);
  EXPECT_NE(with.find("List-Unsubscribe"), std::string::npos);  // control
}

TEST(ListUnsubscribeRenderTest, ReplacesTheContentsOwnHeader) {
  storage::Content c = TextContent();
  storage::Header* h = c.add_headers();
  h->set_name("list-unsubscribe");
  h->set_value("<mailto:old@shop.example>");
  const auto kept = render::testing::ParseMessage(MustRender(c, ""));
  EXPECT_EQ(CountHeader(kept, "List-Unsubscribe"), 1);
  EXPECT_EQ(CountHeader(kept, "List-Unsubscribe-Post"), 0);
  const std::string value = ListUnsubscribe("ann@example.org");
  const auto replaced = render::testing::ParseMessage(MustRender(c, value));
  EXPECT_EQ(CountHeader(replaced, "List-Unsubscribe"), 1);
  EXPECT_EQ(replaced.Header("List-Unsubscribe"), value);
}

TEST(ListUnsubscribeRenderTest, RawMessages) {
  storage::Content raw;
  raw.set_id(3);
  raw.set_raw("From: a@b.example\nTo: c@d.example\nSubject: x\n\nbody\n");
  const std::string value = ListUnsubscribe("c@d.example");
  const std::string out = MustRender(raw, value, "c@d.example");
  ExpectWireForm(out);
  const auto msg = render::testing::ParseMessage(out);
  EXPECT_EQ(msg.Header("List-Unsubscribe"), value);
  EXPECT_EQ(msg.Header("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");

  storage::Content own = raw;
  own.set_raw(
      "From: a@b.example\nList-Unsubscribe: <mailto:u@b.example>\n\nbody\n");
  const auto kept =
      render::testing::ParseMessage(MustRender(own, value, "c@d.example"));
  EXPECT_EQ(CountHeader(kept, "List-Unsubscribe"), 1);
  EXPECT_EQ(kept.Header("List-Unsubscribe"), "<mailto:u@b.example>");
}

TEST(ListUnsubscribeRenderTest, UriTooLongForALineIsAnError) {
  auto compiled = CompiledContent::Compile(TextContent());
  ASSERT_TRUE(compiled.ok());
  RenderInput in;
  in.rcpt = "a@b.example";
  in.message_id = "m@h";
  in.date = kDate;
  const std::string huge = absl::StrCat("<https://h.example/", std::string(990, 'x'), ">");
  in.list_unsubscribe = huge;
  std::string out;
  EXPECT_EQ((*compiled)->Render(in, &out).code(),
            absl::StatusCode::kInvalidArgument);
  const std::string fits = absl::StrCat("<https://h.example/", std::string(900, 'x'), ">");
  in.list_unsubscribe = fits;
  ASSERT_TRUE((*compiled)->Render(in, &out).ok());
  ExpectWireForm(out);
}

}  // namespace
}  // namespace salvo::hygiene
