// dnsmasq child process for tests (see dnsmasq_fixture.h).
#include "engine/dns/dnsmasq_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace salvo::dns {
namespace {

int BindLoopback(int type, uint16_t port) {
  int fd = socket(AF_INET, type, 0);
  if (fd < 0) return -1;
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One A query for "ready.test"; true once any answer comes back.
bool Answers(uint16_t port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  const uint8_t query[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                           5,    'r',  'e',  'a',  'd', 'y', 4, 't', 'e', 's',
                           't',  0,    0,    1,    0,   1};
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  if (sendto(fd, query, sizeof(query), 0, reinterpret_cast<sockaddr*>(&sin),
             sizeof(sin)) == static_cast<ssize_t>(sizeof(query))) {
    pollfd p{fd, POLLIN, 0};
    uint8_t buf[512];
    ok = poll(&p, 1, 100) == 1 && recv(fd, buf, sizeof(buf), 0) >= 12;
  }
  close(fd);
  return ok;
}

}  // namespace

uint16_t FreeLoopbackPort() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int udp = BindLoopback(SOCK_DGRAM, 0);
    if (udp < 0) continue;
    sockaddr_in sin{};
    socklen_t len = sizeof(sin);
    getsockname(udp, reinterpret_cast<sockaddr*>(&sin), &len);
    const uint16_t port = ntohs(sin.sin_port);
    int tcp = BindLoopback(SOCK_STREAM, port);
    close(udp);
    if (tcp >= 0) {
      close(tcp);
      return port;
    }
  }
  return 0;
}

absl::StatusOr<std::unique_ptr<Dnsmasq>> Dnsmasq::Start(
    const std::vector<std::string>& args) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  static int serial = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::unique_ptr<Dnsmasq> d(new Dnsmasq);
    d->port_ = FreeLoopbackPort();
    if (d->port_ == 0) return absl::UnavailableError("no free port");
    d->log_path_ = absl::StrCat(tmp ? tmp : "/tmp", "/dnsmasq-", getpid(), "-",
                                ++serial, ".log");
    std::vector<std::string> argv = {
        "/usr/sbin/dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        absl::StrCat("--port=", d->port_),
        "--user=root",
        "--pid-file=",
        "--log-queries",
        absl::StrCat("--log-facility=", d->log_path_),
        "--local=/test/",
        "--cache-size=0",
    };
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    if (posix_spawn(&d->pid_, cargv[0], nullptr, nullptr, cargv.data(),
                    environ) != 0) {
      return absl::InternalError("cannot spawn dnsmasq");
    }
    for (int i = 0; i < 100; ++i) {  // up to ~10 s
      int wstatus;
      if (waitpid(d->pid_, &wstatus, WNOHANG) == d->pid_) {
        d->pid_ = -1;  // exited: port taken or bad option; try again
        break;
      }
      if (Answers(d->port_)) return d;
    }
  }
  return absl::UnavailableError("dnsmasq did not start");
}

Dnsmasq::~Dnsmasq() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int wstatus;
    waitpid(pid_, &wstatus, 0);
  }
  if (!log_path_.empty()) unlink(log_path_.c_str());
}

std::string Dnsmasq::server() const {
  return absl::StrCat("127.0.0.1:", port_);
}

int Dnsmasq::LoggedQueries(absl::string_view type,
                           absl::string_view name) const {
  std::ifstream in(log_path_);
  const std::string needle = absl::StrCat("query[", type, "] ", name, " from");
  int count = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) ++count;
  }
  return count;
}

}  // namespace salvo::dns
