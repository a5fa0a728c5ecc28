// Test-only decoders, written apart from the encoders in mime.cc so the tests
// check the renderer against an independent reading of the RFCs: SMTP
// dot-stuffing, quoted-printable (RFC 2045), header unfolding and RFC 2047
// encoded-words (B and Q). Input is wire text; any thread.
#ifndef SALVO_ENGINE_RENDER_TEST_DECODE_H_
#define SALVO_ENGINE_RENDER_TEST_DECODE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace salvo::render::testing {

// Removes the extra '.' of every line that starts with "..".
std::string UndotStuff(absl::string_view wire);
// Decodes quoted-printable: drops soft breaks, decodes =XX. Hard line breaks
// stay CRLF.
std::string QpDecode(absl::string_view qp);
// Unfolds a header value and decodes its encoded-words.
std::string DecodeHeaderValue(absl::string_view value);
// Replaces CRLF by LF.
std::string ToLf(absl::string_view s);

struct Message {
  std::vector<std::pair<std::string, std::string>> headers;  // raw, folded
  std::string body;
  // First header with this name (case-sensitive), unfolded and decoded.
  std::string Header(absl::string_view name) const;
};
// Splits an un-stuffed CRLF message into headers and body.
Message ParseMessage(absl::string_view message);

}  // namespace salvo::render::testing

#endif  // SALVO_ENGINE_RENDER_TEST_DECODE_H_
