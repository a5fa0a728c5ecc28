// DkimSigner and DkimSigners: key loading and RSA (BoringSSL), Ed25519
// (ed25519_fast: AVX-512 IFMA, else libsodium), the signature header and its
// folding, streaming hashes.
// See dkim_signer.h.
#include "engine/dkim/dkim_signer.h"

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/curve25519.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/dkim/canon.h"

namespace salvo::dkim {
namespace {

constexpr size_t kMaxLine = 78;        // fold before a line passes this
constexpr size_t kMaxSignature = 1024;  // RSA-8192
constexpr int kMinRsaBits = 1024;
constexpr int kMaxRsaBits = 8192;

// A Sink for canon.h that feeds SHA-256 in blocks of a stack buffer, so the
// many small spans of a canonical body cost a memcpy, not a hash call each.
class Sha256Sink {
 public:
  Sha256Sink() { SHA256_Init(&ctx_); }
  void Append(absl::string_view s) {
    if (s.size() >= kDirect) {
      // A long run of the input (CanonicalizeBodyRelaxedRuns): hashed where
      // it lies, not copied.
      Flush();
      SHA256_Update(&ctx_, s.data(), s.size());
      return;
    }
    if (used_ + s.size() > sizeof(buf_)) Flush();
    std::memcpy(buf_ + used_, s.data(), s.size());
    used_ += s.size();
  }
  void Final(uint8_t out[SHA256_DIGEST_LENGTH]) {
    Flush();
    SHA256_Final(out, &ctx_);
  }

 private:
  void Flush() {
    if (used_ > 0) SHA256_Update(&ctx_, buf_, used_);
    used_ = 0;
  }
  static constexpr size_t kDirect = 256;
  SHA256_CTX ctx_;
  size_t used_ = 0;
  char buf_[4096];
};

// libsodium's Ed25519 (ref10, 51-bit limbs) signs in ~60% of the time of
// android-libboringssl's portable C, and Ed25519Sign (ed25519_fast, AVX-512
// IFMA) in ~40% of libsodium's; same key layout (seed || public key) and the
// same deterministic signature. sodium_init() is thread-safe and
// idempotent; BoringSSL remains the fallback should it fail.
bool SodiumReady() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

std::string OpensslError() {
  uint32_t e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// Base64 without line breaks into *out (appended).
void AppendBase64(const uint8_t* data, size_t len, std::string* out) {
  size_t at = out->size();
  out->resize(at + 4 * ((len + 2) / 3) + 1);
  size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(&(*out)[at]), data,
                             len);
  out->resize(at + n);
}

// Appends " tag" to a folded header, starting a new "\r\n\t" line first when
// the current one would pass kMaxLine. *line_len tracks the current line.
void AppendFolded(absl::string_view tag, std::string* out, size_t* line_len) {
  if (*line_len + 1 + tag.size() > kMaxLine) {
    out->append("\r\n\t");
    *line_len = 1;
  } else {
    out->push_back(' ');
    ++*line_len;
  }
  out->append(tag.data(), tag.size());
  *line_len += tag.size();
}

bool ValidDomainName(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '.' && c != '_') {
      return false;
    }
  }
  return s.front() != '.' && s.back() != '.';
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("dkim: cannot read private key file ", path));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::string_view AlgorithmName(Algorithm a) {
  return a == Algorithm::kEd25519Sha256 ? "ed25519-sha256" : "rsa-sha256";
}

absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view name) {
  if (absl::EqualsIgnoreCase(name, "rsa-sha256") ||
      absl::EqualsIgnoreCase(name, "rsa")) {
    return Algorithm::kRsaSha256;
  }
  if (absl::EqualsIgnoreCase(name, "ed25519-sha256") ||
      absl::EqualsIgnoreCase(name, "ed25519")) {
    return Algorithm::kEd25519Sha256;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dkim: unknown algorithm \"", name,
                   "\" (want rsa-sha256 or ed25519-sha256)"));
}

const std::vector<std::string>& DefaultSignedHeaders() {
  static const auto* headers = new std::vector<std::string>{
      "from",         "to",
      "subject",      "date",
      "message-id",   "mime-version",
      "content-type", "list-unsubscribe",
      "list-unsubscribe-post", "reply-to"};
  return *headers;
}

