// Ed25519 signing (RFC 8032 5.1.6) byte-exact with libsodium's
// crypto_sign_ed25519_detached, faster on CPUs with AVX-512 IFMA: the
// fixed-base multiplication R = r*B runs 8 lanes in one AVX-512 register
// set (ed25519_ifma), hashing and mod-L arithmetic stay with libsodium.
// Elsewhere Ed25519Sign falls back to crypto_sign_ed25519_detached.
// In: a 64-byte keypair (seed || public key) once, then messages. Out: the
// 64-byte signature. Every function may be called from any thread; a key is
// immutable after construction.
#ifndef SALVO_ENGINE_DKIM_ED25519_FAST_H_
#define SALVO_ENGINE_DKIM_ED25519_FAST_H_

#include <cstddef>
#include <cstdint>

namespace salvo::dkim {

// What signing needs, expanded once per key: the libsodium keypair (for the
// fallback), the clamped secret scalar a (reduced mod L), the nonce prefix
// and the public key A. Wiped on destruction.
class Ed25519Key {
 public:
  Ed25519Key() = default;  // all zero: sign only with a key from below
  // keypair = seed (32) || public key (32), as libsodium and BoringSSL lay
  // it out. Like libsodium, the public half is used as given. The first call
  // in a process also builds the IFMA table of multiples of B (~1 ms).
  static Ed25519Key FromSeedAndPublic(const uint8_t keypair[64]);
  Ed25519Key(const Ed25519Key&) = default;
  Ed25519Key& operator=(const Ed25519Key&) = default;
  ~Ed25519Key();

 private:
  friend void Ed25519Sign(const Ed25519Key&, const uint8_t*, size_t,
                          uint8_t*);
  friend void Ed25519SignFallback(const Ed25519Key&, const uint8_t*, size_t,
                                  uint8_t*);
  uint8_t keypair_[64] = {};
  uint8_t scalar_[32] = {};  // clamp(SHA512(seed)[0..32]) mod L
  uint8_t prefix_[32] = {};  // SHA512(seed)[32..64]
};

// Signs msg[0..len) exactly as crypto_sign_ed25519_detached does: the IFMA
// path when Ed25519FastAvailable(), else the fallback. sig gets 64 bytes.
void Ed25519Sign(const Ed25519Key& key, const uint8_t* msg, size_t len,
                 uint8_t sig[64]);
// Always libsodium's crypto_sign_ed25519_detached (tests, benches).
void Ed25519SignFallback(const Ed25519Key& key, const uint8_t* msg,
                         size_t len, uint8_t sig[64]);
// The IFMA path is usable on this CPU (checked once) and libsodium
// initialized.
bool Ed25519FastAvailable();

}  // namespace salvo::dkim

#endif  // SALVO_ENGINE_DKIM_ED25519_FAST_H_
