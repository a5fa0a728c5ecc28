// CompiledContent: parses a Content's templates once (Compile, any thread) and
// renders one recipient's message into a reused buffer (Render, any thread,
// concurrently: the object is immutable and scratch space is thread-local).
#include "engine/render/template.h"

#include <algorithm>
#include <cstdio>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/render/mime.h"

namespace salvo::render {
namespace {

constexpr absl::string_view kEmailField = "email";
constexpr size_t kMaxRawLine = 998;
constexpr size_t kMaxHeaderName = 76;

constexpr absl::string_view kTextPartHeaders =
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n";
constexpr absl::string_view kHtmlPartHeaders =
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n";

// Headers the renderer writes itself; a content may not set them.
constexpr absl::string_view kReservedHeaders[] = {
    "From",         "To",           "Subject",
    "Date",         "Message-ID",   "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "Reply-To",
    "Bcc"};

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '.' || c == '-';
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

absl::Status CheckHeaderName(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("headers: empty header name");
  }
  for (char c : name) {
    if (c < 33 || c > 126 || c == ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("headers.", name, ": invalid character in name"));
    }
  }
  if (name.size() > kMaxHeaderName) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers.", name.substr(0, 20), "...: name too long"));
  }
  if (name.front() == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("headers.", name, ": name may not start with '.'"));
  }
  for (absl::string_view reserved : kReservedHeaders) {
    if (absl::EqualsIgnoreCase(name, reserved)) {
      return absl::InvalidArgumentError(
          absl::StrCat("headers.", name, ": set by the renderer"));
    }
  }
  return absl::OkStatus();
}

constexpr absl::string_view kListUnsubscribe = "List-Unsubscribe";
constexpr absl::string_view kListUnsubscribePost = "List-Unsubscribe-Post";

// Appends "List-Unsubscribe: value" folded at whitespace near 78 columns
// (never inside a URI, never RFC 2047: the value is ASCII URIs) and the
// RFC 8058 "List-Unsubscribe-Post" line. Controls become spaces.
// InvalidArgument when one URI cannot fit a 998-octet line.
absl::Status AppendListUnsubscribeLines(absl::string_view value,
                                        std::string* out) {
  out->append(kListUnsubscribe.data(), kListUnsubscribe.size());
  out->append(":");
  size_t col = kListUnsubscribe.size() + 1;
  bool first = true;
  size_t i = 0;
  while (i < value.size()) {
    const auto is_break = [](char c) {
      return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
    };
    while (i < value.size() && is_break(value[i])) ++i;
    const size_t begin = i;
    while (i < value.size() && !is_break(value[i])) ++i;
    if (i == begin) break;
    const absl::string_view word = value.substr(begin, i - begin);
    if (kListUnsubscribe.size() + 2 + word.size() > kMaxRawLine) {
      return absl::InvalidArgumentError(
          "list_unsubscribe: a URI exceeds the 998-octet line limit");
    }
    if (!first && col + 1 + word.size() > 78) {
      out->append("\r\n");
      col = 0;
    }
    out->push_back(' ');
    out->append(word.data(), word.size());
    col += 1 + word.size();
    first = false;
  }
  if (first) return absl::InvalidArgumentError("list_unsubscribe: blank");
  out->append("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
  return absl::OkStatus();
}

bool IsListUnsubscribeHeader(absl::string_view name) {
  return absl::EqualsIgnoreCase(name, kListUnsubscribe) ||
         absl::EqualsIgnoreCase(name, kListUnsubscribePost);
}

// Scratch space for merged header values, one per thread.
std::string& HeaderScratch() {
  thread_local std::string scratch;
  scratch.clear();
  return scratch;
}

}  // namespace