absl::StatusOr<std::unique_ptr<const DkimSigner>> DkimSigner::Create(
    const SignerOptions& options, const core::Clock& clock) {
  const std::string where =
      absl::StrCat("dkim (", options.domain, ", selector ", options.selector,
                   "): ");
  if (!ValidDomainName(options.domain)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "domain must be a DNS name"));
  }
  if (!ValidDomainName(options.selector)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "selector must be a DNS label sequence"));
  }
  if (options.private_key_pem.empty() == options.private_key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "give exactly one of private_key_pem and private_key_file"));
  }
  std::unique_ptr<DkimSigner> s(new DkimSigner());
  s->clock_ = &clock;
  s->domain_ = absl::AsciiStrToLower(options.domain);
  s->selector_ = options.selector;
  s->algorithm_ = options.algorithm;
  bool has_from = false;
  for (const std::string& h : options.headers) {
    if (h.empty() || h.find_first_of(": \t\r\n") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "bad header name \"", h, "\""));
    }
    std::string lower = absl::AsciiStrToLower(h);
    if (std::find(s->headers_.begin(), s->headers_.end(), lower) !=
        s->headers_.end()) {
      continue;  // each name once
    }
    has_from |= lower == "from";
    s->headers_.push_back(std::move(lower));
  }
  if (!has_from) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "signed headers must include From"));
  }

  std::string pem_storage;
  absl::string_view pem = options.private_key_pem;
  if (!options.private_key_file.empty()) {
    auto text = ReadFile(options.private_key_file);
    if (!text.ok()) return text.status();
    pem_storage = std::move(*text);
    pem = pem_storage;
  }
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), pem.size());
  EVP_PKEY* pkey = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr,
                                                 nullptr)
                       : nullptr;
  BIO_free(bio);
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "cannot parse the private key PEM: ", OpensslError()));
  }
  s->pkey_ = pkey;  // owned by s from here on
  int type = EVP_PKEY_id(pkey);
  std::string public_b64;
  if (options.algorithm == Algorithm::kRsaSha256) {
    if (type != EVP_PKEY_RSA) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "algorithm rsa-sha256 needs an RSA key"));
    }
    unsigned bits = RSA_bits(EVP_PKEY_get0_RSA(pkey));
    if (bits < kMinRsaBits || bits > kMaxRsaBits) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "RSA key has ", bits, " bits; need ",
                       kMinRsaBits, " to ", kMaxRsaBits));
    }
    CBB cbb;
    uint8_t* der = nullptr;
    size_t der_len = 0;
    if (!CBB_init(&cbb, 0) || !EVP_marshal_public_key(&cbb, pkey) ||
        !CBB_finish(&cbb, &der, &der_len)) {
      CBB_cleanup(&cbb);
      return absl::InternalError(
          absl::StrCat(where, "cannot encode public key: ", OpensslError()));
    }
    AppendBase64(der, der_len, &public_b64);
    OPENSSL_free(der);
    s->dns_record_ = absl::StrCat("v=DKIM1; k=rsa; p=", public_b64);
  } else {
    if (type != EVP_PKEY_ED25519) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "algorithm ed25519-sha256 needs an Ed25519 key"));
    }
    uint8_t seed[32];
    size_t seed_len = sizeof(seed);
    if (!EVP_PKEY_get_raw_private_key(pkey, seed, &seed_len) ||
        seed_len != 32) {
      return absl::InternalError(absl::StrCat(
          where, "cannot read the Ed25519 key: ", OpensslError()));
    }
    uint8_t public_key[32];
    ED25519_keypair_from_seed(public_key, s->ed25519_key_.data(), seed);
    s->ed25519_expanded_ =
        Ed25519Key::FromSeedAndPublic(s->ed25519_key_.data());
    OPENSSL_cleanse(seed, sizeof(seed));
    AppendBase64(public_key, sizeof(public_key), &public_b64);
    s->dns_record_ = absl::StrCat("v=DKIM1; k=ed25519; p=", public_b64);
    SodiumReady();  // initialize once, off the data path
    EVP_PKEY_free(s->pkey_);  // only the raw key is used from here on
    s->pkey_ = nullptr;
  }
  s->header_prefix_ =
      absl::StrCat("DKIM-Signature: v=1; a=", AlgorithmName(s->algorithm_),
                   "; c=relaxed/relaxed;");
  s->domain_tag_ = absl::StrCat("d=", s->domain_, ";");
  return std::unique_ptr<const DkimSigner>(std::move(s));
}

