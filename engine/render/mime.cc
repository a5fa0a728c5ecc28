// MIME building blocks: see mime.h. No allocation beyond growing `out`.
#include "engine/render/mime.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace salvo::render {
namespace {

constexpr size_t kQpMaxText = 75;    // + "=" soft break = 76 (RFC 2045)
constexpr size_t kFoldColumn = 78;   // RFC 5322 recommended line length
constexpr size_t kMaxEncodedWord = 75;  // RFC 2047
constexpr absl::string_view kWordPrefix = "=?UTF-8?B?";
constexpr size_t kWordOverhead = 12;  // "=?UTF-8?B?" + "?="
constexpr size_t kMaxPlainWord = 900;  // longer words force encoded-words

constexpr char kHex[] = "0123456789ABCDEF";
constexpr char kBase64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Octets a QP line may carry literally: printable ASCII except '='. Space and
// tab are handled apart (they must be encoded before a line break).
constexpr std::array<bool, 256> MakeQpSafe() {
  std::array<bool, 256> t{};
  for (int c = 33; c <= 126; ++c) t[c] = c != '=';
  return t;
}
constexpr std::array<bool, 256> kQpSafe = MakeQpSafe();

// Header octets: controls (but tab) become spaces so no CR/LF survives.
inline unsigned char Clean(unsigned char c) {
  return ((c < 0x20 && c != '\t') || c == 0x7f) ? ' ' : c;
}

inline bool IsWsp(unsigned char c) { return c == ' ' || c == '\t'; }

bool HasNonAscii(absl::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return true;
  }
  return false;
}

absl::string_view Trim(absl::string_view s) {
  while (!s.empty() && IsWsp(Clean(s.front()))) s.remove_prefix(1);
  while (!s.empty() && IsWsp(Clean(s.back()))) s.remove_suffix(1);
  return s;
}

void AppendClean(absl::string_view s, std::string* out) {
  for (unsigned char c : s) out->push_back(static_cast<char>(Clean(c)));
}

void AppendBase64Clean(absl::string_view s, std::string* out) {
  size_t i = 0;
  const size_t n = s.size();
  auto at = [&](size_t k) -> uint32_t {
    return Clean(static_cast<unsigned char>(s[k]));
  };
  for (; i + 3 <= n; i += 3) {
    uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    out->push_back(kBase64[v >> 18]);
    out->push_back(kBase64[(v >> 12) & 63]);
    out->push_back(kBase64[(v >> 6) & 63]);
    out->push_back(kBase64[v & 63]);
  }
  if (i < n) {
    uint32_t v = at(i) << 16 | (i + 1 < n ? at(i + 1) << 8 : 0);
    out->push_back(kBase64[v >> 18]);
    out->push_back(kBase64[(v >> 12) & 63]);
    out->push_back(i + 1 < n ? kBase64[(v >> 6) & 63] : '=');
    out->push_back('=');
  }
}

// Appends `text` as space-separated encoded-words, folding so each line stays
// within 78 columns; *col is the current column and is updated.
void AppendEncodedWords(absl::string_view text, size_t* col,
                        std::string* out) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    size_t width = 0;  // octets available for the word on this line
    if (*col + 1 < kFoldColumn) {
      width = std::min(kMaxEncodedWord, kFoldColumn - *col - 1);
    }
    size_t bytes = width > kWordOverhead ? (width - kWordOverhead) / 4 * 3 : 0;
    if (bytes < 6 && *col > 1) {  // too little room: continue on a new line
      out->append("\r\n");
      *col = 0;
      continue;
    }
    if (bytes == 0) bytes = 3;
    size_t chunk = std::min(bytes, n - i);
    // Never split a UTF-8 sequence across two encoded-words.
    while (chunk > 0 && i + chunk < n &&
           (static_cast<unsigned char>(text[i + chunk]) & 0xC0) == 0x80) {
      --chunk;
    }
    if (chunk == 0) chunk = std::min(bytes, n - i);  // not UTF-8: cut anyway
    const size_t before = out->size();
    out->push_back(' ');
    out->append(kWordPrefix.data(), kWordPrefix.size());
    AppendBase64Clean(text.substr(i, chunk), out);
    out->append("?=");
    *col += out->size() - before;
    i += chunk;
  }
}

// True when an ASCII display name must be quoted to be a valid phrase.
bool NeedsQuoting(absl::string_view display) {
  if (display.size() >= 2 && display.front() == '"' && display.back() == '"') {
    return false;
  }
  return display.find_first_of("()<>[]:;@\\,.\"") != absl::string_view::npos;
}

}  // namespace

