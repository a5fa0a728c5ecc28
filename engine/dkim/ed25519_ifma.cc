// AVX-512 IFMA fixed-base scalar multiplication for Ed25519 signing; see
// ed25519_ifma.h. Compiled with -mavx512f/dq/vl/ifma -mbmi2 -madx, so only
// reached after IfmaSupported() (in ed25519_fast.cc, compiled without them).
// Everything but the declared entry points is in an anonymous namespace and
// only <immintrin.h>/<cstdint>/<cstring> are included, so no inline function
// compiled here with AVX-512 can be merged into other translation units.
//
// Field: p = 2^255 - 19, 5 limbs of radix 2^51. A vector element (Fe8) holds
// 8 independent lanes, one __m512i per limb. IFMA multiplies the LOW 52 BITS
// of each 64-bit operand, so every limb fed to Mul must be < 2^52; each
// function states its bounds:
//   Mul:   in < 2^52            out < 2^51 + 2^15
//   Add:   in < 2^51 + 2^15     out < 2^51 + 2^8   (carried)
//   Sub:   in < 2^51 + 2^15     out < 2^51 + 2^8   (a + 2p - b, carried)
//   Neg:   in < 2^51 (table)    out < 2^52         (2p - a, not carried)
// so any Add/Sub/Mul output and any negated table entry is a valid Mul input.
//
// Curve: -x^2 + y^2 = 1 + d x^2 y^2, extended coordinates (X:Y:Z:T), x=X/Z,
// y=Y/Z, T=XY/Z; the unified addition below is complete on Ed25519.
#include "engine/dkim/ed25519_ifma.h"

// GCC 12's avx512fintrin.h self-initializes _mm512_undefined_epi32()'s
// result, which -Wuninitialized reports at every inlined use (a false
// positive; the value is a don't-care).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace salvo::dkim::ifma {
namespace {

constexpr uint64_t kMask51 = (uint64_t{1} << 51) - 1;

// 2d mod p, d = -121665/121666 =
// 37095705934669439343138083508754565189542113879843219016388785533085940283555
constexpr uint64_t kD2[5] = {0x69b9426b2f159ull, 0x35050762add7aull,
                             0x3cf44c0038052ull, 0x6738cc7407977ull,
                             0x2406d9dc56dffull};
// 1/d mod p =
// 29203323570479832313932222820853031755424015489030106335172286495629888845891
constexpr uint64_t kInvD[5] = {0xf276cdc9f843ull, 0x3084f2a85c4bcull,
                               0x6e73d982d775aull, 0x721958b108a66ull,
                               0x40907ed214d5cull};
// The base point B (RFC 8032 5.1), x =
// 15112221349535400772501151409588531511454012693041857206046113283949847762202
// y = 4/5 =
// 46316835694926478169428394003475163141307993866256225615783033603165251855960
constexpr uint64_t kBaseX[5] = {0x62d608f25d51aull, 0x412a4b4f6592aull,
                                0x75b7171a4b31dull, 0x1ff60527118feull,
                                0x216936d3cd6e5ull};
constexpr uint64_t kBaseY[5] = {0x6666666666658ull, 0x4ccccccccccccull,
                                0x1999999999999ull, 0x3333333333333ull,
                                0x6666666666666ull};

// ---------------------------------------------------------------------------
// Scalar field, radix 2^51 with 128-bit products (table build, inversion).

struct Fe {
  uint64_t v[5];
};

// Any limbs -> limbs < 2^51 except v[0] < 2^51 + 19 * 2^13.
inline void Carry(Fe& h) {
  uint64_t c;
  c = h.v[0] >> 51; h.v[0] &= kMask51; h.v[1] += c;
  c = h.v[1] >> 51; h.v[1] &= kMask51; h.v[2] += c;
  c = h.v[2] >> 51; h.v[2] &= kMask51; h.v[3] += c;
  c = h.v[3] >> 51; h.v[3] &= kMask51; h.v[4] += c;
  c = h.v[4] >> 51; h.v[4] &= kMask51; h.v[0] += 19 * c;
}

inline Fe FeFrom(const uint64_t a[5]) {
  Fe r;
  std::memcpy(r.v, a, sizeof(r.v));
  return r;
}

inline Fe Add(const Fe& a, const Fe& b) {
  Fe r;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) r.v[i] = a.v[i] + b.v[i];
  Carry(r);
  return r;
}

