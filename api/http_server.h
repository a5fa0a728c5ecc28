// HTTP/1.1 server on one core::Loop: libhttp-parser + uv_tcp.
//
// In: bytes from clients. Out: one HttpRequest per parsed request, handed to
// the Handler; the Handler answers through a Responder, at once or later.
// Keep-alive and pipelining: responses are written in request order, however
// the handlers finish. Limits: a body over max_body_bytes gets 413 and the
// connection closes; headers over max_header_bytes get 431; malformed HTTP
// gets 400 and a close; an idle connection closes after idle_timeout_ms.
//
// Every loop of the engine may listen on the same host:port: the socket is
// made here with SO_REUSEADDR and SO_REUSEPORT, then handed to uv_tcp_open.
//
// Streamed bodies: a StreamRoute (SetStreamRoute) picks requests when their
// headers are complete; their body goes to a BodyStream piece by piece as it
// arrives (chunked framing removed, max_body_bytes not applied), and the
// stream may Pause()/Resume() reading the socket through a BodyFlow.
//
// Thread-safety: everything (Listen, Close, Handler, Responder, BodyStream,
// BodyFlow) runs on the loop's thread.
#ifndef SALVO_API_HTTP_SERVER_H_
#define SALVO_API_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/core/loop.h"

namespace salvo::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query
  std::string query;   // after '?', without it
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;

  // First header named `lname` (lowercase), or nullptr.
  const std::string* Header(absl::string_view lname) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Call exactly once, on the loop thread. Safe after the client left: the
// response is then dropped.
using Responder = std::function<void(HttpResponse)>;
using Handler = std::function<void(HttpRequest&&, Responder)>;

// The body of one streamed request, fed as it arrives. Owned by the
// connection; destroyed after OnEnd() or when the client leaves mid-body.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // The next piece of the body; `data` is valid only during the call.
  virtual void OnBody(absl::string_view data) = 0;
  // The whole body was read.
  virtual void OnEnd() = 0;
};

// Stops and restarts reading one connection while its streamed body is
// consumed slower than it arrives. Copyable; a no-op once the connection is
// gone or its streamed request finished.
class BodyFlow {
 public:
  BodyFlow() = default;
  explicit BodyFlow(std::function<void(bool paused)> set_paused)
      : set_paused_(std::move(set_paused)) {}
  void Pause() const {
    if (set_paused_) set_paused_(true);
  }
  void Resume() const {
    if (set_paused_) set_paused_(false);
  }

 private:
  std::function<void(bool)> set_paused_;
};

struct StreamRoute {
  // Headers complete (no body yet): true to stream this request's body.
  std::function<bool(const HttpRequest& head)> wants;
  // Then: the stream for its body. May answer through `respond` at once and
  // return nullptr: the body is then read and dropped.
  std::function<std::unique_ptr<BodyStream>(HttpRequest&& head,
                                            Responder respond, BodyFlow flow)>
      open;
};

class HttpServer {
 public:
  struct Limits {
    int64_t max_body_bytes = 256 << 20;
    int64_t max_header_bytes = 64 << 10;  // request line + headers
    uint64_t idle_timeout_ms = 60000;
    int max_pipelined = 32;  // requests waiting for an answer per connection
  };

  // Loop thread. Binds host:port (port 0: any; read it back with port()).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(
      core::Loop& loop, const std::string& host, uint16_t port,
      Handler handler, Limits limits);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(
      core::Loop& loop, const std::string& host, uint16_t port,
      Handler handler) {
    return Listen(loop, host, port, std::move(handler), Limits());
  }

  ~HttpServer();  // Close()s.
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loop thread, before the first connection is accepted.
  void SetStreamRoute(StreamRoute route) { stream_route_ = std::move(route); }

  uint16_t port() const { return port_; }
  size_t connections() const { return conns_.size(); }

  // Stops accepting and closes every connection; each handle is freed in its
  // close callback (on a later loop iteration). Idempotent.
  void Close();

  class Connection;  // internal

 private:
  HttpServer(core::Loop& loop, Handler handler, Limits limits);
  static void OnConnection(uv_stream_t* listener, int status);

  core::Loop& loop_;
  Handler handler_;
  StreamRoute stream_route_;
  Limits limits_;
  uint16_t port_ = 0;
  uv_tcp_t* listener_ = nullptr;  // freed in its close callback
  std::unordered_set<Connection*> conns_;
  friend class Connection;
};

// "host:port" ("[::1]:8025", "127.0.0.1:0") -> parts. InvalidArgument if bad.
absl::StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(
    absl::string_view host_port);

}  // namespace salvo::api

#endif  // SALVO_API_HTTP_SERVER_H_
