// Pure: recipient events -> JSON (see event_json.h). Any thread.
#include "engine/events/event_json.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/time/time.h"
#include "storage/key_codec.h"

namespace salvo::events {
namespace {

constexpr struct {
  storage::Event::State state;
  const char* name;
} kTypes[] = {
    {storage::Event::ACCEPTED, "accepted"},
    {storage::Event::DELIVERED, "delivered"},
    {storage::Event::DEFERRED, "deferred"},
    {storage::Event::BOUNCED, "bounced"},
    {storage::Event::EXPIRED, "expired"},
    {storage::Event::SUPPRESSED, "suppressed"},
    {storage::Event::CANCELLED, "cancelled"},
};

}  // namespace

const char* EventTypeName(storage::Event::State state) {
  for (const auto& t : kTypes) {
    if (t.state == state) return t.name;
  }
  return "unknown";
}

bool ParseEventType(absl::string_view name, storage::Event::State* state) {
  for (const auto& t : kTypes) {
    if (name == t.name) {
      *state = t.state;
      return true;
    }
  }
  return false;
}

std::string FormatRfc3339Ms(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

void AppendEventJson(absl::string_view tenant, uint64_t content_id,
                     uint64_t recipient_id, const storage::Event& event,
                     std::string* out) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  auto str = [&w](absl::string_view s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  if (!tenant.empty()) {
    w.Key("tenant");
    str(tenant);
  }
  w.Key("campaign");
  str(storage::IdToHex(content_id));
  w.Key("recipient");
  str(storage::IdToHex(recipient_id));
  w.Key("email");
  str(event.address());
  w.Key("type");
  w.String(EventTypeName(event.state()));
  w.Key("at");
  str(FormatRfc3339Ms(event.at_ms()));
  w.Key("attempt");
  w.Uint(event.attempt());
  w.Key("remote_host");
  str(event.remote_host());
  w.Key("reply");
  str(event.reply());
  w.Key("tls");
  str(event.tls());
  w.EndObject();
  out->append(sb.GetString(), sb.GetSize());
}

bool AppendPackedAcceptedJson(absl::string_view tenant, uint64_t content_id,
                              absl::string_view packed, std::string* out) {
  storage::RecipientBlock block;
  if (!block.ParseFromArray(packed.data(), static_cast<int>(packed.size()))) {
    return false;
  }
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  auto str = [&w](absl::string_view s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  if (!tenant.empty()) {
    w.Key("tenant");
    str(tenant);
  }
  w.Key("campaign");
  str(storage::IdToHex(content_id));
  w.Key("type");
  w.String("accepted");
  w.Key("at");
  str(FormatRfc3339Ms(block.accepted_ms()));
  w.Key("first_recipient");
  str(storage::IdToHex(block.first_id()));
  w.Key("count");
  w.Int(block.recipients_size());
  w.Key("emails");
  w.StartArray();
  for (const storage::Recipient& r : block.recipients()) str(r.address());
  w.EndArray();
  w.EndObject();
  out->append(sb.GetString(), sb.GetSize());
  return true;
}

}  // namespace salvo::events
