// Ed25519Sign: libsodium SHA-512 and mod-L scalar arithmetic around the
// AVX-512 IFMA R = r*B of ed25519_ifma. Compiled WITHOUT AVX-512 flags:
// this file decides, once, whether ed25519_ifma may run. See
// ed25519_fast.h.
#include "engine/dkim/ed25519_fast.h"

#include <sodium.h>

#include <cstring>

#include "engine/dkim/ed25519_ifma.h"

namespace salvo::dkim {
namespace ifma {

bool IfmaSupported() {
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512ifma") &&
           __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("adx");
  }();
  return supported;
}

}  // namespace ifma

namespace {

bool SodiumInit() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

}  // namespace

bool Ed25519FastAvailable() {
  static const bool available = SodiumInit() && ifma::IfmaSupported();
  return available;
}

Ed25519Key Ed25519Key::FromSeedAndPublic(const uint8_t keypair[64]) {
  SodiumInit();
  // The table is built here, at key load, not in the first signature.
  if (Ed25519FastAvailable()) ifma::PrepareTable();
  Ed25519Key key;
  std::memcpy(key.keypair_, keypair, 64);
  uint8_t h[64];
  crypto_hash_sha512(h, keypair, 32);
  h[0] &= 248;
  h[31] &= 127;
  h[31] |= 64;
  uint8_t wide[64] = {};
  std::memcpy(wide, h, 32);
  crypto_core_ed25519_scalar_reduce(key.scalar_, wide);
  std::memcpy(key.prefix_, h + 32, 32);
  sodium_memzero(h, sizeof(h));
  sodium_memzero(wide, sizeof(wide));
  return key;
}

Ed25519Key::~Ed25519Key() {
  sodium_memzero(keypair_, sizeof(keypair_));
  sodium_memzero(scalar_, sizeof(scalar_));
  sodium_memzero(prefix_, sizeof(prefix_));
}

void Ed25519SignFallback(const Ed25519Key& key, const uint8_t* msg,
                         size_t len, uint8_t sig[64]) {
  SodiumInit();
  crypto_sign_ed25519_detached(sig, nullptr, msg, len, key.keypair_);
}

void Ed25519Sign(const Ed25519Key& key, const uint8_t* msg, size_t len,
                 uint8_t sig[64]) {
  if (!Ed25519FastAvailable()) {
    Ed25519SignFallback(key, msg, len, sig);
    return;
  }
  // r = SHA512(prefix || M) mod L; R = r*B.
  uint8_t hash[64];
  uint8_t r[32];
  crypto_hash_sha512_state st;
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, key.prefix_, 32);
  crypto_hash_sha512_update(&st, msg, len);
  crypto_hash_sha512_final(&st, hash);
  crypto_core_ed25519_scalar_reduce(r, hash);
  ifma::ScalarMultBase(r, sig);
  // k = SHA512(R || A || M) mod L; S = (r + k*a) mod L.
  uint8_t k[32];
  crypto_hash_sha512_init(&st);
  crypto_hash_sha512_update(&st, sig, 32);
  crypto_hash_sha512_update(&st, key.keypair_ + 32, 32);
  crypto_hash_sha512_update(&st, msg, len);
  crypto_hash_sha512_final(&st, hash);
  crypto_core_ed25519_scalar_reduce(k, hash);
  uint8_t ka[32];
  crypto_core_ed25519_scalar_mul(ka, k, key.scalar_);
  crypto_core_ed25519_scalar_add(sig + 32, ka, r);
  sodium_memzero(r, sizeof(r));
  sodium_memzero(hash, sizeof(hash));
  sodium_memzero(ka, sizeof(ka));
}

}  // namespace salvo::dkim