// a - b + 4p; a, b limbs < 2^52 (4p limbs are >= 2^53 - 76).
inline Fe Sub(const Fe& a, const Fe& b) {
  Fe r;
  r.v[0] = a.v[0] + ((kMask51 - 18) << 2) - b.v[0];
  #pragma GCC unroll 10
  for (int i = 1; i < 5; ++i) r.v[i] = a.v[i] + (kMask51 << 2) - b.v[i];
  Carry(r);
  return r;
}

// Inputs < 2^52: a column is < 5 * 19 * 2^104 < 2^111 (no overflow with
// the carries of < 2^60 added); column 4 has no factor 19: < 2^107, so its
// carry is < 2^56 and 19 times it < 2^61. Output < 2^51 + 2^11.
__attribute__((always_inline)) inline Fe Mul(const Fe& a, const Fe& b) {
  using U128 = unsigned __int128;
  const uint64_t* x = a.v;
  const uint64_t* y = b.v;
  uint64_t y19[5];
  #pragma GCC unroll 10
  for (int i = 1; i < 5; ++i) y19[i] = 19 * y[i];
  U128 c0 = (U128)x[0] * y[0] + (U128)x[1] * y19[4] + (U128)x[2] * y19[3] +
            (U128)x[3] * y19[2] + (U128)x[4] * y19[1];
  U128 c1 = (U128)x[0] * y[1] + (U128)x[1] * y[0] + (U128)x[2] * y19[4] +
            (U128)x[3] * y19[3] + (U128)x[4] * y19[2];
  U128 c2 = (U128)x[0] * y[2] + (U128)x[1] * y[1] + (U128)x[2] * y[0] +
            (U128)x[3] * y19[4] + (U128)x[4] * y19[3];
  U128 c3 = (U128)x[0] * y[3] + (U128)x[1] * y[2] + (U128)x[2] * y[1] +
            (U128)x[3] * y[0] + (U128)x[4] * y19[4];
  U128 c4 = (U128)x[0] * y[4] + (U128)x[1] * y[3] + (U128)x[2] * y[2] +
            (U128)x[3] * y[1] + (U128)x[4] * y[0];
  Fe r;
  c1 += (uint64_t)(c0 >> 51); r.v[0] = (uint64_t)c0 & kMask51;
  c2 += (uint64_t)(c1 >> 51); r.v[1] = (uint64_t)c1 & kMask51;
  c3 += (uint64_t)(c2 >> 51); r.v[2] = (uint64_t)c2 & kMask51;
  c4 += (uint64_t)(c3 >> 51); r.v[3] = (uint64_t)c3 & kMask51;
  uint64_t top = (uint64_t)(c4 >> 51);  // < 2^56
  r.v[4] = (uint64_t)c4 & kMask51;
  r.v[0] += 19 * top;
  uint64_t c = r.v[0] >> 51;
  r.v[0] &= kMask51;
  r.v[1] += c;
  return r;
}

// a^2 with 15 products instead of 25: same bounds as Mul (inputs < 2^52;
// doubled and 38-multiplied limbs < 2^58, columns < 3 * 2^110; column 4
// < 3 * 2^105, carry < 2^56). Output < 2^51 + 2^11.
__attribute__((always_inline)) inline Fe Sq(const Fe& a) {
  using U128 = unsigned __int128;
  const uint64_t* x = a.v;
  const uint64_t x0_2 = 2 * x[0], x1_2 = 2 * x[1];
  const uint64_t x3_19 = 19 * x[3], x4_19 = 19 * x[4];
  const uint64_t x3_38 = 38 * x[3], x4_38 = 38 * x[4];
  U128 c0 = (U128)x[0] * x[0] + (U128)x1_2 * x4_19 + (U128)x[2] * x3_38;
  U128 c1 = (U128)x0_2 * x[1] + (U128)x[3] * x3_19 + (U128)x[2] * x4_38;
  U128 c2 = (U128)x0_2 * x[2] + (U128)x[1] * x[1] + (U128)x[3] * x4_38;
  U128 c3 = (U128)x0_2 * x[3] + (U128)x1_2 * x[2] + (U128)x[4] * x4_19;
  U128 c4 = (U128)x0_2 * x[4] + (U128)x1_2 * x[3] + (U128)x[2] * x[2];
  Fe r;
  c1 += (uint64_t)(c0 >> 51); r.v[0] = (uint64_t)c0 & kMask51;
  c2 += (uint64_t)(c1 >> 51); r.v[1] = (uint64_t)c1 & kMask51;
  c3 += (uint64_t)(c2 >> 51); r.v[2] = (uint64_t)c2 & kMask51;
  c4 += (uint64_t)(c3 >> 51); r.v[3] = (uint64_t)c3 & kMask51;
  uint64_t top = (uint64_t)(c4 >> 51);
  r.v[4] = (uint64_t)c4 & kMask51;
  r.v[0] += 19 * top;
  uint64_t c = r.v[0] >> 51;
  r.v[0] &= kMask51;
  r.v[1] += c;
  return r;
}

