// DKIM signing micro-benchmarks: DkimSigner::SignAt() of a ~5 KB message the
// real renderer writes (relaxed/relaxed, 7 signed headers, streaming body
// hash, b= folding) for RSA-2048 and Ed25519, next to the raw library sign
// rate on a 32-byte digest (RSA_sign; EVP_DigestSign and ED25519_sign of
// BoringSSL, crypto_sign_ed25519_detached of libsodium, and Ed25519Sign of
// ed25519_fast, which DkimSigner uses, for Ed25519) in the same binary, and the relaxed body hash alone. Single-threaded: items/s = signatures per
// second per core. Reports heap allocations per signature.
//   bazel run -c opt //bench:dkim_bench
#include <openssl/bn.h>
#include <openssl/curve25519.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <sodium.h>

#include <atomic>
#include <cstring>
#include <cstdlib>
#include <new>
#include <string>

#include "benchmark/benchmark.h"
#include "bench/alloc_counter.h"
#include "engine/core/clock.h"
#include "engine/dkim/canon.h"
#include "engine/dkim/dkim_signer.h"
#include "engine/dkim/ed25519_fast.h"
#include "engine/dkim/sample_message.h"

using salvo::bench::g_allocations;

namespace salvo::dkim {
namespace {

EVP_PKEY* RsaKey() {
  static EVP_PKEY* pkey = [] {
    RSA* rsa = RSA_new();
    BIGNUM* e = BN_new();
    BN_set_word(e, RSA_F4);
    if (!RSA_generate_key_ex(rsa, 2048, e, nullptr)) std::abort();
    BN_free(e);
    EVP_PKEY* p = EVP_PKEY_new();
    EVP_PKEY_assign_RSA(p, rsa);
    return p;
  }();
  return pkey;
}

EVP_PKEY* EdKey() {
  static EVP_PKEY* pkey = [] {
    uint8_t seed[32];
    for (int i = 0; i < 32; ++i) seed[i] = static_cast<uint8_t>(i * 7 + 1);
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, 32);
  }();
  return pkey;
}

std::string Pem(EVP_PKEY* pkey) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  const uint8_t* data;
  size_t len;
  BIO_mem_contents(bio, &data, &len);
  std::string pem(reinterpret_cast<const char*>(data), len);
  BIO_free(bio);
  return pem;
}

const std::string& Message() {
  static const std::string* m = [] {
    auto r = RenderSampleMessage(5600);
    if (!r.ok()) std::abort();
    return new std::string(std::move(*r));
  }();
  return *m;
}

// The e2e bench's message: plain lines, the canonical-run path throughout.
const std::string& CampaignMessage() {
  static const std::string* m = [] {
    auto r = RenderCampaignMessage(5000);
    if (!r.ok()) std::abort();
    return new std::string(std::move(*r));
  }();
  return *m;
}

