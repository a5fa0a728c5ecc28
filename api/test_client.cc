// TestClient (see test_client.h).
#include "api/test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace salvo::api {

std::string ClientResponse::Header(absl::string_view lname) const {
  for (const auto& [n, v] : headers) {
    if (n == lname) return v;
  }
  return "";
}

TestClient::TestClient(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return;
  }
  fd_ = fd;
}

TestClient::~TestClient() {
  if (fd_ >= 0) close(fd_);
}

bool TestClient::Send(absl::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(n);
  }
  return true;
}

bool TestClient::Fill() {
  char tmp[65536];
  ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
  if (n <= 0) return false;
  buf_.append(tmp, n);
  return true;
}

ClientResponse TestClient::Read() {
  ClientResponse r;
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill()) return r;
  }
  std::string head = buf_.substr(0, end);
  buf_.erase(0, end + 4);
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  int status = 0;
  if (status_line.size() < 12 ||
      !absl::SimpleAtoi(status_line.substr(9, 3), &status)) {
    return r;
  }
  size_t length = 0;
  size_t pos = line_end;
  while (pos != std::string::npos && pos < head.size()) {
    size_t next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos
                                                ? std::string::npos
                                                : next - pos - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = absl::AsciiStrToLower(line.substr(0, colon));
      std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      if (name == "content-length") (void)absl::SimpleAtoi(value, &length);
      r.headers.emplace_back(name, value);
    }
    pos = next;
  }
  if (status == 100) return Read();  // interim response
  while (buf_.size() < length) {
    if (!Fill()) return r;
  }
  r.body = buf_.substr(0, length);
  buf_.erase(0, length);
  r.status = status;
  return r;
}

bool TestClient::ClosedByPeer() {
  if (!buf_.empty()) return false;
  char c;
  return recv(fd_, &c, 1, 0) == 0;
}

std::string TestClient::Request(absl::string_view method,
                                absl::string_view path, absl::string_view body,
                                absl::string_view extra_headers) {
  return absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: test\r\n",
                      extra_headers, "Content-Length: ", body.size(),
                      "\r\n\r\n", body);
}

}  // namespace salvo::api
