// Replays the libFuzzer target (dns_message_fuzz.cc) under gcc: hand-built
// seeds, then seeded random mutations of them (bytes flipped, truncated,
// pointer bytes planted). Deterministic; fails only by crashing or aborting.
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace salvo::dns {
namespace {

std::vector<std::vector<uint8_t>> Seeds() {
  // MX response with compression and an additional A record.
  std::vector<uint8_t> mx = {0xAB, 0xCD, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1,
                             7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o',
                             'm', 0, 0, 15, 0, 1,
                             0xC0, 12, 0, 15, 0, 1, 0, 0, 1, 44, 0, 8, 0, 10,
                             3, 'm', 'x', '1', 0xC0, 12,
                             0xC0, 43, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 1, 2, 3,
                             4};
  // CNAME + AAAA.
  std::vector<uint8_t> aaaa = {0, 1, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
                               1, 'a', 4, 't', 'e', 's', 't', 0, 0, 28, 0, 1,
                               0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4,
                               1, 'b', 0xC0, 14,
                               0xC0, 36, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16};
  for (int i = 0; i < 16; ++i) aaaa.push_back(static_cast<uint8_t>(i));
  return {mx, aaaa};
}

TEST(DnsMessageFuzzTest, SeedsAndMutationsDoNotCrash) {
  std::mt19937 rng(12345);
  for (const std::vector<uint8_t>& seed : Seeds()) {
    LLVMFuzzerTestOneInput(seed.data(), seed.size());
    for (int round = 0; round < 20000; ++round) {
      std::vector<uint8_t> m = seed;
      const int edits = 1 + rng() % 4;
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng() % m.size();
        switch (rng() % 4) {
          case 0:
            m[at] = static_cast<uint8_t>(rng());
            break;
          case 1:
            m[at] = static_cast<uint8_t>(0xC0 | (rng() & 1));
            if (at + 1 < m.size()) m[at + 1] = static_cast<uint8_t>(rng() % m.size());
            break;
          case 2:
            m.resize(at + 1);
            break;
          case 3:
            m.insert(m.begin() + at, static_cast<uint8_t>(rng()));
            break;
        }
      }
      LLVMFuzzerTestOneInput(m.data(), m.size());
    }
  }
}

}  // namespace
}  // namespace salvo::dns
