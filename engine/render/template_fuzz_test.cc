// Runs the libFuzzer target over seeded random inputs built from template
// fragments, so the fuzz invariants are checked in every `bazel test`.
#include <cstdint>
#include <random>
#include <string>

#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

TEST(TemplateFuzzTest, SeededRandomInputs) {
  const char* const kPieces[] = {
      "{{", "}}", "{{{", "}}}", "{{ a }}", "{{b}}", "{{{c}}}", "{{email}}",
      " ", "\t", "\r", "\n", "\r\n", ".", "From ", "=", "<", "&", "\"",
      "\xc3\xa9", "\xe2\x82\xac", "\xff", std::string(1, '\0').c_str(), "raw",
      "Name <a@b>", "x", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
  std::mt19937 rng(1234);
  for (int round = 0; round < 3000; ++round) {
    std::string input;
    const int n = rng() % 60;
    for (int i = 0; i < n; ++i) {
      const size_t k = rng() % (sizeof(kPieces) / sizeof(kPieces[0]) + 1);
      if (k == sizeof(kPieces) / sizeof(kPieces[0])) {
        input.push_back('\0');
      } else {
        input += kPieces[k];
      }
    }
    if (rng() % 10 == 0) input += std::string(3000, 'L');
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                           input.size());
  }
}

}  // namespace