// Squarings in a row.
inline Fe SqN(Fe a, int n) {
  for (int i = 0; i < n; ++i) a = Sq(a);
  return a;
}

// a^(p-2), p - 2 = 2^255 - 21 = (2^250 - 1) * 2^5 + 11.
Fe Invert(const Fe& z) {
  Fe z2 = Sq(z);                           // 2
  Fe z9 = Mul(SqN(z2, 2), z);              // 9
  Fe z11 = Mul(z9, z2);                    // 11
  Fe z_5 = Mul(Sq(z11), z9);               // 2^5 - 1
  Fe z_10 = Mul(SqN(z_5, 5), z_5);         // 2^10 - 1
  Fe z_20 = Mul(SqN(z_10, 10), z_10);      // 2^20 - 1
  Fe z_40 = Mul(SqN(z_20, 20), z_20);      // 2^40 - 1
  Fe z_50 = Mul(SqN(z_40, 10), z_10);      // 2^50 - 1
  Fe z_100 = Mul(SqN(z_50, 50), z_50);     // 2^100 - 1
  Fe z_200 = Mul(SqN(z_100, 100), z_100);  // 2^200 - 1
  Fe z_250 = Mul(SqN(z_200, 50), z_50);    // 2^250 - 1
  return Mul(SqN(z_250, 5), z11);          // 2^255 - 21
}

// Canonical little-endian bytes. Two carries leave v[0] < 2^51 + 19 and the
// others < 2^51, so h < 2^255 + 19 < 2p; q = [h + 19 >= 2^255] = [h >= p];
// h + 19q - 2^255 q is the canonical value. Branch-free.
void ToBytes(Fe h, uint8_t out[32]) {
  Carry(h);
  Carry(h);
  uint64_t q = (h.v[0] + 19) >> 51;
  q = (h.v[1] + q) >> 51;
  q = (h.v[2] + q) >> 51;
  q = (h.v[3] + q) >> 51;
  q = (h.v[4] + q) >> 51;
  h.v[0] += 19 * q;
  uint64_t c;
  c = h.v[0] >> 51; h.v[0] &= kMask51; h.v[1] += c;
  c = h.v[1] >> 51; h.v[1] &= kMask51; h.v[2] += c;
  c = h.v[2] >> 51; h.v[2] &= kMask51; h.v[3] += c;
  c = h.v[3] >> 51; h.v[3] &= kMask51; h.v[4] += c;
  h.v[4] &= kMask51;
  uint64_t w[4] = {h.v[0] | (h.v[1] << 51), (h.v[1] >> 13) | (h.v[2] << 38),
                   (h.v[2] >> 26) | (h.v[3] << 25),
                   (h.v[3] >> 39) | (h.v[4] << 12)};
  #pragma GCC unroll 10
  for (int i = 0; i < 4; ++i) {
    #pragma GCC unroll 10
    for (int b = 0; b < 8; ++b) out[8 * i + b] = (uint8_t)(w[i] >> (8 * b));
  }
}

struct Point {
  Fe x, y, z, t;
};

