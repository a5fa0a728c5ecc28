// See sample_message.h.
#include "engine/dkim/sample_message.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/render/template.h"

namespace salvo::dkim {

absl::StatusOr<std::string> RenderSampleMessage(size_t approx_bytes) {
  storage::Content c;
  c.set_id(42);
  c.set_from("Salvo Shop <news@shop.example>");
  c.set_envelope_from("bounce@shop.example");
  c.set_subject("{{first_name}}, your weekly offers are here");
  c.set_reply_to("help@shop.example");
  auto* h = c.add_headers();
  h->set_name("List-Unsubscribe");
  h->set_value("<https://shop.example/u/{{token}}>");
  h = c.add_headers();
  h->set_name("List-Unsubscribe-Post");
  h->set_value("List-Unsubscribe=One-Click");
  std::string html = "<html><body>\n<p>Hello {{first_name}},</p>\n";
  std::string text = "Hello {{first_name}},\n.a line the renderer stuffs\n";
  while (html.size() + text.size() < approx_bytes * 3 / 4) {
    absl::StrAppend(&html,
                    "<p>This week: <b>sneakers</b> at 20% off, trail  \t"
                    "jackets, and more.</p>\n");
    absl::StrAppend(&text, "This week: sneakers at 20% off, trail jackets, "
                           "and more.  \n");
  }
  absl::StrAppend(&html, "</body></html>\n");
  c.set_html(html);
  c.set_text(text);
  auto compiled = render::CompiledContent::Compile(c);
  if (!compiled.ok()) return compiled.status();
  render::MergeField fields[] = {{"first_name", "Ada"}, {"token", "t0k3n"}};
  render::RenderInput in;
  in.rcpt = "ada@example.org";
  in.fields = fields;
  in.message_id = "2a.1@mta.shop.example";
  in.date = absl::FromUnixSeconds(1700000000);
  std::string out;
  absl::Status s = (*compiled)->Render(in, &out);
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::string> RenderCampaignMessage(size_t body_bytes) {
  storage::Content c;
  c.set_id(42);
  c.set_from("Salvo Shop <news@shop.example>");
  c.set_envelope_from("bounce@shop.example");
  c.set_subject("Your order {{order}}, {{first_name}}");
  auto* h = c.add_headers();
  h->set_name("X-Campaign");
  h->set_value("bench");
  const std::string para =
      "<p>Dear {{first_name}}, your order {{order}} ships today. "
      "Thank you for shopping with us.</p>\n";
  const std::string line =
      "Dear {{first_name}}, your order {{order}} ships today.\n";
  std::string html = "<html><body>\n";
  for (size_t i = 0; i < std::max<size_t>(1, body_bytes / 2 / para.size());
       ++i) {
    html += para;
  }
  html += "</body></html>\n";
  std::string text;
  for (size_t i = 0; i < std::max<size_t>(1, body_bytes / 2 / line.size());
       ++i) {
    text += line;
  }
  c.set_html(html);
  c.set_text(text);
  auto compiled = render::CompiledContent::Compile(c);
  if (!compiled.ok()) return compiled.status();
  render::MergeField fields[] = {{"first_name", "Customer 4711"},
                                 {"order", "#104711"}};
  render::RenderInput in;
  in.rcpt = "user4711@d011.bench.test";
  in.fields = fields;
  in.message_id = "2a.1267@mta.shop.example";
  in.date = absl::FromUnixSeconds(1700000000);
  std::string out;
  absl::Status s = (*compiled)->Render(in, &out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace salvo::dkim
