// A campaign's content compiled once, rendered per recipient at send time.
// Compile() parses the subject/html/text/header templates ({{field}} inserts
// a merge value, HTML-escaped in the html part; {{{field}}} inserts it raw;
// {{email}} is the recipient address and needs no merge data). Render() writes
// a complete RFC 5322 / MIME message in SMTP wire form. Immutable after
// Compile(): shared across loops through shared_ptr<const>.
#ifndef SALVO_ENGINE_RENDER_TEMPLATE_H_
#define SALVO_ENGINE_RENDER_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "storage/records.pb.h"

namespace salvo::render {

using MergeField = std::pair<absl::string_view, absl::string_view>;

struct RenderInput {
  absl::string_view rcpt;                 // envelope recipient = To
  absl::Span<const MergeField> fields;   // this recipient's merge data
  absl::string_view message_id;           // without <>, e.g. "abc@host"
  absl::Time date;
  // Full List-Unsubscribe value (RFC 2369), ASCII, e.g. "<mailto:...>,
  // <https://...>"; empty = none. When set, Render adds List-Unsubscribe and
  // "List-Unsubscribe-Post: List-Unsubscribe=One-Click" (RFC 8058) after the
  // content's own headers, replacing any the content set itself.
  absl::string_view list_unsubscribe;
};

class CompiledContent {
 public:
  // InvalidArgument naming the field ("subject", "html", "headers.X-Foo")
  // for malformed templates.
  static absl::StatusOr<std::shared_ptr<const CompiledContent>> Compile(
      const storage::Content& content);

  // Merge fields the templates use ({{email}} excluded), sorted, unique.
  const std::vector<std::string>& fields() const { return fields_; }
  // Subset of fields() used in headers (subject, header values): their values
  // must not contain CR or LF.
  const std::vector<std::string>& header_fields() const {
    return header_fields_;
  }

  // Writes the message into *out (cleared first, capacity reused): CRLF line
  // ends, lines of at most 998 octets, dot-stuffed, without the final ".".
  // Adds Date, Message-ID, MIME-Version, From, To, Subject (RFC 2047 when not
  // ASCII), the content's own headers; multipart/alternative when both html
  // and text are set; bodies quoted-printable. A raw content is sent as given
  // (normalized to CRLF and dot-stuffed). FailedPrecondition when a used
  // field has no value.
  absl::Status Render(const RenderInput& in, std::string* out) const;

  virtual ~CompiledContent() = default;

 protected:
  CompiledContent() = default;
  std::vector<std::string> fields_;
  std::vector<std::string> header_fields_;

 private:
  // A template split once into literals and field references.
  struct Segment {
    enum Kind : uint8_t { kLiteral, kField, kRawField, kEmail };
    Kind kind;
    uint32_t begin;  // literal, or field name, as a range of Part::source
    uint32_t size;
    uint32_t field;  // index into fields_ for kField / kRawField
  };
  struct Part {
    std::string source;
    std::vector<Segment> segments;
    bool empty() const { return source.empty(); }
  };
  struct HeaderTemplate {
    std::string name;
    Part value;
  };

  [[nodiscard]] static absl::Status Parse(absl::string_view part_name,
                                          Part* part);
  // Appends the merged part (no escaping; for headers).
  void Merge(const Part& part, absl::Span<const absl::string_view> values,
             absl::string_view rcpt, std::string* out) const;
  // Appends the merged part quoted-printable; html escapes {{x}} values.
  // Returns true when the output ends at a line start.
  bool AppendQpBody(const Part& part, bool html,
                    absl::Span<const absl::string_view> values,
                    absl::string_view rcpt, std::string* out) const;
  absl::Status RenderRaw(const RenderInput& in, std::string* out) const;

  Part from_;
  Part subject_;
  Part html_;
  Part text_;
  std::vector<HeaderTemplate> headers_;
  std::string reply_to_line_;  // "Reply-To: ...\r\n" or empty
  std::string boundary_;       // multipart/alternative boundary
  // Raw contents: normalized, dot-stuffed message.
  bool is_raw_ = false;
  bool raw_has_date_ = false;
  bool raw_has_message_id_ = false;
  bool raw_has_list_unsubscribe_ = false;
  std::string raw_;
};

}  // namespace salvo::render

#endif  // SALVO_ENGINE_RENDER_TEMPLATE_H_
