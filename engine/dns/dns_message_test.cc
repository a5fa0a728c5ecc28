// Tests for the DNS response parser with hand-built packets, including
// compression pointers, truncation and hostile packets.
#include "engine/dns/dns_message.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace salvo::dns {
namespace {

// Appends wire-format pieces; offsets are what the packet says they are.
struct Packet {
  std::vector<uint8_t> b;
  size_t size() const { return b.size(); }
  Packet& U8(uint8_t v) {
    b.push_back(v);
    return *this;
  }
  Packet& U16(uint16_t v) { return U8(v >> 8).U8(v & 0xFF); }
  Packet& U32(uint32_t v) { return U16(v >> 16).U16(v & 0xFFFF); }
  Packet& Label(const std::string& l) {
    U8(static_cast<uint8_t>(l.size()));
    for (char c : l) U8(static_cast<uint8_t>(c));
    return *this;
  }
  Packet& Ptr(uint16_t offset) { return U16(0xC000 | offset); }
  Packet& Header(uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
                 uint16_t ar) {
    return U16(0xABCD).U16(flags).U16(qd).U16(an).U16(ns).U16(ar);
  }
  // Patches a 16-bit value (an RDLENGTH) at `at`.
  void Set16(size_t at, uint16_t v) {
    b[at] = v >> 8;
    b[at + 1] = v & 0xFF;
  }
  absl::Span<const uint8_t> span() const { return b; }
};

// example.com MX: two MX records whose exchanges compress against the
// question, and an additional A record whose owner points into RDATA.
Packet MxPacket() {
  Packet p;
  p.Header(0x8180, 1, 2, 0, 1);
  EXPECT_EQ(p.size(), 12u);
  p.Label("Example").Label("COM").U8(0).U16(15).U16(1);  // name at 12
  // Answer 1 at 29.
  p.Ptr(12).U16(15).U16(1).U32(300).U16(8);
  p.U16(10);
  EXPECT_EQ(p.size(), 43u);
  p.Label("mx1").Ptr(12);  // "mx1.example.com" at 43
  // Answer 2.
  p.Ptr(12).U16(15).U16(1).U32(200).U16(8).U16(20).Label("mx2").Ptr(12);
  // Additional: A for mx1.example.com, owner compressed into RDATA above.
  p.Ptr(43).U16(1).U16(1).U32(100).U16(4).U8(192).U8(0).U8(2).U8(1);
  return p;
}

TEST(DnsMessageTest, ParsesMxWithCompression) {
  const Packet p = MxPacket();
  DnsMessage m;
  ASSERT_TRUE(ParseDnsMessage(p.span(), &m).ok());
  EXPECT_EQ(m.id, 0xABCD);
  EXPECT_TRUE(m.is_response);
  EXPECT_FALSE(m.truncated);
  EXPECT_EQ(m.rcode, 0);
  EXPECT_EQ(m.question_name, "example.com");
  EXPECT_EQ(m.question_type, 15);
  ASSERT_EQ(m.answers.size(), 2u);
  EXPECT_EQ(m.answers[0].name, "example.com");
  EXPECT_EQ(m.answers[0].type, RrType::kMx);
  EXPECT_EQ(m.answers[0].ttl, 300u);
  EXPECT_EQ(m.answers[0].preference, 10);
  EXPECT_EQ(m.answers[0].target, "mx1.example.com");
  EXPECT_EQ(m.answers[1].preference, 20);
  EXPECT_EQ(m.answers[1].target, "mx2.example.com");
  EXPECT_EQ(m.answers[1].ttl, 200u);
  ASSERT_EQ(m.additional.size(), 1u);
  EXPECT_EQ(m.additional[0].name, "mx1.example.com");
  EXPECT_EQ(m.additional[0].type, RrType::kA);
  EXPECT_EQ(m.additional[0].addr[0], 192);
  EXPECT_EQ(m.additional[0].addr[3], 1);
  EXPECT_TRUE(m.authority.empty());
}

TEST(DnsMessageTest, EveryTruncationIsRejected) {
  const Packet p = MxPacket();
  DnsMessage m;
  for (size_t n = 0; n < p.size(); ++n) {
    EXPECT_FALSE(
        ParseDnsMessage(absl::MakeConstSpan(p.b.data(), n), &m).ok())
        << "prefix of " << n << " bytes";
  }
}

TEST(DnsMessageTest, CnameChainAaaaAndSkippedRecords) {
  Packet p;
  p.Header(0x8580, 1, 4, 0, 0);
  p.Label("a").Label("test").U8(0).U16(28).U16(1);  // name at 12
  // CNAME a.test -> b.test (target compresses "test" at 14).
  p.Ptr(12).U16(5).U16(1).U32(60).U16(4).Label("b").Ptr(14);
  const size_t b_at = p.size() - 4;
  // TXT record: an unknown type, skipped.
  p.Ptr(12).U16(16).U16(1).U32(60).U16(3).Label("hi");
  // AAAA in class CH: skipped.
  p.Ptr(b_at).U16(28).U16(3).U32(60).U16(16);
  for (int i = 0; i < 16; ++i) p.U8(0);
  // AAAA b.test ::1 with the TTL's top bit set (RFC 2181: zero).
  p.Ptr(b_at).U16(28).U16(1).U32(0x80000001u).U16(16);
  for (int i = 0; i < 15; ++i) p.U8(0);
  p.U8(1);
  DnsMessage m;
  ASSERT_TRUE(ParseDnsMessage(p.span(), &m).ok());
  EXPECT_TRUE(m.is_response);
  ASSERT_EQ(m.answers.size(), 2u);
  EXPECT_EQ(m.answers[0].type, RrType::kCname);
  EXPECT_EQ(m.answers[0].target, "b.test");
  EXPECT_EQ(m.answers[1].type, RrType::kAaaa);
  EXPECT_EQ(m.answers[1].name, "b.test");
  EXPECT_EQ(m.answers[1].ttl, 0u);
  EXPECT_EQ(m.answers[1].addr[15], 1);
}

TEST(DnsMessageTest, NxDomainAndTruncatedFlag) {
  Packet p;
  p.Header(0x8383, 1, 0, 0, 0);  // TC set, rcode 3
  p.Label("nx").Label("test").U8(0).U16(15).U16(1);
  DnsMessage m;
  ASSERT_TRUE(ParseDnsMessage(p.span(), &m).ok());
  EXPECT_EQ(m.rcode, static_cast<uint8_t>(Rcode::kNxDomain));
  EXPECT_TRUE(m.truncated);
  EXPECT_TRUE(m.answers.empty());
}

TEST(DnsMessageTest, NullMxHasEmptyExchange) {
  Packet p;
  p.Header(0x8180, 1, 1, 0, 0);
  p.Label("null").Label("test").U8(0).U16(15).U16(1);
  p.Ptr(12).U16(15).U16(1).U32(3600).U16(3).U16(0).U8(0);
  DnsMessage m;
  ASSERT_TRUE(ParseDnsMessage(p.span(), &m).ok());
  ASSERT_EQ(m.answers.size(), 1u);
  EXPECT_EQ(m.answers[0].preference, 0);
  EXPECT_EQ(m.answers[0].target, "");
}

TEST(DnsMessageTest, ReusedOutputIsCleared) {
  DnsMessage m;
  ASSERT_TRUE(ParseDnsMessage(MxPacket().span(), &m).ok());
  Packet p;
  p.Header(0x8180, 0, 0, 0, 0);
  ASSERT_TRUE(ParseDnsMessage(p.span(), &m).ok());
  EXPECT_TRUE(m.answers.empty());
  EXPECT_TRUE(m.additional.empty());
  EXPECT_EQ(m.question_name, "");
}

TEST(DnsMessageTest, PointerToItselfIsRejected) {
  Packet p;
  p.Header(0x8180, 1, 0, 0, 0);
  p.Ptr(12).U16(15).U16(1);
  DnsMessage m;
  EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
}

TEST(DnsMessageTest, PointerLoopThroughALabelIsRejected) {
  Packet p;
  p.Header(0x8180, 1, 1, 0, 0);
  p.Label("a").Label("test").U8(0).U16(15).U16(1);
  // Owner "x" then a pointer back to the "x" label: x.x.x.... forever.
  const uint16_t at = static_cast<uint16_t>(p.size());
  p.Label("x").Ptr(at).U16(15).U16(1).U32(1).U16(0);
  DnsMessage m;
  EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
}

TEST(DnsMessageTest, TwoPointersAtEachOtherAreRejected) {
  Packet p;
  p.Header(0x8180, 1, 1, 0, 0);
  p.Label("a").Label("test").U8(0).U16(15).U16(1);  // 12..29
  // Answer owner: pointer (at 29) to 31, which points back to 29.
  p.Ptr(31).Ptr(29).U16(1).U16(1).U32(1).U16(4).U32(0);
  DnsMessage m;
  EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
}

TEST(DnsMessageTest, ForwardPointerIsRejected) {
  Packet p;
  p.Header(0x8180, 1, 0, 0, 0);
  p.Ptr(20).U16(15).U16(1).U32(0).U32(0);
  DnsMessage m;
  EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
}

TEST(DnsMessageTest, LengthsPastTheEndAreRejected) {
  DnsMessage m;
  {
    Packet p = MxPacket();
    p.Set16(39, 200);  // answer 1 RDLENGTH past the end of the packet
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p = MxPacket();
    p.Set16(39, 5);  // MX exchange runs past its RDLENGTH
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p;
    p.Header(0x8180, 0, 1, 0, 0);
    p.U8(0).U16(1).U16(1).U32(1).U16(5).U32(0).U8(0);  // A of 5 bytes
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p;
    p.Header(0x8180, 0, 3, 0, 0);  // claims 3 answers, has none
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p;
    p.Header(0x8180, 1, 0, 0, 0);
    p.U8(10).Label("abc");  // label longer than what follows
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
}

TEST(DnsMessageTest, BadLabelsAndLongNamesAreRejected) {
  DnsMessage m;
  {
    Packet p;
    p.Header(0x8180, 1, 0, 0, 0);
    p.U8(0x41).U8('a').U8(0).U16(1).U16(1);  // 0x40 label type
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p;
    p.Header(0x8180, 1, 0, 0, 0);
    for (int i = 0; i < 5; ++i) p.Label(std::string(60, 'a'));  // 305 bytes
    p.U8(0).U16(1).U16(1);
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p;
    p.Header(0x8180, 1, 0, 0, 0);
    p.Label("a.b").U8(0).U16(1).U16(1);  // a dot inside a label
    EXPECT_FALSE(ParseDnsMessage(p.span(), &m).ok());
  }
  {
    Packet p;
    p.Header(0x8180, 1, 0, 0, 0);
    for (int i = 0; i < 4; ++i) p.Label(std::string(60, 'a'));  // 245 bytes
    p.U8(0).U16(1).U16(1);
    EXPECT_TRUE(ParseDnsMessage(p.span(), &m).ok());
  }
}

TEST(DnsMessageTest, SameNameIgnoresCase) {
  EXPECT_TRUE(SameName("MX.Example.com", "mx.example.COM"));
  EXPECT_FALSE(SameName("mx.example.com", "mx.example.co"));
}

}  // namespace
}  // namespace salvo::dns