// Unified extended addition (Hisil-Wong-Carter-Dawson, a = -1, k = 2d).
Point AddPoints(const Point& p, const Point& q) {
  const Fe d2 = FeFrom(kD2);
  Fe a = Mul(Sub(p.y, p.x), Sub(q.y, q.x));
  Fe b = Mul(Add(p.y, p.x), Add(q.y, q.x));
  Fe c = Mul(Mul(p.t, d2), q.t);
  Fe zz = Mul(p.z, q.z);
  Fe d = Add(zz, zz);
  Fe e = Sub(b, a), f = Sub(d, c), g = Add(d, c), h = Add(b, a);
  return Point{Mul(e, f), Mul(g, h), Mul(f, g), Mul(e, h)};
}

// ---------------------------------------------------------------------------
// Vector field, 8 lanes.

struct Fe8 {
  __m512i v[5];
};

inline __m512i Mask51() { return _mm512_set1_epi64((long long)kMask51); }

// Parallel carry of every limb at once. In: any 64-bit limbs. Out: limb l < 2^51 + (in_{l-1} >> 51), limb 0 < 2^51 + 19 * (in_4
// >> 51). Mul feeds < 2^61 (carries < 2^10): out < 2^51 + 2^15. Add/Sub
// feed < 2^53 (carries <= 3): out < 2^51 + 57.
inline void Carry8(Fe8& a) {
  const __m512i m = Mask51();
  __m512i c0 = _mm512_srli_epi64(a.v[0], 51);
  __m512i c1 = _mm512_srli_epi64(a.v[1], 51);
  __m512i c2 = _mm512_srli_epi64(a.v[2], 51);
  __m512i c3 = _mm512_srli_epi64(a.v[3], 51);
  __m512i c4 = _mm512_srli_epi64(a.v[4], 51);
  // 19 c4 = 16 c4 + 2 c4 + c4.
  __m512i c4x19 = _mm512_add_epi64(
      _mm512_add_epi64(_mm512_slli_epi64(c4, 4), _mm512_slli_epi64(c4, 1)),
      c4);
  a.v[0] = _mm512_add_epi64(_mm512_and_si512(a.v[0], m), c4x19);
  a.v[1] = _mm512_add_epi64(_mm512_and_si512(a.v[1], m), c0);
  a.v[2] = _mm512_add_epi64(_mm512_and_si512(a.v[2], m), c1);
  a.v[3] = _mm512_add_epi64(_mm512_and_si512(a.v[3], m), c2);
  a.v[4] = _mm512_add_epi64(_mm512_and_si512(a.v[4], m), c3);
}

inline Fe8 Add8(const Fe8& a, const Fe8& b) {
  Fe8 r;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) r.v[i] = _mm512_add_epi64(a.v[i], b.v[i]);
  Carry8(r);
  return r;
}

// 2p in radix 2^51: limb 0 = 2^52 - 38, limbs 1..4 = 2^52 - 2; each is
// >= 2^51 + 2^15, so a + 2p - b never goes below zero for b in bounds.
inline __m512i TwoP(int limb) {
  return _mm512_set1_epi64(limb == 0 ? (long long)(2 * (kMask51 - 18))
                                     : (long long)(2 * kMask51));
}

inline Fe8 Sub8(const Fe8& a, const Fe8& b) {
  Fe8 r;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) {
    r.v[i] = _mm512_sub_epi64(_mm512_add_epi64(a.v[i], TwoP(i)), b.v[i]);
  }
  Carry8(r);
  return r;
}

// Inputs < 2^52. a_i b_j = lo + hi 2^52 with lo, hi < 2^52; in radix 2^51
// lo belongs to column i+j and hi to column i+j+1 times 2. A column holds at
// most 5 lo and 5 doubled hi terms: < 15 * 2^52 < 2^56. Folding columns 5..9
// into 0..4 (2^255 = 19): < 20 * 2^56 < 2^61. Carry8: out < 2^51 + 2^15.
inline Fe8 Mul8(const Fe8& a, const Fe8& b) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i lo[9], hi[10];
  #pragma GCC unroll 10
  for (int i = 0; i < 9; ++i) lo[i] = zero;
  #pragma GCC unroll 10
  for (int i = 0; i < 10; ++i) hi[i] = zero;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) {
    #pragma GCC unroll 10
    for (int j = 0; j < 5; ++j) {
      lo[i + j] = _mm512_madd52lo_epu64(lo[i + j], a.v[i], b.v[j]);
      hi[i + j + 1] = _mm512_madd52hi_epu64(hi[i + j + 1], a.v[i], b.v[j]);
    }
  }
  __m512i col[10];
  col[0] = lo[0];
  #pragma GCC unroll 10
  for (int k = 1; k < 9; ++k) {
    col[k] = _mm512_add_epi64(lo[k], _mm512_slli_epi64(hi[k], 1));
  }
  col[9] = _mm512_slli_epi64(hi[9], 1);
  Fe8 r;
  #pragma GCC unroll 10
  for (int k = 0; k < 5; ++k) {
    __m512i h = col[k + 5];
    __m512i h19 = _mm512_add_epi64(
        _mm512_add_epi64(_mm512_slli_epi64(h, 4), _mm512_slli_epi64(h, 1)),
        h);
    r.v[k] = _mm512_add_epi64(col[k], h19);
  }
  Carry8(r);
  return r;
}

