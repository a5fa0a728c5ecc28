// Reply::ToString, StageName, and the TransactionResult / Endpoint helpers
// declared in transaction.h. Pure; any thread.
#include "engine/smtp/reply.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"
#include "engine/smtp/transaction.h"

namespace salvo::smtp {

const char* StageName(Stage s) {
  switch (s) {
    case Stage::kConnect: return "connect";
    case Stage::kGreeting: return "greeting";
    case Stage::kEhlo: return "ehlo";
    case Stage::kHelo: return "helo";
    case Stage::kMail: return "mail";
    case Stage::kRcpt: return "rcpt";
    case Stage::kData: return "data";
    case Stage::kDataEnd: return "data_end";
    case Stage::kRset: return "rset";
    case Stage::kQuit: return "quit";
    case Stage::kStartTls: return "starttls";
    case Stage::kTlsHandshake: return "tls_handshake";
    case Stage::kBdat: return "bdat";
  }
  return "unknown";
}

std::string Reply::ToString() const {
  absl::string_view first = text;
  size_t nl = first.find('\n');
  if (nl != absl::string_view::npos) first = first.substr(0, nl);
  if (synthetic) return absl::StrCat("local: ", first);
  std::string out = absl::StrCat(code);
  if (!enhanced.empty()) absl::StrAppend(&out, " ", enhanced);
  if (!first.empty()) absl::StrAppend(&out, " ", first);
  return out;
}

const char* TlsPolicyName(TlsPolicy p) {
  switch (p) {
    case TlsPolicy::kDisabled: return "disabled";
    case TlsPolicy::kOpportunistic: return "opportunistic";
    case TlsPolicy::kRequired: return "required";
    case TlsPolicy::kRequiredVerify: return "required_verify";
  }
  return "?";
}

const Reply& TransactionResult::ForRecipient(size_t i) const {
  if (mail.code < 200 || mail.code >= 300) return mail;
  if (i >= rcpts.size()) return mail;  // caller bug; never reads as success
  const Reply& r = rcpts[i];
  if (r.code < 200 || r.code >= 300) return r;
  if (data.code != 354) return data;
  return data_end;
}

std::string Endpoint::ToString() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
    port = ntohs(sin->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
    port = ntohs(sin6->sin6_port);
  }
  return absl::StrCat(host_name, "[", buf, "]:", port);
}

}  // namespace salvo::smtp