DkimSigner::~DkimSigner() {
  EVP_PKEY_free(pkey_);
  OPENSSL_cleanse(ed25519_key_.data(), ed25519_key_.size());
}

absl::Status DkimSigner::Sign(absl::string_view message,
                              std::string* header) const {
  header->clear();
  return SignAt(message, clock_->Now(), header);
}

absl::Status DkimSigner::SignAt(absl::string_view message, absl::Time t,
                                std::string* out) const {
  // 1. Headers: the bottom-most instance of each signed name.
  absl::InlinedVector<HeaderField, 16> picked(headers_.size());
  size_t body_start = SplitHeaders(message, [&](const HeaderField& f) {
    for (size_t i = 0; i < headers_.size(); ++i) {
      // The size check first: inline, and it rejects nearly every pair.
      if (f.name.size() == headers_[i].size() &&
          absl::EqualsIgnoreCase(f.name, headers_[i])) {
        picked[i] = f;
        return;
      }
    }
  });
  for (size_t i = 0; i < headers_.size(); ++i) {
    if (headers_[i] == "from" && picked[i].raw.empty()) {
      return absl::FailedPreconditionError(
          "dkim: the message has no From header");
    }
  }

  // 2. Body hash.
  uint8_t body_hash[SHA256_DIGEST_LENGTH];
  {
    Sha256Sink body;
    CanonicalizeBodyRelaxedRuns(message.substr(body_start), body);
    body.Final(body_hash);
  }

  // 3. The signature header with an empty b=, folded.
  const size_t start = out->size();
  out->append(header_prefix_);
  size_t line_len = header_prefix_.size();
  AppendFolded(domain_tag_, out, &line_len);
  char num[32];
  {
    // s=<selector>; written in place (no temporary string).
    size_t need = 2 + selector_.size() + 1;
    if (line_len + 1 + need > kMaxLine) {
      out->append("\r\n\t");
      line_len = 1;
    } else {
      out->push_back(' ');
      ++line_len;
    }
    out->append("s=");
    out->append(selector_);
    out->push_back(';');
    line_len += need;
  }
  {
    int n = std::snprintf(num, sizeof(num), "t=%lld;",
                          static_cast<long long>(absl::ToUnixSeconds(t)));
    AppendFolded(absl::string_view(num, n), out, &line_len);
  }
  // h=name:name:...; folded after a colon when a line fills up.
  bool first = true;
  for (size_t i = 0; i < headers_.size(); ++i) {
    if (picked[i].raw.empty()) continue;
    absl::string_view name = headers_[i];
    if (first) {
      // "h=" + name must fit on the line together.
      if (line_len + 3 + name.size() + 1 > kMaxLine) {
        out->append("\r\n\t");
        line_len = 1;
      } else {
        out->push_back(' ');
        ++line_len;
      }
      out->append("h=");
      line_len += 2;
      first = false;
    } else {
      out->push_back(':');
      ++line_len;
      if (line_len + name.size() + 1 > kMaxLine) {
        out->append("\r\n\t");
        line_len = 1;
      }
    }
    out->append(name.data(), name.size());
    line_len += name.size();
  }
  out->push_back(';');
  ++line_len;
  {
    // bh=<44 base64 chars>;
    char bh[3 + 45 + 1];
    bh[0] = 'b';
    bh[1] = 'h';
    bh[2] = '=';
    size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(bh + 3), body_hash,
                               sizeof(body_hash));
    bh[3 + n] = ';';
    AppendFolded(absl::string_view(bh, 3 + n + 1), out, &line_len);
  }
  AppendFolded("b=", out, &line_len);

  // 4. Hash the signed headers, then the signature header (b= empty, no
  // final CRLF).
  uint8_t digest[SHA256_DIGEST_LENGTH];
  {
    Sha256Sink hash;
    for (const HeaderField& f : picked) {
      if (!f.raw.empty()) CanonicalizeHeaderRelaxed(f, true, hash);
    }
    absl::string_view self(out->data() + start, out->size() - start);
    HeaderField sig{absl::string_view("DKIM-Signature"), self};
    CanonicalizeHeaderRelaxed(sig, false, hash);
    hash.Final(digest);
  }

  // 5. Sign the digest (RFC 8463: Ed25519 signs the SHA-256 hash too).
  uint8_t signature[kMaxSignature];
  size_t sig_len = 0;
  if (algorithm_ == Algorithm::kRsaSha256) {
    unsigned len = 0;
    if (!RSA_sign(NID_sha256, digest, sizeof(digest), signature, &len,
                  EVP_PKEY_get0_RSA(pkey_))) {
      out->resize(start);
      return absl::InternalError(
          absl::StrCat("dkim: RSA_sign failed: ", OpensslError()));
    }
    sig_len = len;
  } else if (SodiumReady()) {
    // AVX-512 IFMA when the CPU has it, else crypto_sign_ed25519_detached;
    // the same bytes either way (ed25519_fast_test).
    Ed25519Sign(ed25519_expanded_, digest, sizeof(digest), signature);
    sig_len = 64;
  } else {
    if (!ED25519_sign(signature, digest, sizeof(digest),
                      ed25519_key_.data())) {
      out->resize(start);
      return absl::InternalError("dkim: ED25519_sign failed");
    }
    sig_len = 64;
  }

  // 6. b=<base64>, folded at line ends, then CRLF.
  char b64[4 * (kMaxSignature / 3 + 1) + 1];
  size_t b64_len = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(b64), signature,
                                   sig_len);
  size_t i = 0;
  while (i < b64_len) {
    size_t room = line_len < kMaxLine ? kMaxLine - line_len : 0;
    if (room == 0) {
      out->append("\r\n\t");
      line_len = 1;
      continue;
    }
    size_t n = std::min(room, b64_len - i);
    out->append(b64 + i, n);
    line_len += n;
    i += n;
  }
  out->append("\r\n");
  return absl::OkStatus();
}

