// DKIM relaxed canonicalization (RFC 6376 3.4.2, 3.4.4) over a message in
// SMTP wire form: CRLF lines, dot-stuffed (a line starting with "." carries
// one extra "." that is removed here), without the final ".". Pure: bytes in,
// canonical bytes out through a Sink, which is any object with
// `void Append(absl::string_view)` (a hash context in the signer, a string in
// tests). Nothing is copied or allocated. Any thread.
#ifndef SALVO_ENGINE_DKIM_CANON_H_
#define SALVO_ENGINE_DKIM_CANON_H_

#include <string.h>  // memrchr

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

// As CanonicalizeBodyRelaxed (the same bytes out), but lines that are
// already canonical (no TAB, no SP pair, no WSP before the line end, no
// leading ".", CRLF-ended, not empty) go to the sink as one long span of the
// input per run, found by one SIMD scan: a hash sink sees a few large
// Append calls instead of two per line. The signer uses this one.
template <typename Sink>
void CanonicalizeBodyRelaxedRuns(absl::string_view body, Sink& sink);

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

// True when the byte at i of p[0, n) may need rewriting, or starts or ends a
// line that may: a TAB; a SP before SP, CR or LF; an LF not after CR, or
// before ".", CR or LF (the next line is stuffed or empty).
inline bool IsSpecialAt(const char* p, size_t n, size_t i) {
  const char c = p[i];
  if (c == '\t') return true;
  const char next = i + 1 < n ? p[i + 1] : '\n';
  if (c == ' ') return next == ' ' || next == '\r' || next == '\n';
  if (c == '\n') {
    return i == 0 || p[i - 1] != '\r' || next == '.' || next == '\r' ||
           next == '\n';
  }
  return false;
}

// Offset of the first special byte (IsSpecialAt) in [from, end), or end.
// 16 bytes a step with SSE2.
inline size_t NextSpecial(const char* p, size_t n, size_t from, size_t end) {
  size_t i = from;
#if defined(__SSE2__)
  if (i == 0 && i < end) {
    if (IsSpecialAt(p, n, 0)) return 0;
    i = 1;
  }
  const __m128i space = _mm_set1_epi8(' ');
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  for (; i + 16 <= end && i + 17 <= n; i += 16) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
    __m128i prev =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i - 1));
    __m128i b_eol = _mm_or_si128(_mm_cmpeq_epi8(b, cr), _mm_cmpeq_epi8(b, lf));
    __m128i sp_hit = _mm_and_si128(
        _mm_cmpeq_epi8(a, space),
        _mm_or_si128(b_eol, _mm_cmpeq_epi8(b, space)));
    __m128i lf_hit = _mm_and_si128(
        _mm_cmpeq_epi8(a, lf),
        _mm_or_si128(_mm_or_si128(b_eol, _mm_cmpeq_epi8(b, dot)),
                     _mm_andnot_si128(_mm_cmpeq_epi8(prev, cr),
                                      _mm_set1_epi8(-1))));
    __m128i hit =
        _mm_or_si128(_mm_cmpeq_epi8(a, tab), _mm_or_si128(sp_hit, lf_hit));
    int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return i + static_cast<size_t>(__builtin_ctz(mask));
  }
#endif
  for (; i < end; ++i) {
    if (IsSpecialAt(p, n, i)) return i;
  }
  return end;
}

// One line of CanonicalizeBodyRelaxed, starting at `pos`; empty lines are
// counted in *empty_lines and written before the next non-empty one.
// Returns the offset of the next line.
template <typename Sink>
size_t CanonicalizeBodyLine(absl::string_view body, size_t pos,
                            size_t* empty_lines, Sink& sink) {
  size_t next;
  absl::string_view line = NextLine(body, pos, &next);
  if (!line.empty() && line.front() == '.') line.remove_prefix(1);
  while (!line.empty() && IsWsp(line.back())) line.remove_suffix(1);
  if (line.empty()) {
    ++*empty_lines;
    return next;
  }
  for (; *empty_lines > 0; --*empty_lines) sink.Append("\r\n");
  if (HasTabOrDoubleSpace(line)) {
    AppendCompressed(line, sink);
  } else {
    sink.Append(line);
  }
  sink.Append("\r\n");
  return next;
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

template <typename Sink>
void CanonicalizeBodyRelaxedRuns(absl::string_view body, Sink& sink) {
  using canon_internal::CanonicalizeBodyLine;
  const char* p = body.data();
  const size_t n = body.size();
  // The last line (after the last LF) always takes the line path: it may
  // lack its CRLF. Runs are whole CRLF lines before it.
  size_t lf = body.rfind('\n');
  const size_t tail = lf == absl::string_view::npos ? 0 : lf + 1;
  size_t empty_lines = 0;
  size_t pos = 0;
  // A line start the scan cannot judge (the body's first line, a line after
  // one that took the line path): stuffed or empty lines take the line path.
  auto line_start_special = [&](size_t at) {
    return p[at] == '.' || p[at] == '\r' || p[at] == '\n';
  };
  while (pos < tail && line_start_special(pos)) {
    pos = CanonicalizeBodyLine(body, pos, &empty_lines, sink);
  }
  while (pos < tail) {
    size_t special = canon_internal::NextSpecial(p, n, pos, tail);
    const void* lf_before =
        special > pos ? memrchr(p + pos, '\n', special - pos) : nullptr;
    size_t line_start =
        lf_before == nullptr
            ? pos
            : static_cast<size_t>(static_cast<const char*>(lf_before) - p) + 1;
    if (line_start > pos) {
      for (; empty_lines > 0; --empty_lines) sink.Append("\r\n");
      sink.Append(absl::string_view(p + pos, line_start - pos));
    }
    pos = line_start;
    if (special == tail) break;
    pos = CanonicalizeBodyLine(body, pos, &empty_lines, sink);
    while (pos < tail && line_start_special(pos)) {
      pos = CanonicalizeBodyLine(body, pos, &empty_lines, sink);
    }
  }
  if (tail < n) CanonicalizeBodyLine(body, tail, &empty_lines, sink);
}

}  // namespace salvo::dkim

#endif  // SALVO_ENGINE_DKIM_CANON_H_
