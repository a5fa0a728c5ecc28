// One-click unsubscribe tokens (RFC 8058), pure: no I/O, no clock.
//
// Token = base64url(payload || HMAC-SHA256(secret, payload)), unpadded, where
//   payload = version:u8 (1) | content_id:u64 BE | tenant_len:u8 | tenant |
//             address
// In: a secret and (tenant, content id, recipient address). Out: a token that
// is safe in a URL path and in a mail local part ([A-Za-z0-9_-]), or, for
// Verify, the fields back once the MAC matched (constant-time compare).
// Any thread: stateless functions; scratch lives on the stack.
#ifndef SALVO_ENGINE_HYGIENE_UNSUBSCRIBE_TOKEN_H_
#define SALVO_ENGINE_HYGIENE_UNSUBSCRIBE_TOKEN_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace salvo::hygiene {

inline constexpr uint8_t kUnsubscribeTokenVersion = 1;
inline constexpr size_t kMaxTokenTenant = 255;
inline constexpr size_t kMaxTokenAddress = 512;

// What a token names. Views: the caller keeps the strings alive.
struct UnsubscribeTarget {
  absl::string_view tenant;
  uint64_t content_id = 0;
  absl::string_view address;
};

// A verified token's fields, copied out of the decoded token.
struct VerifiedUnsubscribe {
  std::string tenant;
  uint64_t content_id = 0;
  std::string address;
};

// Appends the token to *out (no allocation beyond *out's growth).
// InvalidArgument: empty secret, empty tenant or address, tenant over 255 or
// address over 512 octets.
[[nodiscard]] absl::Status AppendUnsubscribeToken(
    absl::string_view secret, const UnsubscribeTarget& target,
    std::string* out);

// Convenience over AppendUnsubscribeToken.
absl::StatusOr<std::string> SignUnsubscribeToken(
    absl::string_view secret, const UnsubscribeTarget& target);

// InvalidArgument for malformed tokens (bad base64url, too short, unknown
// version, bad lengths); PermissionDenied when the MAC does not match (wrong
// secret or tampered payload); FailedPrecondition for an empty secret.
absl::StatusOr<VerifiedUnsubscribe> VerifyUnsubscribeToken(
    absl::string_view secret, absl::string_view token);

}  // namespace salvo::hygiene

#endif  // SALVO_ENGINE_HYGIENE_UNSUBSCRIBE_TOKEN_H_