absl::Status CompiledContent::Parse(absl::string_view part_name, Part* part) {
  const absl::string_view s = part->source;
  size_t pos = 0;
  auto error = [&](absl::string_view what, size_t at) {
    return absl::InvalidArgumentError(
        absl::StrCat(part_name, ": ", what, " at offset ", at));
  };
  while (pos < s.size()) {
    const size_t open = s.find("{{", pos);
    const size_t literal_end = open == absl::string_view::npos ? s.size() : open;
    if (literal_end > pos) {
      part->segments.push_back({Segment::kLiteral, static_cast<uint32_t>(pos),
                                static_cast<uint32_t>(literal_end - pos), 0});
    }
    if (open == absl::string_view::npos) break;
    const bool raw = open + 2 < s.size() && s[open + 2] == '{';
    const absl::string_view close = raw ? "}}}" : "}}";
    size_t i = open + (raw ? 3 : 2);
    while (i < s.size() && IsSpace(s[i])) ++i;
    const size_t name_begin = i;
    while (i < s.size() && IsNameChar(s[i])) ++i;
    const size_t name_end = i;
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i >= s.size()) return error("unclosed braces", open);
    if (name_begin == name_end) {
      return error(s[i] == '}' ? "empty field name" : "invalid field name",
                   open);
    }
    if (s.substr(i, close.size()) != close) {
      if (s[i] == '}' ||
          s.find("}}", i) == absl::string_view::npos) {
        return error("unclosed braces", open);
      }
      return error("invalid field name", open);
    }
    const absl::string_view name = s.substr(name_begin, name_end - name_begin);
    Segment::Kind kind = name == kEmailField ? Segment::kEmail
                         : raw              ? Segment::kRawField
                                            : Segment::kField;
    part->segments.push_back({kind, static_cast<uint32_t>(name_begin),
                              static_cast<uint32_t>(name.size()), 0});
    pos = i + close.size();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const CompiledContent>> CompiledContent::Compile(
    const storage::Content& content) {
  std::shared_ptr<CompiledContent> c(new CompiledContent());
  char id_hex[17];
  std::snprintf(id_hex, sizeof(id_hex), "%016llx",
                static_cast<unsigned long long>(content.id()));

  if (!content.raw().empty()) {
    c->is_raw_ = true;
    if (AppendNormalizedRaw(content.raw(), &c->raw_) > kMaxRawLine) {
      return absl::InvalidArgumentError("raw: a line exceeds 998 octets");
    }
    // Which of Date / Message-ID the header section already has.
    absl::string_view rest = c->raw_;
    while (!rest.empty()) {
      const size_t eol = rest.find("\r\n");
      const absl::string_view line = rest.substr(0, eol);
      if (line.empty()) break;  // end of the header section
      if (absl::StartsWithIgnoreCase(line, "date:")) c->raw_has_date_ = true;
      if (absl::StartsWithIgnoreCase(line, "message-id:")) {
        c->raw_has_message_id_ = true;
      }
      const size_t colon = line.find(':');
      if (colon != absl::string_view::npos &&
          IsListUnsubscribeHeader(
              absl::StripTrailingAsciiWhitespace(line.substr(0, colon)))) {
        c->raw_has_list_unsubscribe_ = true;
      }
      rest.remove_prefix(eol == absl::string_view::npos ? rest.size()
                                                        : eol + 2);
    }
    return std::shared_ptr<const CompiledContent>(std::move(c));
  }

  if (content.from().empty()) {
    return absl::InvalidArgumentError("from: empty");
  }
  c->from_.source = content.from();
  c->subject_.source = content.subject();
  c->html_.source = content.html();
  c->text_.source = content.text();
  if (absl::Status s = Parse("from", &c->from_); !s.ok()) return s;
  if (absl::Status s = Parse("subject", &c->subject_); !s.ok()) return s;
  if (absl::Status s = Parse("html", &c->html_); !s.ok()) return s;
  if (absl::Status s = Parse("text", &c->text_); !s.ok()) return s;
  for (const storage::Header& h : content.headers()) {
    if (absl::Status s = CheckHeaderName(h.name()); !s.ok()) return s;
    HeaderTemplate& t = c->headers_.emplace_back();
    t.name = h.name();
    t.value.source = h.value();
    if (absl::Status s = Parse(absl::StrCat("headers.", h.name()), &t.value);
        !s.ok()) {
      return s;
    }
  }
  if (!content.reply_to().empty()) {
    AppendAddressHeader("Reply-To", content.reply_to(), &c->reply_to_line_);
  }
  c->boundary_ = absl::StrCat("=_salvo_", id_hex);

  // Collect field names, then point each reference at its index.
  auto collect = [](const Part& p, std::vector<std::string>* names) {
    for (const Segment& seg : p.segments) {
      if (seg.kind == Segment::kField || seg.kind == Segment::kRawField) {
        names->emplace_back(p.source, seg.begin, seg.size);
      }
    }
  };
  auto sort_unique = [](std::vector<std::string>* v) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  };
  collect(c->from_, &c->header_fields_);
  collect(c->subject_, &c->header_fields_);
  for (const HeaderTemplate& h : c->headers_) collect(h.value, &c->header_fields_);
  sort_unique(&c->header_fields_);
  c->fields_ = c->header_fields_;
  collect(c->html_, &c->fields_);
  collect(c->text_, &c->fields_);
  sort_unique(&c->fields_);

  auto resolve = [&c](Part* p) {
    for (Segment& seg : p->segments) {
      if (seg.kind == Segment::kField || seg.kind == Segment::kRawField) {
        const absl::string_view name(p->source.data() + seg.begin, seg.size);
        seg.field = static_cast<uint32_t>(
            std::lower_bound(c->fields_.begin(), c->fields_.end(), name) -
            c->fields_.begin());
      }
    }
  };
  resolve(&c->from_);
  resolve(&c->subject_);
  resolve(&c->html_);
  resolve(&c->text_);
  for (HeaderTemplate& h : c->headers_) resolve(&h.value);
  return std::shared_ptr<const CompiledContent>(std::move(c));
}