void SignMessage(benchmark::State& state, Algorithm algorithm,
                 const std::string& message = Message()) {
  core::ManualClock clock;
  SignerOptions o;
  o.domain = "shop.example";
  o.selector = "s1";
  o.algorithm = algorithm;
  o.private_key_pem =
      Pem(algorithm == Algorithm::kRsaSha256 ? RsaKey() : EdKey());
  auto signer = DkimSigner::Create(o, clock);
  if (!signer.ok()) {
    state.SkipWithError(std::string(signer.status().message()).c_str());
    return;
  }
  std::string header;
  if (!(*signer)->Sign(message, &header).ok()) std::abort();  // warm buffer
  long allocs = g_allocations.load();
  for (auto _ : state) {
    header.clear();
    if (!(*signer)->SignAt(message, clock.Now(), &header).ok()) std::abort();
    benchmark::DoNotOptimize(header.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * message.size());
  state.counters["allocs/sig"] = benchmark::Counter(
      static_cast<double>(g_allocations.load() - allocs) / state.iterations());
  state.counters["msg_bytes"] = static_cast<double>(message.size());
}

void BM_DkimSignRsa2048(benchmark::State& state) {
  SignMessage(state, Algorithm::kRsaSha256);
}
BENCHMARK(BM_DkimSignRsa2048);

void BM_DkimSignEd25519(benchmark::State& state) {
  SignMessage(state, Algorithm::kEd25519Sha256);
}
BENCHMARK(BM_DkimSignEd25519);

void BM_DkimSignEd25519Campaign(benchmark::State& state) {
  SignMessage(state, Algorithm::kEd25519Sha256, CampaignMessage());
}
BENCHMARK(BM_DkimSignEd25519Campaign);

// Raw library rates over a 32-byte SHA-256 digest.
void BM_RawRsaSign2048(benchmark::State& state) {
  uint8_t digest[32] = {1, 2, 3};
  uint8_t sig[512];
  RSA* rsa = EVP_PKEY_get0_RSA(RsaKey());
  for (auto _ : state) {
    unsigned len = 0;
    if (!RSA_sign(NID_sha256, digest, sizeof(digest), sig, &len, rsa)) {
      std::abort();
    }
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawRsaSign2048);

void BM_RawEd25519EvpDigestSign(benchmark::State& state) {
  uint8_t digest[32] = {1, 2, 3};
  uint8_t sig[64];
  EVP_PKEY* pkey = EdKey();
  for (auto _ : state) {
    EVP_MD_CTX ctx;
    EVP_MD_CTX_init(&ctx);
    size_t len = sizeof(sig);
    if (!EVP_DigestSignInit(&ctx, nullptr, nullptr, nullptr, pkey) ||
        !EVP_DigestSign(&ctx, sig, &len, digest, sizeof(digest))) {
      std::abort();
    }
    EVP_MD_CTX_cleanup(&ctx);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawEd25519EvpDigestSign);

// BoringSSL without an EVP context per signature.
void BM_RawEd25519Sign(benchmark::State& state) {
  uint8_t digest[32] = {1, 2, 3};
  uint8_t seed[32] = {9};
  uint8_t pub[32], priv[64], sig[64];
  ED25519_keypair_from_seed(pub, priv, seed);
  for (auto _ : state) {
    ED25519_sign(sig, digest, sizeof(digest), priv);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawEd25519Sign);

// What DkimSigner calls: libsodium, same 64-byte key, same signature.
void BM_RawEd25519SodiumSign(benchmark::State& state) {
  if (sodium_init() < 0) {
    state.SkipWithError("sodium_init failed");
    return;
  }
  uint8_t digest[32] = {1, 2, 3};
  uint8_t seed[32] = {9};
  uint8_t pub[32], priv[64], sig[64];
  crypto_sign_ed25519_seed_keypair(pub, priv, seed);
  for (auto _ : state) {
    crypto_sign_ed25519_detached(sig, nullptr, digest, sizeof(digest), priv);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawEd25519SodiumSign);

// Ed25519Sign (engine/dkim/ed25519_fast): the AVX-512 IFMA R = r*B when the
// CPU has it, same key and digest, same signature bytes as above.
void BM_RawEd25519FastSign(benchmark::State& state) {
  if (!Ed25519FastAvailable()) {
    state.SkipWithError("no AVX-512 IFMA: Ed25519Sign is the libsodium path");
    return;
  }
  uint8_t digest[32] = {1, 2, 3};
  uint8_t seed[32] = {9};
  uint8_t pub[32], priv[64], sig[64], want[64];
  crypto_sign_ed25519_seed_keypair(pub, priv, seed);
  Ed25519Key key = Ed25519Key::FromSeedAndPublic(priv);
  crypto_sign_ed25519_detached(want, nullptr, digest, sizeof(digest), priv);
  Ed25519Sign(key, digest, sizeof(digest), sig);
  if (std::memcmp(sig, want, sizeof(sig)) != 0) std::abort();
  for (auto _ : state) {
    Ed25519Sign(key, digest, sizeof(digest), sig);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawEd25519FastSign);

// The signer's share above the sign: relaxed canonicalization of the sample
// body into a reused buffer, then SHA-256 (the signer streams it through a
// 4 KB block buffer instead; the header hash is over ~0.5 KB more).
void BM_RelaxedBodyHash(benchmark::State& state) {
  struct Sink {
    std::string buf;
    void Append(absl::string_view s) { buf.append(s.data(), s.size()); }
  };
  const std::string& message =
      state.range(0) == 0 ? Message() : CampaignMessage();
  size_t body = SplitHeaders(message, [](const HeaderField&) {});
  absl::string_view body_view = absl::string_view(message).substr(body);
  Sink sink;
  uint8_t digest[32];
  for (auto _ : state) {
    sink.buf.clear();
    CanonicalizeBodyRelaxed(body_view, sink);
    SHA256(reinterpret_cast<const uint8_t*>(sink.buf.data()), sink.buf.size(),
           digest);
    benchmark::DoNotOptimize(digest);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * body_view.size());
}
BENCHMARK(BM_RelaxedBodyHash)->ArgName("campaign")->Arg(0)->Arg(1);

// What the signer does now: canonical runs of the input hashed where they
// lie (CanonicalizeBodyRelaxedRuns, spans of 256 bytes or more straight to
// SHA256_Update, short ones through a block buffer).
void BM_RelaxedBodyRunsHash(benchmark::State& state) {
  struct Sink {
    SHA256_CTX ctx;
    char buf[4096];
    size_t used = 0;
    void Flush() {
      if (used > 0) SHA256_Update(&ctx, buf, used);
      used = 0;
    }
    void Append(absl::string_view s) {
      if (s.size() >= 256) {
        Flush();
        SHA256_Update(&ctx, s.data(), s.size());
        return;
      }
      if (used + s.size() > sizeof(buf)) Flush();
      std::memcpy(buf + used, s.data(), s.size());
      used += s.size();
    }
  };
  const std::string& message =
      state.range(0) == 0 ? Message() : CampaignMessage();
  size_t body = SplitHeaders(message, [](const HeaderField&) {});
  absl::string_view body_view = absl::string_view(message).substr(body);
  uint8_t digest[32];
  for (auto _ : state) {
    Sink sink;
    SHA256_Init(&sink.ctx);
    CanonicalizeBodyRelaxedRuns(body_view, sink);
    sink.Flush();
    SHA256_Final(digest, &sink.ctx);
    benchmark::DoNotOptimize(digest);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * body_view.size());
}
BENCHMARK(BM_RelaxedBodyRunsHash)->ArgName("campaign")->Arg(0)->Arg(1);

// SHA-256 of the same bytes in one call: the floor for the body hash.
void BM_RawSha256Body(benchmark::State& state) {
  const std::string& message =
      state.range(0) == 0 ? Message() : CampaignMessage();
  uint8_t digest[32];
  for (auto _ : state) {
    SHA256(reinterpret_cast<const uint8_t*>(message.data()), message.size(),
           digest);
    benchmark::DoNotOptimize(digest);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * message.size());
}
BENCHMARK(BM_RawSha256Body)->ArgName("campaign")->Arg(0)->Arg(1);

}  // namespace
}  // namespace salvo::dkim

BENCHMARK_MAIN();