void QpWriter::EmitWhitespace(unsigned char ws, bool encoded) {
  const size_t w = encoded ? 3 : 1;
  Reserve(8);
  if (col_ + w > kQpMaxText) {
    buf_[n_++] = '=';
    buf_[n_++] = '\r';
    buf_[n_++] = '\n';
    col_ = 0;
  }
  if (encoded) {
    buf_[n_++] = '=';
    buf_[n_++] = kHex[ws >> 4];
    buf_[n_++] = kHex[ws & 15];
  } else {
    buf_[n_++] = static_cast<char>(ws);
  }
  col_ += w;
}

void QpWriter::HardBreak() {
  if (held_ws_ != 0) {
    EmitWhitespace(held_ws_, /*encoded=*/true);
    held_ws_ = 0;
  }
  Reserve(2);
  buf_[n_++] = '\r';
  buf_[n_++] = '\n';
  col_ = 0;
}

void QpWriter::Put(unsigned char c) {
  if (held_ws_ != 0) {
    EmitWhitespace(held_ws_, /*encoded=*/false);
    held_ws_ = 0;
  }
  bool literal = kQpSafe[c];
  Reserve(8);
  if (col_ + (literal ? 1 : 3) > kQpMaxText) {
    buf_[n_++] = '=';
    buf_[n_++] = '\r';
    buf_[n_++] = '\n';
    col_ = 0;
  }
  if (col_ == 0 && c == 'F') literal = false;  // "From " at line start
  if (literal) {
    if (col_ == 0 && c == '.') buf_[n_++] = '.';  // dot-stuffing
    buf_[n_++] = static_cast<char>(c);
    col_ += 1;
  } else {
    buf_[n_++] = '=';
    buf_[n_++] = kHex[c >> 4];
    buf_[n_++] = kHex[c & 15];
    col_ += 3;
  }
}

void QpWriter::Write(absl::string_view text) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (held_ws_ == 0 && col_ != 0 && col_ < kQpMaxText) {
      // Fast path: literal octets in the middle of a line, and single spaces
      // followed by one (a space is only encoded before a line break).
      const size_t room = kQpMaxText - col_;
      Reserve(room);
      const size_t end = std::min(n, i + room);
      size_t j = i;
      char* dst = buf_ + n_;
      while (j < end) {
        const unsigned char d = p[j];
        if (kQpSafe[d]) {
          *dst++ = static_cast<char>(d);
          ++j;
        } else if (d == ' ' && j + 1 < end && kQpSafe[p[j + 1]]) {
          *dst++ = ' ';
          *dst++ = static_cast<char>(p[j + 1]);
          j += 2;
        } else {
          break;
        }
      }
      if (j > i) {
        n_ += j - i;
        col_ += j - i;
        i = j;
        after_cr_ = false;
        continue;
      }
    }
    ++i;
    if (c == '\n') {
      if (after_cr_) {
        after_cr_ = false;  // second half of CRLF
      } else {
        HardBreak();
      }
      continue;
    }
    if (c == '\r') {
      HardBreak();
      after_cr_ = true;
      continue;
    }
    after_cr_ = false;
    if (IsWsp(c)) {
      if (held_ws_ != 0) EmitWhitespace(held_ws_, /*encoded=*/false);
      held_ws_ = c;
      continue;
    }
    Put(c);
  }
}

void QpWriter::WriteHtmlEscaped(absl::string_view text) {
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    absl::string_view entity;
    switch (text[i]) {
      case '&': entity = "&amp;"; break;
      case '<': entity = "&lt;"; break;
      case '>': entity = "&gt;"; break;
      case '"': entity = "&quot;"; break;
      case '\'': entity = "&#39;"; break;
      default: continue;
    }
    Write(text.substr(start, i - start));
    Write(entity);
    start = i + 1;
  }
  Write(text.substr(start));
}

bool QpWriter::Finish() {
  if (held_ws_ != 0) {
    EmitWhitespace(held_ws_, /*encoded=*/true);
    held_ws_ = 0;
  }
  Flush();
  return col_ == 0;
}

void AppendUnstructuredHeader(absl::string_view name, absl::string_view value,
                              std::string* out) {
  out->append(name.data(), name.size());
  out->push_back(':');
  size_t col = name.size() + 1;

  bool encode = HasNonAscii(value);
  if (!encode) {
    size_t word = 0;
    for (unsigned char c : value) {
      word = Clean(c) == ' ' ? 0 : word + 1;
      if (word > kMaxPlainWord) {
        encode = true;
        break;
      }
    }
  }
  if (encode) {
    AppendEncodedWords(value, &col, out);
    out->append("\r\n");
    return;
  }
  // Fold at spaces: a fold turns the separating space into CRLF + space.
  size_t i = 0;
  bool first = true;
  const size_t n = value.size();
  while (true) {
    size_t j = i;
    while (j < n && Clean(value[j]) != ' ') ++j;
    const size_t len = j - i;
    if (!first && len > 0 && col + 1 + len > kFoldColumn) {
      out->append("\r\n ");
      col = 1;
    } else {
      out->push_back(' ');
      col += 1;
    }
    AppendClean(value.substr(i, len), out);
    col += len;
    first = false;
    if (j >= n) break;
    i = j + 1;
  }
  out->append("\r\n");
}

