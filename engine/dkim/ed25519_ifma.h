// Internal to ed25519_fast: the AVX-512 IFMA fixed-base scalar
// multiplication R = r*B (8 lanes inside one multiplication) and the field
// arithmetic under it, plus the scalar (radix 2^51, unsigned __int128)
// field code used for the inversion and the table. Compiled with AVX-512
// flags: call NOTHING here unless IfmaSupported() is true (the functions
// below other than IfmaSupported() may execute AVX-512 instructions).
// Pure, no I/O; every function is thread-safe (the table is built once, at
// first use, under a function-local static). Exposed for ed25519_fast.cc
// and ed25519_fast_test.cc only.
#ifndef SALVO_ENGINE_DKIM_ED25519_IFMA_H_
#define SALVO_ENGINE_DKIM_ED25519_IFMA_H_

#include <cstdint>

namespace salvo::dkim::ifma {

// avx512f/dq/vl/ifma and bmi2 on this CPU (and the OS saves zmm state).
// Checked once; safe to call anywhere (this one is compiled without AVX).
bool IfmaSupported();

// Field elements mod p = 2^255 - 19 as 5 limbs of radix 2^51, value
// sum limb[i] * 2^(51 i) (limbs may exceed 51 bits; bounds per function).
using Limbs = uint64_t[5];
// Eight lanes of the vector form: limbs8[l][k] is limb l of lane k.
using Limbs8 = uint64_t[5][8];

// Vector field ops on 8 lanes (for tests). Mul: inputs < 2^52 per limb,
// output < 2^51 + 2^15. Add/Sub: inputs < 2^51 + 2^15, output (carried)
// < 2^51 + 2^8; Sub computes a - b + 2p.
void Fe8Mul(const Limbs8 a, const Limbs8 b, Limbs8 out);
void Fe8Add(const Limbs8 a, const Limbs8 b, Limbs8 out);
void Fe8Sub(const Limbs8 a, const Limbs8 b, Limbs8 out);
// Scalar field ops. Mul: inputs < 2^52 per limb, output < 2^51 + 2^11.
// Invert: a^(p-2) (0 -> 0). ToBytes: any limbs < 2^63 -> the canonical
// 32-byte little-endian encoding of the value mod p.
void FeMul(const Limbs a, const Limbs b, Limbs out);
void FeInvert(const Limbs a, Limbs out);
void FeToBytes(const Limbs a, uint8_t out[32]);

// Builds the 120 KiB table of multiples of B now (~1 ms, once per process)
// rather than in the first ScalarMultBase*().
void PrepareTable();

// R = sum e[i] * 16^i * B for digits e[i] in [-8, 8], encoded (RFC 8032
// 5.1.2). Constant time in the digits.
void ScalarMultBaseDigits(const int8_t e[64], uint8_t out[32]);
// R = s * B for s < 2^255 (s[31] <= 127), little-endian, encoded.
// Constant time in s.
void ScalarMultBase(const uint8_t s[32], uint8_t out[32]);

}  // namespace salvo::dkim::ifma

#endif  // SALVO_ENGINE_DKIM_ED25519_IFMA_H_
