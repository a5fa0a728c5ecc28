// Pure: queue keys <-> ordered key bytes. Big-endian integers so that byte
// order is numeric order. Any thread.
#include "storage/key_codec.h"

#include <cstring>

namespace salvo::storage {
namespace {

void PutBig16(uint16_t v, std::string* out) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

void PutBig64(uint64_t v, std::string* out) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v);
    v >>= 8;
  }
  out->append(buf, 8);
}

uint64_t GetBig64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

void EncodeQueueKey(const QueueKey& key, std::string* out) {
  out->reserve(out->size() + kQueueKeySize);
  out->push_back('Q');
  PutBig16(key.shard, out);
  out->push_back(static_cast<char>(key.lane));
  PutBig64(static_cast<uint64_t>(key.due_ms), out);
  PutBig64(key.id, out);
}

std::string EncodeQueueKey(const QueueKey& key) {
  std::string out;
  EncodeQueueKey(key, &out);
  return out;
}

bool DecodeQueueKey(absl::string_view bytes, QueueKey* key) {
  if (bytes.size() != kQueueKeySize || bytes[0] != 'Q') return false;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const uint8_t lane = p[3];
  if (lane >= kNumLanes) return false;
  key->shard = static_cast<uint16_t>((p[1] << 8) | p[2]);
  key->lane = static_cast<Lane>(lane);
  key->due_ms = static_cast<int64_t>(GetBig64(p + 4));
  key->id = GetBig64(p + 12);
  return true;
}

Lane BulkLaneFor(absl::string_view tenant) {
  uint32_t h = 2166136261u;  // FNV-1a, 32 bit
  for (char c : tenant) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return static_cast<Lane>(1 + h % kBulkClasses);
}

std::string QueueLanePrefix(uint16_t shard, Lane lane) {
  std::string out;
  out.push_back('Q');
  PutBig16(shard, &out);
  out.push_back(static_cast<char>(lane));
  return out;
}

std::string ContentKey(uint64_t content_id) {
  std::string out;
  out.push_back('C');
  PutBig64(content_id, &out);
  return out;
}

std::string ContentStateKey(uint64_t content_id) {
  std::string out;
  out.push_back('X');
  PutBig64(content_id, &out);
  return out;
}

std::string CounterKey(uint64_t content_id, uint8_t counter) {
  std::string out;
  out.push_back('N');
  PutBig64(content_id, &out);
  out.push_back(static_cast<char>(counter));
  return out;
}

std::string OutcomeKey(uint64_t content_id, uint64_t id) {
  std::string out;
  out.push_back('O');
  PutBig64(content_id, &out);
  PutBig64(id, &out);
  return out;
}

absl::string_view EventKey(uint64_t content_id, uint64_t recipient_id,
                           uint32_t seq, char buf[kEventKeySize]) {
  buf[0] = 'E';
  for (int i = 7; i >= 0; --i) {
    buf[1 + i] = static_cast<char>(content_id);
    buf[9 + i] = static_cast<char>(recipient_id);
    content_id >>= 8;
    recipient_id >>= 8;
  }
  for (int i = 3; i >= 0; --i) {
    buf[17 + i] = static_cast<char>(seq);
    seq >>= 8;
  }
  return absl::string_view(buf, kEventKeySize);
}

std::string EventKey(uint64_t content_id, uint64_t recipient_id,
                     uint32_t seq) {
  char buf[kEventKeySize];
  return std::string(EventKey(content_id, recipient_id, seq, buf));
}

bool DecodeEventKey(absl::string_view bytes, uint64_t* content_id,
                    uint64_t* recipient_id, uint32_t* seq) {
  if (bytes.size() != kEventKeySize || bytes[0] != 'E') return false;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  *content_id = GetBig64(p + 1);
  *recipient_id = GetBig64(p + 9);
  *seq = (uint32_t{p[17]} << 24) | (uint32_t{p[18]} << 16) |
         (uint32_t{p[19]} << 8) | p[20];
  return true;
}

void AppendIdHex(uint64_t id, std::string* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char buf[16];
  for (int i = 15; i >= 0; --i) {
    buf[i] = kDigits[id & 0xf];
    id >>= 4;
  }
  out->append(buf, sizeof(buf));
}

std::string IdToHex(uint64_t id) {
  std::string out;
  AppendIdHex(id, &out);
  return out;
}

bool HexToId(absl::string_view hex, uint64_t* id) {
  if (hex.size() != 16) return false;
  uint64_t v = 0;
  for (char c : hex) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *id = v;
  return true;
}

}  // namespace salvo::storage
