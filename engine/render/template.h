// A campaign's content compiled once, rendered per recipient at send time.
// Compile() parses the subject/html/text/header templates ({{field}} inserts
// a merge value, HTML-escaped in the html part; {{{field}}} inserts it raw;
// {{email}} is the recipient address and needs no merge data). Render() writes
// a complete RFC 5322 / MIME message in SMTP wire form. Immutable after
// Compile(): shared across loops through shared_ptr<const>.
#ifndef SALVO_ENGINE_RENDER_TEMPLATE_H_
#define SALVO_ENGINE_RENDER_TEMPLATE_H_

#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

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
};

}  // namespace salvo::render

#endif  // SALVO_ENGINE_RENDER_TEMPLATE_H_
