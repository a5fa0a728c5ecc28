// DKIM signing (RFC 6376, relaxed/relaxed; rsa-sha256 and RFC 8463
// ed25519-sha256) of messages in SMTP wire form as the renderer writes them
// (CRLF lines, dot-stuffed, without the final "."). In: options once, then
// one message per Sign(). Out: the complete, folded "DKIM-Signature: ...\r\n"
// header to put in front of the (still dot-stuffed) message.
// The key is parsed once in Create(); Sign() hashes in one streaming pass
// and allocates only if *header lacks capacity. A DkimSigner is immutable
// after Create(): Sign() may be called from any thread, concurrently.
// DkimSigners maps a sending domain to its signers (RSA and/or Ed25519).
#ifndef SALVO_ENGINE_DKIM_DKIM_SIGNER_H_
#define SALVO_ENGINE_DKIM_DKIM_SIGNER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/core/clock.h"
#include "engine/dkim/ed25519_fast.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace salvo::dkim {

enum class Algorithm { kRsaSha256, kEd25519Sha256 };

// "rsa-sha256" / "ed25519-sha256" (the a= tag), and back (case-insensitive;
// "rsa" and "ed25519" are accepted too). InvalidArgument for anything else.
absl::string_view AlgorithmName(Algorithm a);
absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view name);

// from, to, subject, date, message-id, mime-version, content-type,
// list-unsubscribe, list-unsubscribe-post, reply-to.
const std::vector<std::string>& DefaultSignedHeaders();

struct SignerOptions {
  std::string domain;    // d=, also the sending domain DkimSigners keys on
  std::string selector;  // s=
  Algorithm algorithm = Algorithm::kRsaSha256;
  // Exactly one of: the PEM text (PKCS#8 "PRIVATE KEY" or "RSA PRIVATE
  // KEY"), or the path of a file holding it.
  std::string private_key_pem;
  std::string private_key_file;
  // Header names to sign when present (case-insensitive; must include
  // "from"). Each is signed once, its bottom-most instance (RFC 6376 5.4.2).
  std::vector<std::string> headers = DefaultSignedHeaders();
};

class DkimSigner {
 public:
  // InvalidArgument with a clear message: empty or malformed domain/selector,
  // no key or both key sources, unreadable file, bad PEM, key type not
  // matching the algorithm, RSA below 1024 or above 8192 bits, "from" not in
  // headers. t= comes from `clock`, which must outlive the signer.
  static absl::StatusOr<std::unique_ptr<const DkimSigner>> Create(
      const SignerOptions& options, const core::Clock& clock);
  ~DkimSigner();
  DkimSigner(const DkimSigner&) = delete;
  DkimSigner& operator=(const DkimSigner&) = delete;

  // Clears *header and writes the DKIM-Signature header (t= from the clock).
  // FailedPrecondition when the message has no From header; Internal when
  // the crypto library fails.
  [[nodiscard]] absl::Status Sign(absl::string_view message,
                                  std::string* header) const;
  // As Sign(), with t= given, appending to *out (several signatures in a
  // row).
  [[nodiscard]] absl::Status SignAt(absl::string_view message, absl::Time t,
                                    std::string* out) const;

  const std::string& domain() const { return domain_; }
  const std::string& selector() const { return selector_; }
  Algorithm algorithm() const { return algorithm_; }
  // The TXT record to publish at <selector>._domainkey.<domain>:
  // "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or
  // "v=DKIM1; k=ed25519; p=<base64 32-byte key>".
  const std::string& dns_record() const { return dns_record_; }

 private:
  friend class DkimSigners;  // SignFor reads clock_
  DkimSigner() = default;

  const core::Clock* clock_ = nullptr;
  std::string domain_;
  std::string selector_;
  Algorithm algorithm_ = Algorithm::kRsaSha256;
  std::vector<std::string> headers_;  // lowercase
  std::string header_prefix_;  // "DKIM-Signature: v=1; a=...; c=...;"
  std::string domain_tag_;     // "d=<domain>;"
  std::string dns_record_;
  EVP_PKEY* pkey_ = nullptr;                // RSA (owned)
  std::array<uint8_t, 64> ed25519_key_{};  // seed + public key (Ed25519)
  Ed25519Key ed25519_expanded_;  // the same key, expanded for Ed25519Sign
};

// The domain of an address or a From header value: "Name <u@Example.COM>",
// "u@example.com" -> "Example.COM" / "example.com". Empty when none.
absl::string_view AddressDomain(absl::string_view address);

// Sending domain (case-insensitive) -> its signers, in the order added.
// Immutable once built: share it across loops through shared_ptr<const>.
class DkimSigners {
 public:
  DkimSigners() = default;
  DkimSigners(DkimSigners&&) = default;
  DkimSigners& operator=(DkimSigners&&) = default;

  // Creates one signer per options entry (the first error is returned, with
  // the domain and selector in its message).
  static absl::StatusOr<DkimSigners> Create(
      absl::Span<const SignerOptions> options, const core::Clock& clock);

  // AlreadyExists when the domain already has a signer with this selector
  // and algorithm.
  [[nodiscard]] absl::Status Add(std::unique_ptr<const DkimSigner> signer);

  // Clears *headers and writes one DKIM-Signature header per signer of
  // from_domain (nothing when it has none). Errors as DkimSigner::Sign.
  [[nodiscard]] absl::Status SignFor(absl::string_view from_domain,
                                     absl::string_view message,
                                     std::string* headers) const;

  bool HasDomain(absl::string_view domain) const;
  size_t size() const { return count_; }

 private:
  struct CaseInsensitiveHash {
    using is_transparent = void;
    size_t operator()(absl::string_view s) const;
  };
  struct CaseInsensitiveEq {
    using is_transparent = void;
    bool operator()(absl::string_view a, absl::string_view b) const;
  };
  absl::flat_hash_map<std::string,
                      std::vector<std::unique_ptr<const DkimSigner>>,
                      CaseInsensitiveHash, CaseInsensitiveEq>
      by_domain_;
  size_t count_ = 0;
};

}  // namespace salvo::dkim

#endif  // SALVO_ENGINE_DKIM_DKIM_SIGNER_H_
