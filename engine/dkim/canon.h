// DKIM relaxed canonicalization (RFC 6376 3.4.2, 3.4.4) over a message in
// SMTP wire form: CRLF lines, dot-stuffed (a line starting with "." carries
// one extra "." that is removed here), without the final ".". Pure: bytes in,
// canonical bytes out through a Sink, which is any object with
// `void Append(absl::string_view)` (a hash context in the signer, a string in
// tests). Nothing is copied or allocated. Any thread.
#ifndef SALVO_ENGINE_DKIM_CANON_H_
#define SALVO_ENGINE_DKIM_CANON_H_

#include <cstddef>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/string_view.h"

namespace salvo::dkim {

// One header field as it appears in the wire message: `name` without the
// colon or trailing WSP; `raw` the whole field from the name to the end of
// its last line (continuation lines included, final CRLF included when
// present). A leading stuffed "." is already skipped in both.
struct HeaderField {
  absl::string_view name;
  absl::string_view raw;
};

// Splits the header block of a wire message. Calls on_field(const
// HeaderField&) for each field in order and returns the offset where the body
// starts (after the empty line), or message.size() when there is no body.
// Lines without a colon (malformed) are skipped.
template <typename OnField>
size_t SplitHeaders(absl::string_view message, OnField&& on_field);

// Writes the relaxed form of one header field: lowercase name, ":", the
// value unfolded, WSP runs as one SP, no WSP at either end, then CRLF unless
// with_crlf is false (the DKIM-Signature header itself is hashed without).
template <typename Sink>
void CanonicalizeHeaderRelaxed(const HeaderField& field, bool with_crlf,
                               Sink& sink);

// Writes the relaxed form of a wire-form body: dot-unstuffed, WSP runs as one
// SP, no WSP at line ends, no empty lines at the end, every line ended by
// CRLF. An empty body (or one of empty lines only) writes nothing.
template <typename Sink>
void CanonicalizeBodyRelaxed(absl::string_view body, Sink& sink);

// ---------------------------------------------------------------- details

namespace canon_internal {

inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }

// Returns the line starting at `pos` (without its line end) and sets *next to
// the offset after the line end. A line ends at LF; a CR right before it is
// dropped. The last line may have no LF.
inline absl::string_view NextLine(absl::string_view s, size_t pos,
                                  size_t* next) {
  size_t lf = s.find('\n', pos);
  size_t end = lf == absl::string_view::npos ? s.size() : lf;
  *next = lf == absl::string_view::npos ? s.size() : lf + 1;
  if (end > pos && s[end - 1] == '\r' && lf != absl::string_view::npos) --end;
  return s.substr(pos, end - pos);
}

// True when the line `s` holds a TAB or two SPs in a row, i.e. needs WSP
// compression. One SSE2 pass, 16 bytes a step, where available (a search for
// "  " stops at every SP of the text).
inline bool HasTabOrDoubleSpace(absl::string_view s) {
  const char* p = s.data();
  const size_t n = s.size();
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(' ');
  const __m128i tab = _mm_set1_epi8('\t');
  for (; i + 17 <= n; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    __m128i hit = _mm_or_si128(
        _mm_cmpeq_epi8(a, tab),
        _mm_and_si128(_mm_cmpeq_epi8(a, space), _mm_cmpeq_epi8(b, space)));
    if (_mm_movemask_epi8(hit) != 0) return true;
  }
#endif
  for (; i < n; ++i) {
    if (p[i] == '\t') return true;
    if (p[i] == ' ' && i + 1 < n && p[i + 1] == ' ') return true;
  }
  return false;
}

// Appends `text` with WSP runs written as one SP (the caller has already
// removed WSP at the ends it must not keep). Copies through a stack buffer,
// so a line full of words costs a few Append calls, not one per word.
template <typename Sink>
void AppendCompressed(absl::string_view text, Sink& sink) {
  char buf[256];
  size_t n = 0;
  bool in_wsp = false;
  for (char c : text) {
    if (IsWsp(c)) {
      if (in_wsp) continue;
      in_wsp = true;
      c = ' ';
    } else {
      in_wsp = false;
    }
    buf[n++] = c;
    if (n == sizeof(buf)) {
      sink.Append(absl::string_view(buf, n));
      n = 0;
    }
  }
  if (n > 0) sink.Append(absl::string_view(buf, n));
}

}  // namespace canon_internal

