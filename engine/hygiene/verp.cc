// VERP build/parse (see verp.h). Any thread.
#include "engine/hygiene/verp.h"

#include "absl/strings/match.h"

namespace salvo::hygiene {
namespace {

constexpr absl::string_view kPrefix = "bounces+";

void AppendHex(uint64_t v, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[16];
  for (int i = 15; i >= 0; --i) {
    buf[i] = kHex[v & 15];
    v >>= 4;
  }
  out->append(buf, 16);
}

bool ParseHex16(absl::string_view s, uint64_t* v) {
  if (s.size() != 16) return false;
  uint64_t r = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    r = (r << 4) | static_cast<uint64_t>(d);
  }
  *v = r;
  return true;
}

}  // namespace

void AppendVerp(const VerpIds& ids, absl::string_view bounce_domain,
                std::string* out) {
  out->append(kPrefix.data(), kPrefix.size());
  AppendHex(ids.content_id, out);
  out->push_back('.');
  AppendHex(ids.recipient_id, out);
  out->push_back('@');
  out->append(bounce_domain.data(), bounce_domain.size());
}

std::string BuildVerp(const VerpIds& ids, absl::string_view bounce_domain) {
  std::string out;
  out.reserve(kPrefix.size() + 34 + bounce_domain.size());
  AppendVerp(ids, bounce_domain, &out);
  return out;
}

std::optional<VerpIds> ParseVerp(absl::string_view address,
                                 absl::string_view bounce_domain) {
  const size_t at = address.rfind('@');
  if (at == absl::string_view::npos) return std::nullopt;
  const absl::string_view local = address.substr(0, at);
  const absl::string_view domain = address.substr(at + 1);
  if (domain.empty()) return std::nullopt;
  if (!bounce_domain.empty() && !absl::EqualsIgnoreCase(domain, bounce_domain)) {
    return std::nullopt;
  }
  if (local.size() != kPrefix.size() + 33 ||
      !absl::StartsWithIgnoreCase(local, kPrefix) ||
      local[kPrefix.size() + 16] != '.') {
    return std::nullopt;
  }
  VerpIds ids;
  if (!ParseHex16(local.substr(kPrefix.size(), 16), &ids.content_id) ||
      !ParseHex16(local.substr(kPrefix.size() + 17, 16), &ids.recipient_id)) {
    return std::nullopt;
  }
  return ids;
}

}  // namespace salvo::hygiene