absl::string_view AddressDomain(absl::string_view address) {
  size_t open = address.rfind('<');
  if (open != absl::string_view::npos) {
    size_t close = address.find('>', open);
    address = address.substr(open + 1, close == absl::string_view::npos
                                           ? absl::string_view::npos
                                           : close - open - 1);
  }
  size_t at = address.rfind('@');
  if (at == absl::string_view::npos) return {};
  absl::string_view domain = address.substr(at + 1);
  while (!domain.empty() && (domain.back() == ' ' || domain.back() == '\t' ||
                             domain.back() == '.')) {
    domain.remove_suffix(1);
  }
  return domain;
}

size_t DkimSigners::CaseInsensitiveHash::operator()(
    absl::string_view s) const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over lowercase bytes
  for (char c : s) {
    h ^= static_cast<unsigned char>(absl::ascii_tolower(c));
    h *= 1099511628211ull;
  }
  return static_cast<size_t>(h);
}

bool DkimSigners::CaseInsensitiveEq::operator()(absl::string_view a,
                                                absl::string_view b) const {
  return absl::EqualsIgnoreCase(a, b);
}

absl::StatusOr<DkimSigners> DkimSigners::Create(
    absl::Span<const SignerOptions> options, const core::Clock& clock) {
  DkimSigners set;
  for (const SignerOptions& o : options) {
    auto signer = DkimSigner::Create(o, clock);
    if (!signer.ok()) return signer.status();
    absl::Status s = set.Add(std::move(*signer));
    if (!s.ok()) return s;
  }
  return set;
}

absl::Status DkimSigners::Add(std::unique_ptr<const DkimSigner> signer) {
  auto& list = by_domain_[signer->domain()];
  for (const auto& s : list) {
    if (s->selector() == signer->selector() &&
        s->algorithm() == signer->algorithm()) {
      return absl::AlreadyExistsError(
          absl::StrCat("dkim: ", signer->domain(), " already has a ",
                       AlgorithmName(signer->algorithm()),
                       " signer with selector ", signer->selector()));
    }
  }
  list.push_back(std::move(signer));
  ++count_;
  return absl::OkStatus();
}

absl::Status DkimSigners::SignFor(absl::string_view from_domain,
                                  absl::string_view message,
                                  std::string* headers) const {
  headers->clear();
  auto it = by_domain_.find(from_domain);
  if (it == by_domain_.end()) return absl::OkStatus();
  for (const auto& signer : it->second) {
    absl::Status s = signer->SignAt(message, signer->clock_->Now(), headers);
    if (!s.ok()) {
      headers->clear();
      return s;
    }
  }
  return absl::OkStatus();
}

bool DkimSigners::HasDomain(absl::string_view domain) const {
  return by_domain_.contains(domain);
}

}  // namespace salvo::dkim