template <typename OnField>
size_t SplitHeaders(absl::string_view message, OnField&& on_field) {
  using canon_internal::IsWsp;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t next;
    absl::string_view line = canon_internal::NextLine(message, pos, &next);
    if (line.empty()) return next;  // the empty line ends the header block
    size_t start = pos;
    if (message[start] == '.') ++start;  // dot-stuffed header line
    // Continuation lines start with WSP.
    while (next < message.size() && IsWsp(message[next])) {
      size_t after;
      canon_internal::NextLine(message, next, &after);
      next = after;
    }
    absl::string_view raw = message.substr(start, next - start);
    size_t colon = raw.find(':');
    if (colon != absl::string_view::npos) {
      absl::string_view name = raw.substr(0, colon);
      while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
      on_field(HeaderField{name, raw});
    }
    pos = next;
  }
  return message.size();
}

template <typename Sink>
void CanonicalizeHeaderRelaxed(const HeaderField& field, bool with_crlf,
                               Sink& sink) {
  using canon_internal::IsWsp;
  // Lowercase name, in chunks of a small stack buffer.
  char lower[64];
  size_t n = 0;
  for (char c : field.name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    lower[n++] = c;
    if (n == sizeof(lower)) {
      sink.Append(absl::string_view(lower, n));
      n = 0;
    }
  }
  if (n > 0) sink.Append(absl::string_view(lower, n));
  sink.Append(":");
  // Value: unfold (drop line ends), compress WSP, trim both ends. Line ends
  // count as WSP boundaries only through the WSP that follows them.
  absl::string_view value = field.raw.substr(field.raw.find(':') + 1);
  bool pending_space = false;
  bool wrote = false;
  size_t i = 0;
  while (i < value.size()) {
    char c = value[i];
    if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
      i += 2;
      continue;
    }
    if (c == '\n') {
      ++i;
      continue;
    }
    if (IsWsp(c)) {
      pending_space = true;
      ++i;
      continue;
    }
    if (pending_space && wrote) sink.Append(" ");
    pending_space = false;
    size_t start = i;
    while (i < value.size() && !IsWsp(value[i]) && value[i] != '\r' &&
           value[i] != '\n') {
      ++i;
    }
    sink.Append(value.substr(start, i - start));
    wrote = true;
  }
  if (with_crlf) sink.Append("\r\n");
}

template <typename Sink>
void CanonicalizeBodyRelaxed(absl::string_view body, Sink& sink) {
  using canon_internal::IsWsp;
  size_t empty_lines = 0;  // held back: only written before a non-empty line
  size_t pos = 0;
  while (pos < body.size()) {
    size_t next;
    absl::string_view line = canon_internal::NextLine(body, pos, &next);
    pos = next;
    if (!line.empty() && line.front() == '.') line.remove_prefix(1);
    while (!line.empty() && IsWsp(line.back())) line.remove_suffix(1);
    if (line.empty()) {
      ++empty_lines;
      continue;
    }
    for (; empty_lines > 0; --empty_lines) sink.Append("\r\n");
    if (!canon_internal::HasTabOrDoubleSpace(line)) {
      // Nothing to compress (the common case): the line as it stands, with
      // its CRLF when the input has one right after it, in one call.
      const char* end = line.data() + line.size();
      if (end + 2 <= body.data() + body.size() && end[0] == '\r' &&
          end[1] == '\n') {
        sink.Append(absl::string_view(line.data(), line.size() + 2));
      } else {
        sink.Append(line);
        sink.Append("\r\n");
      }
      continue;
    }
    canon_internal::AppendCompressed(line, sink);
    sink.Append("\r\n");
  }
}

}  // namespace salvo::dkim

#endif  // SALVO_ENGINE_DKIM_CANON_H_
