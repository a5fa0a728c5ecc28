// Ed25519Sign against libsodium: byte-exact signatures for 20,000+ seeded
// random (key, message) pairs and the fallback; the IFMA scalar
// multiplication on edge scalars and digit patterns against
// crypto_scalarmult_ed25519_base_noclamp; the vector and scalar field ops
// against BoringSSL BIGNUM references at and near their limb bounds; the
// RFC 8032 constants. IFMA tests skip (with a message) on CPUs without it.
#include "engine/dkim/ed25519_fast.h"

#include <openssl/bn.h>
#include <sodium.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/dkim/ed25519_ifma.h"
#include "gtest/gtest.h"

namespace salvo::dkim {
namespace {

#define SKIP_WITHOUT_IFMA()                                            \
  if (!ifma::IfmaSupported()) {                                        \
    GTEST_SKIP() << "CPU lacks AVX-512 IFMA: fast path not testable"; \
  }

std::string Hex(const uint8_t* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

// BIGNUM helpers (the reference arithmetic).
struct Bn {
  Bn() : bn(BN_new()) {}
  ~Bn() { BN_free(bn); }
  Bn(const Bn&) = delete;
  Bn& operator=(const Bn&) = delete;
  BIGNUM* bn;
};

struct Ctx {
  Ctx() : ctx(BN_CTX_new()) {}
  ~Ctx() { BN_CTX_free(ctx); }
  BN_CTX* ctx;
};

const BIGNUM* P() {
  static BIGNUM* p = [] {
    BIGNUM* p = BN_new();
    BN_set_bit(p, 255);
    BN_sub_word(p, 19);
    return p;
  }();
  return p;
}

const BIGNUM* L() {
  static BIGNUM* l = [] {
    BIGNUM* l = BN_new();  // L = 2^252 + 27742...8493
    BN_set_bit(l, 252);
    BIGNUM* c = nullptr;
    BN_dec2bn(&c, "27742317777372353535851937790883648493");
    BN_add(l, l, c);
    BN_free(c);
    return l;
  }();
  return l;
}

// sum limbs[i] * 2^(51 i) mod p.
void FromLimbs(const uint64_t* limbs, size_t stride, BIGNUM* out) {
  Ctx ctx;
  BN_zero(out);
  for (int i = 4; i >= 0; --i) {
    BN_lshift(out, out, 51);
    Bn w;
    BN_set_u64(w.bn, limbs[i * stride]);
    BN_add(out, out, w.bn);
  }
  BN_nnmod(out, out, P(), ctx.ctx);
}

// Uniform limbs below `bound`, with a few lanes pinned at bound - 1.
uint64_t RandomLimb(std::mt19937_64& rng, uint64_t bound) {
  switch (rng() % 8) {
    case 0:
      return bound - 1;
    case 1:
      return 0;
    case 2:
      return bound - 1 - (rng() % 64);
    default:
      return rng() % bound;
  }
}

constexpr uint64_t k2to51 = uint64_t{1} << 51;
constexpr uint64_t k2to52 = uint64_t{1} << 52;

TEST(Ed25519FieldTest, VectorMulAddSubMatchBignum) {
  SKIP_WITHOUT_IFMA();
  std::mt19937_64 rng(25519);
  Ctx ctx;
  for (int round = 0; round < 2000; ++round) {
    uint64_t a[5][8], b[5][8], am[5][8], bm[5][8];
    for (int l = 0; l < 5; ++l) {
      for (int k = 0; k < 8; ++k) {
        a[l][k] = RandomLimb(rng, k2to52);  // Mul input bound
        b[l][k] = RandomLimb(rng, k2to52);
        am[l][k] = RandomLimb(rng, k2to51 + (1 << 15));  // Add/Sub bound
        bm[l][k] = RandomLimb(rng, k2to51 + (1 << 15));
      }
    }
    uint64_t mul[5][8], add[5][8], sub[5][8];
    ifma::Fe8Mul(a, b, mul);
    ifma::Fe8Add(am, bm, add);
    ifma::Fe8Sub(am, bm, sub);
    for (int k = 0; k < 8; ++k) {
      Bn x, y, want, got;
      FromLimbs(&a[0][k], 8, x.bn);
      FromLimbs(&b[0][k], 8, y.bn);
      BN_mod_mul(want.bn, x.bn, y.bn, P(), ctx.ctx);
      FromLimbs(&mul[0][k], 8, got.bn);
      ASSERT_EQ(BN_cmp(want.bn, got.bn), 0) << "mul round " << round;
      FromLimbs(&am[0][k], 8, x.bn);
      FromLimbs(&bm[0][k], 8, y.bn);
      BN_mod_add(want.bn, x.bn, y.bn, P(), ctx.ctx);
      FromLimbs(&add[0][k], 8, got.bn);
      ASSERT_EQ(BN_cmp(want.bn, got.bn), 0) << "add round " << round;
      BN_mod_sub(want.bn, x.bn, y.bn, P(), ctx.ctx);
      FromLimbs(&sub[0][k], 8, got.bn);
      ASSERT_EQ(BN_cmp(want.bn, got.bn), 0) << "sub round " << round;
      for (int l = 0; l < 5; ++l) {
        ASSERT_LT(mul[l][k], k2to51 + (1 << 15));
        ASSERT_LT(add[l][k], k2to51 + (1 << 8));
        ASSERT_LT(sub[l][k], k2to51 + (1 << 8));
      }
    }
  }
}

TEST(Ed25519FieldTest, ScalarMulInvertToBytesMatchBignum) {
  SKIP_WITHOUT_IFMA();
  std::mt19937_64 rng(8032);
  Ctx ctx;
  // Edge values: 0, 1, p - 1, p, p + 1, 2^255 - 1, 2^255 + 18, all limbs at
  // 2^52 - 1, then random limbs at their bounds.
  std::vector<std::vector<uint64_t>> edges = {
      {0, 0, 0, 0, 0},
      {1, 0, 0, 0, 0},
      {k2to51 - 20, k2to51 - 1, k2to51 - 1, k2to51 - 1, k2to51 - 1},
      {k2to51 - 19, k2to51 - 1, k2to51 - 1, k2to51 - 1, k2to51 - 1},
      {k2to51 - 18, k2to51 - 1, k2to51 - 1, k2to51 - 1, k2to51 - 1},
      {k2to51 - 1, k2to51 - 1, k2to51 - 1, k2to51 - 1, k2to51 - 1},
      {k2to51 + 18, k2to51 - 1, k2to51 - 1, k2to51 - 1, k2to51 - 1},
      {k2to52 - 1, k2to52 - 1, k2to52 - 1, k2to52 - 1, k2to52 - 1},
  };
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint64_t> v(5);
    for (auto& x : v) x = RandomLimb(rng, k2to52);
    edges.push_back(v);
  }
  for (size_t i = 0; i < edges.size(); ++i) {
    const uint64_t* a = edges[i].data();
    const uint64_t* b = edges[(i * 7 + 3) % edges.size()].data();
    Bn x, y, want, got;
    FromLimbs(a, 1, x.bn);
    FromLimbs(b, 1, y.bn);
    uint64_t out[5];
    ifma::FeMul(a, b, out);
    BN_mod_mul(want.bn, x.bn, y.bn, P(), ctx.ctx);
    FromLimbs(out, 1, got.bn);
    ASSERT_EQ(BN_cmp(want.bn, got.bn), 0) << "mul " << i;
    for (int l = 0; l < 5; ++l) ASSERT_LT(out[l], k2to51 + (1 << 11));
    // ToBytes is canonical: equals the reduced value's bytes.
    uint8_t bytes[32], want_bytes[32];
    ifma::FeToBytes(a, bytes);
    ASSERT_TRUE(BN_bn2le_padded(want_bytes, 32, x.bn));
    ASSERT_EQ(Hex(bytes, 32), Hex(want_bytes, 32)) << "to_bytes " << i;
    if (i < 200) {  // inversions are slow-ish
      ifma::FeInvert(a, out);
      FromLimbs(out, 1, got.bn);
      if (BN_is_zero(x.bn)) {
        ASSERT_TRUE(BN_is_zero(got.bn));
      } else {
        ASSERT_TRUE(BN_mod_inverse(want.bn, x.bn, P(), ctx.ctx));
        ASSERT_EQ(BN_cmp(want.bn, got.bn), 0) << "invert " << i;
      }
    }
  }
  // ToBytes takes limbs up to 2^63.
  uint64_t big[5] = {(uint64_t{1} << 63) - 1, (uint64_t{1} << 63) - 1,
                     (uint64_t{1} << 63) - 1, (uint64_t{1} << 63) - 1,
                     (uint64_t{1} << 63) - 1};
  Bn x;
  FromLimbs(big, 1, x.bn);
  uint8_t bytes[32], want_bytes[32];
  ifma::FeToBytes(big, bytes);
  ASSERT_TRUE(BN_bn2le_padded(want_bytes, 32, x.bn));
  EXPECT_EQ(Hex(bytes, 32), Hex(want_bytes, 32));
}

// The RFC 8032 decimal constants the ifma code carries as limbs: on the
// curve, y = 4/5, d = -121665/121666, and (x, y) encodes to libsodium's B.
TEST(Ed25519FieldTest, Rfc8032Constants) {
  ASSERT_GE(sodium_init(), 0);
  Ctx ctx;
  BIGNUM *x = nullptr, *y = nullptr, *d = nullptr;
  ASSERT_TRUE(BN_dec2bn(&x,
                        "151122213495354007725011514095885315114540126930418"
                        "57206046113283949847762202"));
  ASSERT_TRUE(BN_dec2bn(&y,
                        "463168356949264781694283940034751631413079938662562"
                        "25615783033603165251855960"));
  ASSERT_TRUE(BN_dec2bn(&d,
                        "370957059346694393431380835087545651895421138798432"
                        "19016388785533085940283555"));
  Bn x2, y2, lhs, rhs, t;
  BN_mod_sqr(x2.bn, x, P(), ctx.ctx);
  BN_mod_sqr(y2.bn, y, P(), ctx.ctx);
  BN_mod_sub(lhs.bn, y2.bn, x2.bn, P(), ctx.ctx);  // -x^2 + y^2
  BN_mod_mul(t.bn, x2.bn, y2.bn, P(), ctx.ctx);
  BN_mod_mul(t.bn, t.bn, d, P(), ctx.ctx);
  BN_one(rhs.bn);
  BN_mod_add(rhs.bn, rhs.bn, t.bn, P(), ctx.ctx);  // 1 + d x^2 y^2
  EXPECT_EQ(BN_cmp(lhs.bn, rhs.bn), 0);
  Bn five_y, d_num;
  BN_copy(five_y.bn, y);
  BN_mul_word(five_y.bn, 5);
  BN_nnmod(five_y.bn, five_y.bn, P(), ctx.ctx);
  EXPECT_TRUE(BN_is_word(five_y.bn, 4));
  BN_copy(d_num.bn, d);
  BN_mul_word(d_num.bn, 121666);
  BN_add_word(d_num.bn, 121665);
  BN_nnmod(d_num.bn, d_num.bn, P(), ctx.ctx);
  EXPECT_TRUE(BN_is_zero(d_num.bn));
  uint8_t enc[32], one[32] = {1}, base[32];
  ASSERT_TRUE(BN_bn2le_padded(enc, 32, y));
  enc[31] |= static_cast<uint8_t>(BN_is_odd(x) << 7);
  ASSERT_EQ(crypto_scalarmult_ed25519_base_noclamp(base, one), 0);
  EXPECT_EQ(Hex(enc, 32), Hex(base, 32));
  BN_free(x);
  BN_free(y);
  BN_free(d);
}

// sum e[i] 16^i mod L, as 32 little-endian bytes.
void DigitsValue(const int8_t e[64], uint8_t out[32]) {
  Ctx ctx;
  Bn v, w;
  BN_zero(v.bn);
  for (int i = 63; i >= 0; --i) {
    BN_lshift(v.bn, v.bn, 4);
    BN_set_word(w.bn, e[i] < 0 ? -e[i] : e[i]);
    if (e[i] < 0) {
      BN_sub(v.bn, v.bn, w.bn);
    } else {
      BN_add(v.bn, v.bn, w.bn);
    }
  }
  BN_nnmod(v.bn, v.bn, L(), ctx.ctx);
  BN_bn2le_padded(out, 32, v.bn);
}

void ExpectDigits(const int8_t e[64], const std::string& what) {
  uint8_t s[32], want[32], got[32];
  DigitsValue(e, s);
  if (sodium_is_zero(s, 32)) {
    std::memset(want, 0, 32);
    want[0] = 1;  // the identity (0, 1)
  } else {
    ASSERT_EQ(crypto_scalarmult_ed25519_base_noclamp(want, s), 0) << what;
  }
  ifma::ScalarMultBaseDigits(e, got);
  EXPECT_EQ(Hex(got, 32), Hex(want, 32)) << what;
}

TEST(Ed25519ScalarMultTest, DigitPatterns) {
  SKIP_WITHOUT_IFMA();
  ASSERT_GE(sodium_init(), 0);
  int8_t e[64];
  for (int8_t v : {0, 8, -8, 1, -1, 7, -7}) {
    std::memset(e, v, sizeof(e));
    ExpectDigits(e, "all " + std::to_string(v));
  }
  for (int i = 0; i < 64; ++i) e[i] = (i % 2) ? -8 : 8;
  ExpectDigits(e, "alternating 8/-8");
  for (int pos = 0; pos < 64; ++pos) {  // one digit at each window and lane
    for (int8_t v : {8, -8, 3}) {
      std::memset(e, 0, sizeof(e));
      e[pos] = v;
      ExpectDigits(e, "single digit at " + std::to_string(pos));
    }
  }
  std::mt19937_64 rng(16);
  for (int round = 0; round < 500; ++round) {
    for (int i = 0; i < 64; ++i) e[i] = static_cast<int8_t>(rng() % 17) - 8;
    ExpectDigits(e, "random digits " + std::to_string(round));
  }
}

void ExpectScalar(const uint8_t s[32], const std::string& what) {
  uint8_t want[32], got[32];
  if (sodium_is_zero(s, 32)) {
    std::memset(want, 0, 32);
    want[0] = 1;
  } else {
    ASSERT_EQ(crypto_scalarmult_ed25519_base_noclamp(want, s), 0) << what;
  }
  ifma::ScalarMultBase(s, got);
  EXPECT_EQ(Hex(got, 32), Hex(want, 32)) << what;
}

TEST(Ed25519ScalarMultTest, EdgeAndRandomScalars) {
  SKIP_WITHOUT_IFMA();
  ASSERT_GE(sodium_init(), 0);
  uint8_t s[32] = {};
  ExpectScalar(s, "0");
  s[0] = 1;
  ExpectScalar(s, "1");
  uint8_t l_minus_1[32];
  ASSERT_TRUE(BN_bn2le_padded(l_minus_1, 32, L()));
  l_minus_1[0] -= 1;  // L ends in 0xed
  ExpectScalar(l_minus_1, "L-1");
  uint8_t wide[64];
  std::memset(wide, 0xff, sizeof(wide));
  crypto_core_ed25519_scalar_reduce(s, wide);
  ExpectScalar(s, "reduce(0xff * 64)");
  std::memset(s, 0xff, 32);
  s[31] = 0x7f;  // 2^255 - 1, the largest input: top digit 8
  ExpectScalar(s, "2^255-1");
  std::memset(s, 0x88, 32);
  s[31] = 0x78;
  ExpectScalar(s, "0x88 pattern");
  std::mt19937_64 rng(252);
  for (int round = 0; round < 2000; ++round) {
    for (auto& b : wide) b = static_cast<uint8_t>(rng());
    crypto_core_ed25519_scalar_reduce(s, wide);
    ExpectScalar(s, "random " + std::to_string(round));
  }
}

// The signature test: Ed25519Sign, the fast path (when present) and the
// fallback all equal crypto_sign_ed25519_detached byte for byte, and
// libsodium verifies each.
TEST(Ed25519SignTest, ByteExactWithLibsodium) {
  ASSERT_GE(sodium_init(), 0);
  if (!Ed25519FastAvailable()) {
    std::printf("note: no AVX-512 IFMA; only the fallback is compared\n");
  }
  std::mt19937_64 rng(6376);
  constexpr int kPairs = 20000;
  int dkim_case = 0;
  for (int i = 0; i < kPairs; ++i) {
    uint8_t seed[32], pk[32], sk[64];
    for (auto& b : seed) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(crypto_sign_ed25519_seed_keypair(pk, sk, seed), 0);
    // Every 4th pair: the DKIM case (a 32-byte SHA-256 digest).
    size_t len = (i % 4 == 0) ? 32 : rng() % 201;
    dkim_case += len == 32;
    std::vector<uint8_t> msg(len);
    for (auto& b : msg) b = static_cast<uint8_t>(rng());
    uint8_t want[64], got[64], fallback[64];
    ASSERT_EQ(crypto_sign_ed25519_detached(want, nullptr, msg.data(), len, sk),
              0);
    Ed25519Key key = Ed25519Key::FromSeedAndPublic(sk);
    Ed25519Sign(key, msg.data(), len, got);
    Ed25519SignFallback(key, msg.data(), len, fallback);
    ASSERT_EQ(Hex(got, 64), Hex(want, 64)) << "pair " << i << " len " << len;
    ASSERT_EQ(Hex(fallback, 64), Hex(want, 64)) << "pair " << i;
    ASSERT_EQ(crypto_sign_ed25519_verify_detached(got, msg.data(), len, pk),
              0)
        << "pair " << i;
  }
  EXPECT_GE(dkim_case, kPairs / 4);
}

// A signature from a wrong key or over another message must differ: the
// comparison above can fail.
TEST(Ed25519SignTest, DiffersForOtherKeyOrMessage) {
  ASSERT_GE(sodium_init(), 0);
  uint8_t seed[32] = {7}, pk[32], sk[64];
  crypto_sign_ed25519_seed_keypair(pk, sk, seed);
  Ed25519Key key = Ed25519Key::FromSeedAndPublic(sk);
  uint8_t m1[32] = {1}, m2[32] = {2}, s1[64], s2[64];
  Ed25519Sign(key, m1, 32, s1);
  Ed25519Sign(key, m2, 32, s2);
  EXPECT_NE(Hex(s1, 64), Hex(s2, 64));
  EXPECT_NE(crypto_sign_ed25519_verify_detached(s1, m2, 32, pk), 0);
}

}  // namespace
}  // namespace salvo::dkim
