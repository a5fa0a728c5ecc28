// Test-only decoders: see test_decode.h.
#include "engine/render/test_decode.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace salvo::render::testing {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string Base64Decode(absl::string_view s) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = Base64Value(c);
    if (v < 0) continue;  // '=' padding
    acc = acc << 6 | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string QDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      out.push_back(' ');
    } else if (s[i] == '=' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 +
                                      HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Decodes one "=?charset?X?text?=" word at s[0]; returns its length or 0.
size_t DecodeWord(absl::string_view s, std::string* out) {
  if (!absl::StartsWith(s, "=?")) return 0;
  const size_t q1 = s.find('?', 2);
  if (q1 == absl::string_view::npos || q1 + 2 >= s.size()) return 0;
  const char enc = absl::ascii_toupper(static_cast<unsigned char>(s[q1 + 1]));
  if (s[q1 + 2] != '?' || (enc != 'B' && enc != 'Q')) return 0;
  const size_t end = s.find("?=", q1 + 3);
  if (end == absl::string_view::npos) return 0;
  const absl::string_view text = s.substr(q1 + 3, end - q1 - 3);
  out->append(enc == 'B' ? Base64Decode(text) : QDecode(text));
  return end + 2;
}

}  // namespace

std::string UndotStuff(absl::string_view wire) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < wire.size(); ++i) {
    if (line_start && wire[i] == '.' && i + 1 < wire.size() &&
        wire[i + 1] == '.') {
      ++i;
    }
    out.push_back(wire[i]);
    line_start = wire[i] == '\n';
  }
  return out;
}

std::string QpDecode(absl::string_view qp) {
  std::string out;
  for (size_t i = 0; i < qp.size(); ++i) {
    if (qp[i] != '=') {
      out.push_back(qp[i]);
    } else if (qp.substr(i + 1, 2) == "\r\n") {
      i += 2;  // soft line break
    } else if (i + 2 < qp.size() && HexValue(qp[i + 1]) >= 0 &&
               HexValue(qp[i + 2]) >= 0) {
      out.push_back(
          static_cast<char>(HexValue(qp[i + 1]) * 16 + HexValue(qp[i + 2])));
      i += 2;
    } else {
      out.push_back('=');  // malformed: keep as is
    }
  }
  return out;
}

std::string DecodeHeaderValue(absl::string_view value) {
  std::string unfolded;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value.substr(i, 2) == "\r\n") {
      ++i;
      continue;
    }
    unfolded.push_back(value[i]);
  }
  absl::string_view s = absl::StripLeadingAsciiWhitespace(unfolded);
  std::string out;
  std::string pending_space;  // whitespace after an encoded-word
  bool after_word = false;
  while (!s.empty()) {
    std::string word;
    const size_t n = DecodeWord(s, &word);
    if (n > 0) {
      if (!after_word) out.append(pending_space);
      pending_space.clear();
      out.append(word);
      after_word = true;
      s.remove_prefix(n);
      continue;
    }
    if (s[0] == ' ' || s[0] == '\t') {
      pending_space.push_back(s[0]);
      s.remove_prefix(1);
      continue;
    }
    out.append(pending_space);
    pending_space.clear();
    after_word = false;
    out.push_back(s[0]);
    s.remove_prefix(1);
  }
  out.append(pending_space);
  return out;
}

std::string ToLf(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out.push_back(s[i]);
  }
  return out;
}

std::string Message::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return DecodeHeaderValue(v);
  }
  return "";
}

Message ParseMessage(absl::string_view message) {
  Message m;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find("\r\n", pos);
    if (eol == absl::string_view::npos) eol = message.size();
    if (eol == pos) {  // blank line: body follows
      pos = eol + 2;
      break;
    }
    const absl::string_view line = message.substr(pos, eol - pos);
    if ((line[0] == ' ' || line[0] == '\t') && !m.headers.empty()) {
      m.headers.back().second.append("\r\n");
      m.headers.back().second.append(line.data(), line.size());
    } else {
      const size_t colon = line.find(':');
      m.headers.emplace_back(std::string(line.substr(0, colon)),
                             std::string(line.substr(colon + 1)));
    }
    pos = eol + 2;
  }
  if (pos < message.size()) m.body = std::string(message.substr(pos));
  return m;
}

}  // namespace salvo::render::testing