void CompiledContent::Merge(const Part& part,
                            absl::Span<const absl::string_view> values,
                            absl::string_view rcpt, std::string* out) const {
  for (const Segment& seg : part.segments) {
    switch (seg.kind) {
      case Segment::kLiteral:
        out->append(part.source, seg.begin, seg.size);
        break;
      case Segment::kField:
      case Segment::kRawField:
        out->append(values[seg.field].data(), values[seg.field].size());
        break;
      case Segment::kEmail:
        out->append(rcpt.data(), rcpt.size());
        break;
    }
  }
}

bool CompiledContent::AppendQpBody(const Part& part, bool html,
                                   absl::Span<const absl::string_view> values,
                                   absl::string_view rcpt,
                                   std::string* out) const {
  QpWriter qp(out);
  for (const Segment& seg : part.segments) {
    absl::string_view v;
    switch (seg.kind) {
      case Segment::kLiteral:
        qp.Write(absl::string_view(part.source.data() + seg.begin, seg.size));
        continue;
      case Segment::kRawField:
        qp.Write(values[seg.field]);
        continue;
      case Segment::kField:
        v = values[seg.field];
        break;
      case Segment::kEmail:
        v = rcpt;
        break;
    }
    if (html) {
      qp.WriteHtmlEscaped(v);
    } else {
      qp.Write(v);
    }
  }
  return qp.Finish();
}

absl::Status CompiledContent::RenderRaw(const RenderInput& in,
                                        std::string* out) const {
  if (!raw_has_date_) {
    out->append("Date: ");
    AppendRfc5322Date(in.date, out);
    out->append("\r\n");
  }
  if (!raw_has_message_id_) {
    out->append("Message-ID: <");
    AppendSanitized(in.message_id, out);
    out->append(">\r\n");
  }
  // A raw message that brings its own List-Unsubscribe keeps it.
  if (!in.list_unsubscribe.empty() && !raw_has_list_unsubscribe_) {
    if (absl::Status s = AppendListUnsubscribeLines(in.list_unsubscribe, out);
        !s.ok()) {
      return s;
    }
  }
  out->append(raw_);
  return absl::OkStatus();
}

