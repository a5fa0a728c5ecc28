// A pure DNS response parser (RFC 1035): header, question, and the answer,
// authority and additional sections with name compression. Keeps A, AAAA,
// CNAME and MX records with their TTLs; other types are skipped. No I/O.
// In: the bytes of one DNS message. Out: a DnsMessage. Any thread; a parser
// holds no state, and `out` may be reused across calls to keep its buffers.
#ifndef SALVO_ENGINE_DNS_DNS_MESSAGE_H_
#define SALVO_ENGINE_DNS_DNS_MESSAGE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace salvo::dns {

enum class RrType : uint16_t {
  kA = 1,
  kCname = 5,
  kMx = 15,
  kAaaa = 28,
};

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

struct ResourceRecord {
  // Owner name, lower case, without the trailing dot ("" is the root).
  std::string name;
  RrType type = RrType::kA;
  uint32_t ttl = 0;
  // MX only.
  uint16_t preference = 0;
  // MX exchange or CNAME target (same form as `name`).
  std::string target;
  // A: the first 4 bytes; AAAA: all 16 (network order).
  std::array<uint8_t, 16> addr{};
};

struct DnsMessage {
  uint16_t id = 0;
  bool is_response = false;
  bool truncated = false;
  uint8_t rcode = 0;  // see Rcode; values above 5 are kept as they are
  std::string question_name;  // empty when the message has no question
  uint16_t question_type = 0;
  std::vector<ResourceRecord> answers;
  std::vector<ResourceRecord> authority;
  std::vector<ResourceRecord> additional;
};

// Parses `packet` into `out` (cleared first). InvalidArgument on anything
// malformed: truncated sections, lengths past the end, compression pointers
// that do not point backwards (which rules out loops), labels over 63 bytes,
// names over 255 bytes, A/AAAA of the wrong size, MX/CNAME names that run
// past their RDATA. Records of classes other than IN are skipped.
[[nodiscard]] absl::Status ParseDnsMessage(absl::Span<const uint8_t> packet,
                                           DnsMessage* out);

// Case-insensitive comparison of two names in the form used above.
bool SameName(absl::string_view a, absl::string_view b);

}  // namespace salvo::dns

#endif  // SALVO_ENGINE_DNS_DNS_MESSAGE_H_
