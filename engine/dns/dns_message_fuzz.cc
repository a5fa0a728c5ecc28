// libFuzzer target for the DNS response parser. Any input must parse or be
// rejected without a crash, a hang or a read out of bounds; what parses must
// hold only names of at most 253 characters.
//
// Build and run outside Bazel with clang:
//   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//     engine/dns/dns_message_fuzz.cc engine/dns/dns_message.cc \
//     -labsl_status -labsl_strings -labsl_strings_internal -labsl_cord \
//     -labsl_cord_internal -labsl_cordz_info -labsl_cordz_handle \
//     -labsl_cordz_functions -labsl_raw_logging_internal -labsl_throw_delegate \
//     -labsl_int128 -labsl_str_format_internal -labsl_strerror \
//     -labsl_synchronization -labsl_base -o /tmp/dns_fuzz && /tmp/dns_fuzz
// dns_message_fuzz_test replays it over seeds and seeded mutations with gcc.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/dns/dns_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  salvo::dns::DnsMessage msg;
  if (!salvo::dns::ParseDnsMessage(absl::MakeConstSpan(data, size), &msg)
           .ok()) {
    return 0;
  }
  for (const auto* section : {&msg.answers, &msg.authority, &msg.additional}) {
    for (const salvo::dns::ResourceRecord& rr : *section) {
      if (rr.name.size() > 253 || rr.target.size() > 253) std::abort();
    }
  }
  return 0;
}