inline Fe8 Broadcast(const uint64_t limbs[5]) {
  Fe8 r;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) r.v[i] = _mm512_set1_epi64((long long)limbs[i]);
  return r;
}

inline Fe8 Load8(const Limbs8 a) {
  Fe8 r;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) r.v[i] = _mm512_loadu_si512(a[i]);
  return r;
}

inline void Store8(const Fe8& a, Limbs8 out) {
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) _mm512_storeu_si512(out[i], a.v[i]);
}

struct Point8 {
  Fe8 x, y, z, t;
};

// Affine "Niels" form of a table entry: (y + x, y - x, 2d x y).
struct Niels8 {
  Fe8 ypx, ymx, xy2d;
};

// Mixed addition p + q, q affine (Z = 1): 7 Mul8. Inputs in Mul bounds.
inline Point8 AddMixed8(const Point8& p, const Niels8& q) {
  Fe8 a = Mul8(Sub8(p.y, p.x), q.ymx);
  Fe8 b = Mul8(Add8(p.y, p.x), q.ypx);
  Fe8 c = Mul8(p.t, q.xy2d);
  Fe8 d = Add8(p.z, p.z);
  Fe8 e = Sub8(b, a), f = Sub8(d, c), g = Add8(d, c), h = Add8(b, a);
  return Point8{Mul8(e, f), Mul8(g, h), Mul8(f, g), Mul8(e, h)};
}

// Full addition p + q: 9 Mul8.
inline Point8 AddFull8(const Point8& p, const Point8& q) {
  const Fe8 d2 = Broadcast(kD2);
  Fe8 a = Mul8(Sub8(p.y, p.x), Sub8(q.y, q.x));
  Fe8 b = Mul8(Add8(p.y, p.x), Add8(q.y, q.x));
  Fe8 c = Mul8(Mul8(p.t, d2), q.t);
  Fe8 zz = Mul8(p.z, q.z);
  Fe8 d = Add8(zz, zz);
  Fe8 e = Sub8(b, a), f = Sub8(d, c), g = Add8(d, c), h = Add8(b, a);
  return Point8{Mul8(e, f), Mul8(g, h), Mul8(f, g), Mul8(e, h)};
}

// A Niels entry as an extended point without the 7 Mul8 of AddMixed8 from
// the identity: (X:Y:Z:T) = (2x : 2y : 2 : 2xy), 2xy = (2dxy) * (1/d).
// The identity entry (1, 1, 0) gives (0 : 2 : 2 : 0).
inline Point8 FromNiels8(const Niels8& q) {
  Point8 r;
  r.x = Sub8(q.ypx, q.ymx);
  r.y = Add8(q.ypx, q.ymx);
#pragma GCC unroll 10
  for (int l = 0; l < 5; ++l) r.z.v[l] = _mm512_set1_epi64(l == 0 ? 2 : 0);
  r.t = Mul8(q.xy2d, Broadcast(kInvD));
  return r;
}

inline Point8 Permute8(const Point8& p, __m512i idx) {
  Point8 r;
  #pragma GCC unroll 10
  for (int i = 0; i < 5; ++i) {
    r.x.v[i] = _mm512_permutexvar_epi64(idx, p.x.v[i]);
    r.y.v[i] = _mm512_permutexvar_epi64(idx, p.y.v[i]);
    r.z.v[i] = _mm512_permutexvar_epi64(idx, p.z.v[i]);
    r.t.v[i] = _mm512_permutexvar_epi64(idx, p.t.v[i]);
  }
  return r;
}

