// A small blocking HTTP/1.1 client for tests: one TCP connection to
// 127.0.0.1:port, raw sends, responses read one at a time (Content-Length
// framing). Receive timeout 20 s so a broken server fails the test instead of
// hanging it. Test thread only (never the loop thread).
#ifndef SALVO_API_TEST_CLIENT_H_
#define SALVO_API_TEST_CLIENT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace salvo::api {

struct ClientResponse {
  int status = 0;  // 0: connection closed or timed out before a response
  std::vector<std::pair<std::string, std::string>> headers;  // lowercased
  std::string body;
  std::string Header(absl::string_view lname) const;
};

class TestClient {
 public:
  explicit TestClient(uint16_t port);
  ~TestClient();
  bool connected() const { return fd_ >= 0; }
  bool Send(absl::string_view bytes);
  ClientResponse Read();
  // True when the server closed the connection (read returns 0) with no
  // more bytes pending.
  bool ClosedByPeer();
  // Convenience: one request with a body and optional extra header lines.
  static std::string Request(absl::string_view method, absl::string_view path,
                             absl::string_view body,
                             absl::string_view extra_headers = "");

 private:
  bool Fill();
  int fd_ = -1;
  std::string buf_;
};

}  // namespace salvo::api

#endif  // SALVO_API_TEST_CLIENT_H_
