// HMAC-SHA256 signed unsubscribe tokens (see unsubscribe_token.h). BoringSSL
// HMAC one-shot; CRYPTO_memcmp for the constant-time compare. Any thread.
#include "engine/hygiene/unsubscribe_token.h"

#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/hygiene/base64url.h"

namespace salvo::hygiene {
namespace {

constexpr size_t kMacSize = 32;  // SHA-256
constexpr size_t kFixedSize = 1 + 8 + 1;  // version, content id, tenant_len
constexpr size_t kMaxPayload = kFixedSize + kMaxTokenTenant + kMaxTokenAddress;
constexpr size_t kMaxRaw = kMaxPayload + kMacSize;
// Base64 of kMaxRaw bytes, rounded up.
constexpr size_t kMaxTokenChars = (kMaxRaw * 4 + 2) / 3;

bool Mac(absl::string_view secret, const uint8_t* data, size_t n,
         uint8_t mac[kMacSize]) {
  unsigned int len = 0;
  return HMAC(EVP_sha256(), secret.data(), secret.size(), data, n, mac,
              &len) != nullptr &&
         len == kMacSize;
}

}  // namespace

absl::Status AppendUnsubscribeToken(absl::string_view secret,
                                    const UnsubscribeTarget& target,
                                    std::string* out) {
  if (secret.empty()) return absl::InvalidArgumentError("empty secret");
  if (target.tenant.empty() || target.tenant.size() > kMaxTokenTenant) {
    return absl::InvalidArgumentError("tenant must be 1..255 octets");
  }
  if (target.address.empty() || target.address.size() > kMaxTokenAddress) {
    return absl::InvalidArgumentError("address must be 1..512 octets");
  }
  uint8_t raw[kMaxRaw];
  size_t n = 0;
  raw[n++] = kUnsubscribeTokenVersion;
  uint64_t id = target.content_id;
  for (int i = 7; i >= 0; --i) {
    raw[n + i] = static_cast<uint8_t>(id);
    id >>= 8;
  }
  n += 8;
  raw[n++] = static_cast<uint8_t>(target.tenant.size());
  std::memcpy(raw + n, target.tenant.data(), target.tenant.size());
  n += target.tenant.size();
  std::memcpy(raw + n, target.address.data(), target.address.size());
  n += target.address.size();
  if (!Mac(secret, raw, n, raw + n)) {
    return absl::InternalError("HMAC-SHA256 failed");
  }
  n += kMacSize;
  AppendBase64Url(raw, n, out);
  return absl::OkStatus();
}

absl::StatusOr<std::string> SignUnsubscribeToken(
    absl::string_view secret, const UnsubscribeTarget& target) {
  std::string out;
  absl::Status s = AppendUnsubscribeToken(secret, target, &out);
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<VerifiedUnsubscribe> VerifyUnsubscribeToken(
    absl::string_view secret, absl::string_view token) {
  if (secret.empty()) {
    return absl::FailedPreconditionError("unsubscribe tokens are disabled");
  }
  if (token.size() > kMaxTokenChars) {
    return absl::InvalidArgumentError("token too long");
  }
  uint8_t raw[kMaxRaw + 3];
  size_t n = 0;
  if (!DecodeBase64Url(token, raw, &n)) {
    return absl::InvalidArgumentError("token is not base64url");
  }
  if (n < kFixedSize + kMacSize + 2) {
    return absl::InvalidArgumentError("token too short");
  }
  if (raw[0] != kUnsubscribeTokenVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown token version ", raw[0]));
  }
  const size_t payload = n - kMacSize;
  uint8_t mac[kMacSize];
  if (!Mac(secret, raw, payload, mac)) {
    return absl::InternalError("HMAC-SHA256 failed");
  }
  // Checked before any field is trusted, and in constant time.
  if (CRYPTO_memcmp(mac, raw + payload, kMacSize) != 0) {
    return absl::PermissionDeniedError("token signature does not match");
  }
  const size_t tenant_len = raw[9];
  if (tenant_len == 0 || kFixedSize + tenant_len >= payload) {
    return absl::InvalidArgumentError("bad tenant length in token");
  }
  VerifiedUnsubscribe v;
  for (int i = 1; i <= 8; ++i) v.content_id = (v.content_id << 8) | raw[i];
  const char* p = reinterpret_cast<const char*>(raw);
  v.tenant.assign(p + kFixedSize, tenant_len);
  v.address.assign(p + kFixedSize + tenant_len,
                   payload - kFixedSize - tenant_len);
  return v;
}

}  // namespace salvo::hygiene
