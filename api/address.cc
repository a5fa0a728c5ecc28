// Mail address syntax (see address.h). Pure; any thread.
#include "api/address.h"

#include <arpa/inet.h>

#include <string>

#include "absl/strings/ascii.h"

namespace salvo::api {
namespace {

bool IsAtext(unsigned char c) {
  if (absl::ascii_isalnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '/': case '=': case '?': case '^': case '_':
    case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

// Consumes the local part of `s` up to the '@'; returns its length or 0.
size_t LocalPartLength(absl::string_view s) {
  size_t i = 0;
  if (!s.empty() && s[0] == '"') {
    ++i;
    while (i < s.size() && s[i] != '"') {
      unsigned char c = s[i];
      if (c == '\\') {
        if (i + 1 >= s.size()) return 0;
        unsigned char q = s[i + 1];
        if (q < 33 || q > 126) return 0;  // no space, CR, LF, NUL
        i += 2;
        continue;
      }
      if (c < 33 || c > 126) return 0;
      ++i;
    }
    if (i >= s.size()) return 0;
    ++i;  // closing quote
    return (i < s.size() && s[i] == '@') ? i : 0;
  }
  bool prev_dot = true;  // no leading dot
  for (; i < s.size() && s[i] != '@'; ++i) {
    unsigned char c = s[i];
    if (c == '.') {
      if (prev_dot) return 0;
      prev_dot = true;
    } else if (IsAtext(c)) {
      prev_dot = false;
    } else {
      return 0;
    }
  }
  if (i == 0 || prev_dot || i >= s.size()) return 0;  // empty, trailing dot
  return i;
}

bool IsValidDomain(absl::string_view d) {
  if (d.empty() || d.size() > 255) return false;
  if (d.front() == '[') {
    if (d.size() < 3 || d.back() != ']') return false;
    std::string lit(d.substr(1, d.size() - 2));
    unsigned char buf[16];
    if (lit.rfind("IPv6:", 0) == 0) {
      return inet_pton(AF_INET6, lit.c_str() + 5, buf) == 1;
    }
    return inet_pton(AF_INET, lit.c_str(), buf) == 1;
  }
  int labels = 0;
  size_t start = 0;
  while (start <= d.size()) {
    size_t end = d.find('.', start);
    if (end == absl::string_view::npos) end = d.size();
    absl::string_view label = d.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' ||
        label.back() == '-') {
      return false;
    }
    for (unsigned char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-') return false;
    }
    ++labels;
    start = end + 1;
  }
  return labels >= 2;
}

}  // namespace

bool IsValidMailbox(absl::string_view a) {
  if (a.size() > 254) return false;
  size_t local = LocalPartLength(a);
  if (local == 0 || local > 64) return false;
  return IsValidDomain(a.substr(local + 1));
}

bool ParseNameAddr(absl::string_view text, absl::string_view* display,
                   absl::string_view* address) {
  text = absl::StripAsciiWhitespace(text);
  absl::string_view name, addr = text;
  if (!text.empty() && text.back() == '>') {
    size_t lt = text.rfind('<');
    if (lt == absl::string_view::npos) return false;
    addr = text.substr(lt + 1, text.size() - lt - 2);
    name = absl::StripAsciiWhitespace(text.substr(0, lt));
    for (char c : name) {
      if (c == '\r' || c == '\n' || c == '\0' || c == '<' || c == '>') {
        return false;
      }
    }
  }
  if (!IsValidMailbox(addr)) return false;
  *display = name;
  *address = addr;
  return true;
}

absl::string_view DomainOf(absl::string_view address) {
  size_t at = address.rfind('@');
  return at == absl::string_view::npos ? absl::string_view()
                                       : address.substr(at + 1);
}

bool IsValidHeaderName(absl::string_view name) {
  if (name.empty() || name.size() > 76) return false;
  for (unsigned char c : name) {
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

}  // namespace salvo::api
