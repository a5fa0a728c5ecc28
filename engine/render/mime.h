// MIME building blocks for the renderer, pure and allocation-free once the
// output string has grown: quoted-printable bodies (RFC 2045), folded and
// RFC 2047-encoded header fields, RFC 5322 dates, raw-message normalization.
// Everything appends SMTP wire form to a caller's std::string: CRLF line ends,
// lines of at most 998 octets, dot-stuffed. Stateless functions; a
// QpWriter belongs to one caller. Any thread.
#ifndef SALVO_ENGINE_RENDER_MIME_H_
#define SALVO_ENGINE_RENDER_MIME_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace salvo::render {

// Streams text into quoted-printable. Input line breaks (CRLF, bare LF, bare
// CR) become CRLF; lines hold at most 76 octets (75 plus a soft-break "=");
// '=', controls, non-ASCII, whitespace before a line break and an 'F' at line
// start ("From ") are encoded; a '.' at line start is dot-stuffed. Write()
// may be called many times (template segments); Finish() flushes.
class QpWriter {
 public:
  explicit QpWriter(std::string* out) : out_(out) {}
  QpWriter(const QpWriter&) = delete;
  QpWriter& operator=(const QpWriter&) = delete;
  ~QpWriter() { Flush(); }

  void Write(absl::string_view text);
  // Writes text with & < > " ' replaced by HTML entities.
  void WriteHtmlEscaped(absl::string_view text);
  // Flushes a held trailing space (encoded). Returns true when the output
  // ends at a line start (the body ended with a line break or was empty).
  bool Finish();

 private:
  void Put(unsigned char c);
  void EmitWhitespace(unsigned char ws, bool encoded);
  void HardBreak();
  void Flush() {
    out_->append(buf_, n_);
    n_ = 0;
  }
  void Reserve(size_t k) {
    if (n_ + k > sizeof(buf_)) Flush();
  }

  std::string* out_;
  size_t col_ = 0;              // octets on the current encoded line
  unsigned char held_ws_ = 0;   // space/tab waiting to see what follows
  bool after_cr_ = false;       // last input octet was CR (CRLF = one break)
  size_t n_ = 0;
  char buf_[1024];
};

// Appends "Name: value\r\n" for an unstructured field (Subject, custom
// headers). CR, LF and other controls in value become spaces. ASCII values are
// folded at spaces near 78 columns; non-ASCII values, or values with a word
// too long for a 998-octet line, become RFC 2047 B encoded-words of at most
// 75 octets, split on UTF-8 character boundaries.
void AppendUnstructuredHeader(absl::string_view name, absl::string_view value,
                              std::string* out);

// Appends "Name: display <addr>\r\n" for From / Reply-To from a value like
// `Shop <a@b>`, `"Shop, Inc." <a@b>` or `a@b`. A non-ASCII display name is
// RFC 2047 encoded (so is one too long for a line); an ASCII one with
// specials is quoted.
void AppendAddressHeader(absl::string_view name, absl::string_view value,
                         std::string* out);

// Appends `value` with CR/LF/controls replaced by spaces (no folding): for
// To and Message-ID.
void AppendSanitized(absl::string_view value, std::string* out);

// Appends an RFC 5322 date in UTC, e.g. "Tue, 14 Nov 2023 22:13:20 +0000".
void AppendRfc5322Date(absl::Time t, std::string* out);

// Appends raw message octets normalized to CRLF and dot-stuffed, ending with
// CRLF. Returns the longest line length (without CRLF, before stuffing).
size_t AppendNormalizedRaw(absl::string_view raw, std::string* out);

}  // namespace salvo::render

#endif  // SALVO_ENGINE_RENDER_MIME_H_
