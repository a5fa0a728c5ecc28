// VERP return paths, pure: bounces+<content hex>.<recipient hex>@<domain>.
// In: the content id and the recipient's queue id (both u64, 16 lowercase hex
// digits each). Out: the MAIL FROM address, and back from the address an
// asynchronous bounce was sent to. Any thread: stateless.
#ifndef SALVO_ENGINE_HYGIENE_VERP_H_
#define SALVO_ENGINE_HYGIENE_VERP_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace salvo::hygiene {

struct VerpIds {
  uint64_t content_id = 0;
  uint64_t recipient_id = 0;
  bool operator==(const VerpIds& o) const {
    return content_id == o.content_id && recipient_id == o.recipient_id;
  }
};

// Appends "bounces+<16 hex>.<16 hex>@<bounce_domain>" to *out.
void AppendVerp(const VerpIds& ids, absl::string_view bounce_domain,
                std::string* out);
std::string BuildVerp(const VerpIds& ids, absl::string_view bounce_domain);

// Parses a VERP address (local part case-insensitive, hex either case). When
// `bounce_domain` is non-empty the domain must equal it (ASCII
// case-insensitive). nullopt for anything else.
std::optional<VerpIds> ParseVerp(absl::string_view address,
                                 absl::string_view bounce_domain = "");

}  // namespace salvo::hygiene

#endif  // SALVO_ENGINE_HYGIENE_VERP_H_