absl::Status CompiledContent::Render(const RenderInput& in,
                                     std::string* out) const {
  out->clear();
  if (is_raw_) return RenderRaw(in, out);

  // Resolve this recipient's values once: values[i] belongs to fields_[i].
  absl::InlinedVector<absl::string_view, 16> values(fields_.size());
  absl::InlinedVector<bool, 16> have(fields_.size(), false);
  for (const MergeField& f : in.fields) {
    auto it = std::lower_bound(fields_.begin(), fields_.end(), f.first);
    if (it == fields_.end() || *it != f.first) continue;
    const size_t i = it - fields_.begin();
    if (!have[i]) {  // the first value of a repeated name wins
      values[i] = f.second;
      have[i] = true;
    }
  }
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (!have[i]) {
      return absl::FailedPreconditionError(
          absl::StrCat("missing merge field \"", fields_[i], "\""));
    }
  }
  const absl::Span<const absl::string_view> vals(values.data(), values.size());

  std::string& scratch = HeaderScratch();
  Merge(from_, vals, in.rcpt, &scratch);
  AppendAddressHeader("From", scratch, out);
  AppendAddressHeader("To", in.rcpt, out);
  scratch.clear();
  Merge(subject_, vals, in.rcpt, &scratch);
  AppendUnstructuredHeader("Subject", scratch, out);
  out->append("Date: ");
  AppendRfc5322Date(in.date, out);
  out->append("\r\nMessage-ID: <");
  AppendSanitized(in.message_id, out);
  out->append(">\r\nMIME-Version: 1.0\r\n");
  out->append(reply_to_line_);
  const bool list_unsubscribe = !in.list_unsubscribe.empty();
  for (const HeaderTemplate& h : headers_) {
    if (list_unsubscribe && IsListUnsubscribeHeader(h.name)) continue;
    scratch.clear();
    Merge(h.value, vals, in.rcpt, &scratch);
    AppendUnstructuredHeader(h.name, scratch, out);
  }
  if (list_unsubscribe) {
    if (absl::Status s = AppendListUnsubscribeLines(in.list_unsubscribe, out);
        !s.ok()) {
      return s;
    }
  }

  const bool has_html = !html_.empty();
  const bool has_text = !text_.empty();
  if (has_html && has_text) {
    out->append("Content-Type: multipart/alternative; boundary=\"");
    out->append(boundary_);
    out->append("\"\r\n\r\n--");
    out->append(boundary_);
    out->append("\r\n");
    out->append(kTextPartHeaders.data(), kTextPartHeaders.size());
    out->append("\r\n");
    AppendQpBody(text_, /*html=*/false, vals, in.rcpt, out);
    out->append("\r\n--");
    out->append(boundary_);
    out->append("\r\n");
    out->append(kHtmlPartHeaders.data(), kHtmlPartHeaders.size());
    out->append("\r\n");
    AppendQpBody(html_, /*html=*/true, vals, in.rcpt, out);
    out->append("\r\n--");
    out->append(boundary_);
    out->append("--\r\n");
  } else if (has_html) {
    out->append(kHtmlPartHeaders.data(), kHtmlPartHeaders.size());
    out->append("\r\n");
    if (!AppendQpBody(html_, /*html=*/true, vals, in.rcpt, out)) {
      out->append("\r\n");
    }
  } else {
    out->append(kTextPartHeaders.data(), kTextPartHeaders.size());
    out->append("\r\n");
    if (!AppendQpBody(text_, /*html=*/false, vals, in.rcpt, out)) {
      out->append("\r\n");
    }
  }
  return absl::OkStatus();
}

}  // namespace salvo::render
