// Test fixture: a real dnsmasq child process answering on 127.0.0.1 at a free
// port, authoritative for ".test" (unknown names are NXDOMAIN). Start() waits
// until it answers; the destructor kills and reaps it. Test thread only.
#ifndef SALVO_ENGINE_DNS_DNSMASQ_FIXTURE_H_
#define SALVO_ENGINE_DNS_DNSMASQ_FIXTURE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace salvo::dns {

class Dnsmasq {
 public:
  // `args` are extra dnsmasq options ("--mx-host=a.test,mx.a.test,10", ...).
  static absl::StatusOr<std::unique_ptr<Dnsmasq>> Start(
      const std::vector<std::string>& args);
  ~Dnsmasq();

  uint16_t port() const { return port_; }
  // For MxResolver::Options::servers.
  std::string server() const;
  // Queries dnsmasq logged for `name` (e.g. "query[MX] a.test ").
  int LoggedQueries(absl::string_view type, absl::string_view name) const;

 private:
  Dnsmasq() = default;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string log_path_;
};

// Picks a port free for both UDP and TCP on 127.0.0.1.
uint16_t FreeLoopbackPort();

}  // namespace salvo::dns

#endif  // SALVO_ENGINE_DNS_DNSMASQ_FIXTURE_H_
