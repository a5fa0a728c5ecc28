// List-Unsubscribe value builder (see list_unsubscribe.h). Any thread.
#include "engine/hygiene/list_unsubscribe.h"

namespace salvo::hygiene {

void AppendListUnsubscribeValue(absl::string_view token,
                                absl::string_view mailto_domain,
                                absl::string_view base_url, std::string* out) {
  while (!base_url.empty() && base_url.back() == '/') base_url.remove_suffix(1);
  if (base_url.empty()) return;
  if (!mailto_domain.empty()) {
    // The token goes in the subject: in the local part it would pass the
    // 64 octets RFC 5321 allows (it carries the tenant and the address).
    // base64url needs no escaping in a URI.
    out->append("<mailto:unsubscribe@");
    out->append(mailto_domain.data(), mailto_domain.size());
    out->append("?subject=unsubscribe-");
    out->append(token.data(), token.size());
    out->append(">, ");
  }
  out->push_back('<');
  out->append(base_url.data(), base_url.size());
  out->append(kUnsubscribePath.data(), kUnsubscribePath.size());
  out->append(token.data(), token.size());
  out->push_back('>');
}

absl::Status AppendListUnsubscribe(const HygieneOptions& options,
                                   const UnsubscribeTarget& target,
                                   std::string* out) {
  if (options.unsubscribe_secret.empty() ||
      options.unsubscribe_base_url.empty()) {
    return absl::OkStatus();
  }
  // The token is built at the end of *out, then the value around it.
  const size_t start = out->size();
  absl::Status s =
      AppendUnsubscribeToken(options.unsubscribe_secret, target, out);
  if (!s.ok()) return s;
  thread_local std::string token;  // reused: no allocation once grown
  token.assign(*out, start, std::string::npos);
  out->resize(start);
  AppendListUnsubscribeValue(token, options.unsubscribe_mailto_domain,
                             options.unsubscribe_base_url, out);
  return absl::OkStatus();
}

}  // namespace salvo::hygiene
