// List-Unsubscribe header values (RFC 2369) with one-click POST (RFC 8058),
// pure. In: hygiene options and a recipient's (tenant, content id, address).
// Out: the List-Unsubscribe field value for render::RenderInput::
// list_unsubscribe, e.g.
//   <mailto:unsubscribe@DOMAIN?subject=unsubscribe-TOKEN>,
//   <https://HOST/v1/unsubscribe/TOKEN>
// The renderer adds "List-Unsubscribe-Post: List-Unsubscribe=One-Click".
// Any thread: stateless.
#ifndef SALVO_ENGINE_HYGIENE_LIST_UNSUBSCRIBE_H_
#define SALVO_ENGINE_HYGIENE_LIST_UNSUBSCRIBE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/hygiene/unsubscribe_token.h"

namespace salvo::hygiene {

// The [hygiene] section of the configuration (the lead wires the TOML keys).
struct HygieneOptions {
  // HMAC key of unsubscribe tokens. Empty: no List-Unsubscribe, and the API's
  // /v1/unsubscribe endpoint answers 404.
  std::string unsubscribe_secret;
  // Scheme and host (optionally a path prefix) of the API as recipients reach
  // it, e.g. "https://mail.example.com"; "/v1/unsubscribe/TOKEN" is appended.
  // Required for a List-Unsubscribe header (RFC 8058 needs an https URI).
  std::string unsubscribe_base_url;
  // Domain of the mailto: unsubscribe address; empty: no mailto URI.
  std::string unsubscribe_mailto_domain;
  // Domain of VERP return paths; empty: envelope_from is used as given.
  std::string bounce_domain;
};

// The value RFC 8058 requires in List-Unsubscribe-Post and in the POST body.
inline constexpr absl::string_view kOneClickValue = "List-Unsubscribe=One-Click";

// The path prefix of the one-click endpoint.
inline constexpr absl::string_view kUnsubscribePath = "/v1/unsubscribe/";

// Appends the List-Unsubscribe value for `token` to *out. Nothing is appended
// when base_url is empty. Trailing '/' of base_url is ignored.
void AppendListUnsubscribeValue(absl::string_view token,
                                absl::string_view mailto_domain,
                                absl::string_view base_url, std::string* out);

// Signs a token for `target` and appends the List-Unsubscribe value. OK with
// nothing appended when options disable it (no secret or no base URL).
[[nodiscard]] absl::Status AppendListUnsubscribe(const HygieneOptions& options,
                                                 const UnsubscribeTarget& target,
                                                 std::string* out);

}  // namespace salvo::hygiene

#endif  // SALVO_ENGINE_HYGIENE_LIST_UNSUBSCRIBE_H_