// ---------------------------------------------------------------------------
// The table: for window j (0..7), entry m (1..8), coordinate c (ypx, ymx,
// xy2d), limb l: one 64-byte vector whose lane k is limb l of coordinate c
// of m * 16^(8j+k) * B, fully reduced (limbs < 2^51). Lane k of window j
// thus handles digit e[8j+k]. 8*8*3*5*64 bytes = 120 KiB.

struct alignas(64) Table {
  uint64_t v[8][8][3][5][8];
};

void StoreNiels(const Point& p, Table* table, int i, int m) {
  Fe zinv = Invert(p.z);
  Fe x = Mul(p.x, zinv), y = Mul(p.y, zinv);
  Fe coords[3] = {Add(y, x), Sub(y, x), Mul(Mul(x, y), FeFrom(kD2))};
  #pragma GCC unroll 10
  for (int c = 0; c < 3; ++c) {
    // Canonical limbs: bytes -> limbs.
    uint8_t b[32];
    ToBytes(coords[c], b);
    uint64_t w[4];
    #pragma GCC unroll 10
    for (int q = 0; q < 4; ++q) {
      w[q] = 0;
      #pragma GCC unroll 10
      for (int k = 0; k < 8; ++k) w[q] |= (uint64_t)b[8 * q + k] << (8 * k);
    }
    uint64_t limbs[5] = {w[0] & kMask51, ((w[0] >> 51) | (w[1] << 13)) & kMask51,
                         ((w[1] >> 38) | (w[2] << 26)) & kMask51,
                         ((w[2] >> 25) | (w[3] << 39)) & kMask51,
                         (w[3] >> 12) & kMask51};
    #pragma GCC unroll 10
    for (int l = 0; l < 5; ++l) {
      table->v[i / 8][m - 1][c][l][i % 8] = limbs[l];
    }
  }
}

const Table* BuildTable() {
  Table* table = new Table;
  Fe one = {{1, 0, 0, 0, 0}};
  Fe bx = FeFrom(kBaseX), by = FeFrom(kBaseY);
  Point base{bx, by, one, Mul(bx, by)};  // 16^i B
  for (int i = 0; i < 64; ++i) {
    Point acc = base;  // m * 16^i B
    #pragma GCC unroll 10
    for (int m = 1; m <= 8; ++m) {
      StoreNiels(acc, table, i, m);
      if (m < 8) acc = AddPoints(acc, base);
    }
    base = AddPoints(acc, acc);  // 16 * 16^i B
  }
  return table;
}

const Table& GetTable() {
  static const Table* table = BuildTable();
  return *table;
}

// Constant-time selection of e * T[8j+k] per lane: every entry of the window
// is loaded and blended by mask; |e| = 0 leaves the identity (1, 1, 0); a
// negative e swaps y+x / y-x and negates 2dxy.
inline Niels8 Select(const Table& table, int j, __m512i e) {
  Niels8 r;
  #pragma GCC unroll 10
  for (int l = 0; l < 5; ++l) {
    __m512i id = _mm512_set1_epi64(l == 0 ? 1 : 0);
    r.ypx.v[l] = id;
    r.ymx.v[l] = id;
    r.xy2d.v[l] = _mm512_setzero_si512();
  }
  __m512i abs = _mm512_abs_epi64(e);
  __mmask8 neg = _mm512_cmplt_epi64_mask(e, _mm512_setzero_si512());
  #pragma GCC unroll 10
  for (int m = 1; m <= 8; ++m) {
    __mmask8 hit = _mm512_cmpeq_epi64_mask(abs, _mm512_set1_epi64(m));
    const uint64_t(*entry)[5][8] = table.v[j][m - 1];
    #pragma GCC unroll 10
    for (int l = 0; l < 5; ++l) {  // load all, keep the hit lanes
      r.ypx.v[l] = _mm512_mask_blend_epi64(hit, r.ypx.v[l],
                                           _mm512_load_si512(entry[0][l]));
      r.ymx.v[l] = _mm512_mask_blend_epi64(hit, r.ymx.v[l],
                                           _mm512_load_si512(entry[1][l]));
      r.xy2d.v[l] = _mm512_mask_blend_epi64(hit, r.xy2d.v[l],
                                            _mm512_load_si512(entry[2][l]));
    }
  }
  #pragma GCC unroll 10
  for (int l = 0; l < 5; ++l) {
    __m512i ypx = r.ypx.v[l], ymx = r.ymx.v[l];
    r.ypx.v[l] = _mm512_mask_blend_epi64(neg, ypx, ymx);
    r.ymx.v[l] = _mm512_mask_blend_epi64(neg, ymx, ypx);
    __m512i negated = _mm512_sub_epi64(TwoP(l), r.xy2d.v[l]);  // < 2^52
    r.xy2d.v[l] = _mm512_mask_blend_epi64(neg, r.xy2d.v[l], negated);
  }
  return r;
}

}  // namespace

