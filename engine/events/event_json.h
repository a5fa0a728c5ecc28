// Pure: recipient events (storage::Event) <-> their JSON form, shared by
// GET /v1/events and the JSON-lines log:
//   {"tenant"?, "campaign", "recipient", "email", "type", "at" (RFC 3339 ms),
//    "attempt", "remote_host", "reply", "tls"}
// Any thread.
#ifndef SALVO_ENGINE_EVENTS_EVENT_JSON_H_
#define SALVO_ENGINE_EVENTS_EVENT_JSON_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "storage/records.pb.h"

namespace salvo::events {

// "accepted", "delivered", ...; "unknown" for anything else.
const char* EventTypeName(storage::Event::State state);
// False for a name that is not a type.
[[nodiscard]] bool ParseEventType(absl::string_view name,
                                  storage::Event::State* state);
// "2026-11-23T04:35:16.123Z".
std::string FormatRfc3339Ms(int64_t ms);
// Appends one JSON object (no newline) to *out; "tenant" only when not empty.
void AppendEventJson(absl::string_view tenant, uint64_t content_id,
                     uint64_t recipient_id, const storage::Event& event,
                     std::string* out);

// One line for a block's packed ACCEPTED events (`packed` is a serialized
// storage::RecipientBlock without fields; recipient ids are consecutive):
//   {"tenant"?, "campaign", "type": "accepted", "at", "first_recipient",
//    "count", "emails": [...]}
// False (nothing appended) if `packed` does not parse.
[[nodiscard]] bool AppendPackedAcceptedJson(absl::string_view tenant,
                                            uint64_t content_id,
                                            absl::string_view packed,
                                            std::string* out);

}  // namespace salvo::events

#endif  // SALVO_ENGINE_EVENTS_EVENT_JSON_H_
