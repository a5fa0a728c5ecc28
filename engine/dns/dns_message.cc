// DNS response parser (see dns_message.h). Pure; no allocation beyond the
// strings and vectors of `out`, which keep their capacity when reused.
#include "engine/dns/dns_message.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace salvo::dns {
namespace {

constexpr size_t kHeaderSize = 12;
constexpr size_t kMaxName = 255;
constexpr uint16_t kClassIn = 1;

class Reader {
 public:
  explicit Reader(absl::Span<const uint8_t> p) : p_(p) {}

  size_t pos() const { return pos_; }
  size_t size() const { return p_.size(); }
  bool Has(size_t n) const { return pos_ <= p_.size() && p_.size() - pos_ >= n; }

  bool U8(uint8_t* v) {
    if (!Has(1)) return false;
    *v = p_[pos_++];
    return true;
  }
  bool U16(uint16_t* v) {
    if (!Has(2)) return false;
    *v = static_cast<uint16_t>(p_[pos_] << 8 | p_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool U32(uint32_t* v) {
    if (!Has(4)) return false;
    *v = static_cast<uint32_t>(p_[pos_]) << 24 |
         static_cast<uint32_t>(p_[pos_ + 1]) << 16 |
         static_cast<uint32_t>(p_[pos_ + 2]) << 8 | p_[pos_ + 3];
    pos_ += 4;
    return true;
  }
  bool Skip(size_t n) {
    if (!Has(n)) return false;
    pos_ += n;
    return true;
  }

  // Reads a possibly compressed name at the cursor into `out` (lower case,
  // dot separated, no trailing dot) and moves the cursor past its in-place
  // part. Each pointer must point before the previous jump target (or before
  // itself for the first), so the targets strictly decrease: no loops.
  bool Name(std::string* out) {
    out->clear();
    size_t cur = pos_;
    size_t limit = pos_;
    size_t wire_len = 1;  // the root label
    bool jumped = false;
    for (;;) {
      if (cur >= p_.size()) return false;
      const uint8_t len = p_[cur];
      if ((len & 0xC0) == 0xC0) {
        if (cur + 1 >= p_.size()) return false;
        const size_t target = static_cast<size_t>(len & 0x3F) << 8 | p_[cur + 1];
        if (target >= limit) return false;  // not backwards: could loop
        limit = target;
        if (!jumped) pos_ = cur + 2;
        jumped = true;
        cur = target;
        continue;
      }
      if ((len & 0xC0) != 0) return false;  // 0x40 / 0x80: not in use
      if (len == 0) {
        if (!jumped) pos_ = cur + 1;
        return true;
      }
      if (cur + 1 + len > p_.size()) return false;
      wire_len += 1 + len;
      if (wire_len > kMaxName) return false;
      if (!out->empty()) out->push_back('.');
      for (size_t i = 0; i < len; ++i) {
        const char c = static_cast<char>(p_[cur + 1 + i]);
        if (c == '.') return false;  // would make the text form ambiguous
        out->push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
      }
      cur += 1 + len;
    }
  }

 private:
  absl::Span<const uint8_t> p_;
  size_t pos_ = 0;
};

absl::Status Malformed(const char* what) {
  return absl::InvalidArgumentError(std::string("malformed DNS message: ") +
                                    what);
}

// Reads `count` records into `out`, keeping the types we know.
absl::Status ReadSection(Reader& r, uint16_t count,
                         std::vector<ResourceRecord>* out) {
  ResourceRecord rr;
  for (uint16_t i = 0; i < count; ++i) {
    uint16_t type, klass, rdlength;
    uint32_t ttl;
    if (!r.Name(&rr.name)) return Malformed("bad owner name");
    if (!r.U16(&type) || !r.U16(&klass) || !r.U32(&ttl) || !r.U16(&rdlength)) {
      return Malformed("truncated record");
    }
    if (!r.Has(rdlength)) return Malformed("rdata past the end");
    const size_t rdata_end = r.pos() + rdlength;
    // RFC 2181 8: a TTL with the top bit set is treated as zero.
    rr.ttl = (ttl & 0x80000000u) ? 0 : ttl;
    bool keep = klass == kClassIn;
    switch (type) {
      case static_cast<uint16_t>(RrType::kA):
      case static_cast<uint16_t>(RrType::kAaaa): {
        const size_t want = type == 1 ? 4 : 16;
        if (rdlength != want) return Malformed("address of the wrong size");
        rr.type = static_cast<RrType>(type);
        rr.addr.fill(0);
        for (size_t b = 0; b < want; ++b) {
          uint8_t v;
          if (!r.U8(&v)) return Malformed("truncated address");
          rr.addr[b] = v;
        }
        break;
      }
      case static_cast<uint16_t>(RrType::kMx):
        rr.type = RrType::kMx;
        if (!r.U16(&rr.preference) || r.pos() > rdata_end) {
          return Malformed("truncated MX");
        }
        if (!r.Name(&rr.target) || r.pos() > rdata_end) {
          return Malformed("bad MX exchange");
        }
        break;
      case static_cast<uint16_t>(RrType::kCname):
        rr.type = RrType::kCname;
        if (!r.Name(&rr.target) || r.pos() > rdata_end) {
          return Malformed("bad CNAME target");
        }
        break;
      default:
        keep = false;
        break;
    }
    // Trailing bytes inside RDATA are skipped; the length is authoritative.
    if (r.pos() < rdata_end && !r.Skip(rdata_end - r.pos())) {
      return Malformed("rdata past the end");
    }
    if (keep) {
      out->push_back(rr);
      rr.target.clear();
      rr.preference = 0;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseDnsMessage(absl::Span<const uint8_t> packet,
                             DnsMessage* out) {
  out->answers.clear();
  out->authority.clear();
  out->additional.clear();
  out->question_name.clear();
  out->question_type = 0;
  if (packet.size() < kHeaderSize) return Malformed("short header");
  Reader r(packet);
  uint16_t flags, qd, an, ns, ar;
  r.U16(&out->id);
  r.U16(&flags);
  r.U16(&qd);
  r.U16(&an);
  r.U16(&ns);
  r.U16(&ar);
  out->is_response = (flags & 0x8000) != 0;
  out->truncated = (flags & 0x0200) != 0;
  out->rcode = static_cast<uint8_t>(flags & 0x000F);
  std::string name;
  for (uint16_t i = 0; i < qd; ++i) {
    uint16_t qtype, qclass;
    if (!r.Name(&name)) return Malformed("bad question name");
    if (!r.U16(&qtype) || !r.U16(&qclass)) {
      return Malformed("truncated question");
    }
    if (i == 0) {
      out->question_name = name;
      out->question_type = qtype;
    }
  }
  if (absl::Status s = ReadSection(r, an, &out->answers); !s.ok()) return s;
  if (absl::Status s = ReadSection(r, ns, &out->authority); !s.ok()) return s;
  return ReadSection(r, ar, &out->additional);
}

bool SameName(absl::string_view a, absl::string_view b) {
  return absl::EqualsIgnoreCase(a, b);
}

}  // namespace salvo::dns