void Fe8Mul(const Limbs8 a, const Limbs8 b, Limbs8 out) {
  Store8(Mul8(Load8(a), Load8(b)), out);
}
void Fe8Add(const Limbs8 a, const Limbs8 b, Limbs8 out) {
  Store8(Add8(Load8(a), Load8(b)), out);
}
void Fe8Sub(const Limbs8 a, const Limbs8 b, Limbs8 out) {
  Store8(Sub8(Load8(a), Load8(b)), out);
}
void FeMul(const Limbs a, const Limbs b, Limbs out) {
  Fe r = Mul(FeFrom(a), FeFrom(b));
  std::memcpy(out, r.v, sizeof(r.v));
}
void FeInvert(const Limbs a, Limbs out) {
  Fe r = Invert(FeFrom(a));
  std::memcpy(out, r.v, sizeof(r.v));
}
void FeToBytes(const Limbs a, uint8_t out[32]) { ToBytes(FeFrom(a), out); }

void PrepareTable() { (void)GetTable(); }

void ScalarMultBaseDigits(const int8_t e[64], uint8_t out[32]) {
  const Table& table = GetTable();
  Point8 p;
#pragma GCC unroll 10
  for (int j = 0; j < 8; ++j) {
    __m512i digits = _mm512_cvtepi8_epi64(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(e + 8 * j)));
    Niels8 q = Select(table, j, digits);
    p = j == 0 ? FromNiels8(q) : AddMixed8(p, q);
  }
  // Sum the lanes: k + (k+4), then k + (k+2), then k + (k+1); lane 0 ends
  // with the total.
  p = AddFull8(p, Permute8(p, _mm512_set_epi64(3, 2, 1, 0, 7, 6, 5, 4)));
  p = AddFull8(p, Permute8(p, _mm512_set_epi64(5, 4, 7, 6, 1, 0, 3, 2)));
  p = AddFull8(p, Permute8(p, _mm512_set_epi64(6, 7, 4, 5, 2, 3, 0, 1)));
  alignas(64) uint64_t lanes[3][5][8];
  Store8(p.x, lanes[0]);
  Store8(p.y, lanes[1]);
  Store8(p.z, lanes[2]);
  Fe x, y, z;
  #pragma GCC unroll 10
  for (int l = 0; l < 5; ++l) {
    x.v[l] = lanes[0][l][0];
    y.v[l] = lanes[1][l][0];
    z.v[l] = lanes[2][l][0];
  }
  Fe zinv = Invert(z);
  uint8_t xb[32];
  ToBytes(Mul(x, zinv), xb);
  ToBytes(Mul(y, zinv), out);
  out[31] |= (uint8_t)((xb[0] & 1) << 7);
}

void ScalarMultBase(const uint8_t s[32], uint8_t out[32]) {
  // Signed radix 16: e[i] in [-8, 8), carry into the next digit; the top
  // digit is <= 7 + 1 since s[31] <= 127.
  int8_t e[64];
  for (int i = 0; i < 32; ++i) {
    e[2 * i] = (int8_t)(s[i] & 15);
    e[2 * i + 1] = (int8_t)(s[i] >> 4);
  }
  int8_t carry = 0;
  for (int i = 0; i < 63; ++i) {
    e[i] = (int8_t)(e[i] + carry);
    carry = (int8_t)((e[i] + 8) >> 4);
    e[i] = (int8_t)(e[i] - (carry << 4));
  }
  e[63] = (int8_t)(e[63] + carry);
  ScalarMultBaseDigits(e, out);
  std::memset(e, 0, sizeof(e));
}

}  // namespace salvo::dkim::ifma