void AppendAddressHeader(absl::string_view name, absl::string_view value,
                         std::string* out) {
  out->append(name.data(), name.size());
  out->push_back(':');
  size_t col = name.size() + 1;
  absl::string_view v = Trim(value);
  absl::string_view display;
  absl::string_view addr = v;
  const size_t lt = v.rfind('<');
  if (!v.empty() && v.back() == '>' && lt != absl::string_view::npos) {
    display = Trim(v.substr(0, lt));
    addr = v.substr(lt);
  }
  if (addr.size() > kMaxPlainWord) {
    // Not an address a line can hold: keep the wire form valid regardless.
    AppendEncodedWords(v, &col, out);
    out->append("\r\n");
    return;
  }
  if (!display.empty()) {
    // Quoting escapes '"' and '\\': the quoted form can be twice as long.
    size_t quoted = display.size() + 2;
    for (char c : display) quoted += (c == '"' || c == '\\') ? 1 : 0;
    if (HasNonAscii(display) || quoted > kMaxPlainWord) {
      if (display.size() >= 2 && display.front() == '"' &&
          display.back() == '"') {
        display = display.substr(1, display.size() - 2);
      }
      AppendEncodedWords(display, &col, out);
    } else if (NeedsQuoting(display)) {
      out->append(" \"");
      for (unsigned char c : display) {
        if (c == '"' || c == '\\') out->push_back('\\');
        out->push_back(static_cast<char>(Clean(c)));
      }
      out->push_back('"');
      col += display.size() + 3;
    } else {
      out->push_back(' ');
      AppendClean(display, out);
      col += display.size() + 1;
    }
    if (col + 1 + addr.size() > kFoldColumn) {
      out->append("\r\n");
    }
  }
  out->push_back(' ');
  AppendClean(addr, out);
  out->append("\r\n");
}

void AppendSanitized(absl::string_view value, std::string* out) {
  AppendClean(value, out);
}

void AppendRfc5322Date(absl::Time t, std::string* out) {
  static constexpr char kDays[][4] = {"Sun", "Mon", "Tue", "Wed",
                                      "Thu", "Fri", "Sat"};
  static constexpr char kMonths[][4] = {"Jan", "Feb", "Mar", "Apr",
                                        "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec"};
  const int64_t secs = absl::ToUnixSeconds(t);
  int64_t days = secs / 86400;
  int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    days -= 1;
  }
  const int weekday = static_cast<int>(((days + 4) % 7 + 7) % 7);  // 1970-01-01: Thu
  // Civil date from days since the epoch (H. Hinnant's algorithm).
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);

  char buf[40];
  char* p = buf;
  auto two = [&p](int v) {
    *p++ = static_cast<char>('0' + v / 10);
    *p++ = static_cast<char>('0' + v % 10);
  };
  for (const char* d = kDays[weekday]; *d; ++d) *p++ = *d;
  *p++ = ',';
  *p++ = ' ';
  two(day);
  *p++ = ' ';
  for (const char* m = kMonths[month - 1]; *m; ++m) *p++ = *m;
  *p++ = ' ';
  const int y = static_cast<int>(std::clamp<int64_t>(year, 0, 9999));
  two(y / 100);
  two(y % 100);
  *p++ = ' ';
  two(static_cast<int>(sod / 3600));
  *p++ = ':';
  two(static_cast<int>(sod / 60 % 60));
  *p++ = ':';
  two(static_cast<int>(sod % 60));
  for (const char* z5 = " +0000"; *z5; ++z5) *p++ = *z5;
  out->append(buf, p - buf);
}

size_t AppendNormalizedRaw(absl::string_view raw, std::string* out) {
  size_t line = 0;
  size_t longest = 0;
  bool after_cr = false;
  out->reserve(out->size() + raw.size() + raw.size() / 64 + 2);
  for (char c : raw) {
    if (c == '\n' && after_cr) {
      after_cr = false;
      continue;
    }
    after_cr = c == '\r';
    if (c == '\r' || c == '\n') {
      out->append("\r\n");
      longest = std::max(longest, line);
      line = 0;
      continue;
    }
    if (line == 0 && c == '.') out->push_back('.');
    out->push_back(c);
    ++line;
  }
  if (line > 0) {
    out->append("\r\n");
    longest = std::max(longest, line);
  }
  return longest;
}

}  // namespace salvo::render
