// VERP build/parse (see verp.h). Any thread.
#include "engine/hygiene/verp.h"

#include "absl/strings/match.h"
#include "storage/key_codec.h"

namespace salvo::hygiene {
namespace {

constexpr absl::string_view kPrefix = "bounces+";

}  // namespace

void AppendVerp(const VerpIds& ids, absl::string_view bounce_domain,
                std::string* out) {
  out->append(kPrefix.data(), kPrefix.size());
  storage::AppendIdHex(ids.content_id, out);
  out->push_back('.');
  storage::AppendIdHex(ids.recipient_id, out);
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
  if (!storage::HexToId(local.substr(kPrefix.size(), 16), &ids.content_id) ||
      !storage::HexToId(local.substr(kPrefix.size() + 17, 16), &ids.recipient_id)) {
    return std::nullopt;
  }
  return ids;
}

}  // namespace salvo::hygiene
