// Pure mail address syntax (RFC 5321 mailbox, RFC 5322 name-addr), no I/O.
// In: text from a submission. Out: valid or not, and the parts. Any thread.
#ifndef SALVO_API_ADDRESS_H_
#define SALVO_API_ADDRESS_H_

#include "absl/strings/string_view.h"

namespace salvo::api {

// RFC 5321 Mailbox: Local-part "@" ( Domain / address-literal ). Local part a
// dot-atom or a quoted string (no spaces), at most 64 octets; domain with at
// least two labels (LDH, 1..63 each) or [IPv4] / [IPv6:...], at most 255;
// whole address at most 254. ASCII only; no CR, LF, space or NUL anywhere.
bool IsValidMailbox(absl::string_view address);

// "Display Name <addr>" or a bare "addr". On success *address is the mailbox
// (valid per IsValidMailbox) and *display the trimmed name (may be empty).
// The display name may not hold CR, LF, NUL, '<' or '>'.
bool ParseNameAddr(absl::string_view text, absl::string_view* display,
                   absl::string_view* address);

// The domain of a valid mailbox (after the last '@').
absl::string_view DomainOf(absl::string_view address);

// RFC 5322 field-name: 1..76 printable ASCII characters except ':'.
bool IsValidHeaderName(absl::string_view name);

}  // namespace salvo::api

#endif  // SALVO_API_ADDRESS_H_
