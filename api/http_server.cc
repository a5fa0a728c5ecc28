// HttpServer: the only file of api/ that touches sockets (see http_server.h).
// Loop thread only.
#include "api/http_server.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace salvo::api {
namespace {

constexpr size_t kReadBufferSize = 64 << 10;

std::string JsonError(absl::string_view code, absl::string_view message) {
  // Messages here are fixed ASCII without quotes or backslashes.
  return absl::StrCat("{\"error\":{\"code\":\"", code, "\",\"message\":\"",
                      message, "\"}}");
}

const char* Reason(int status) {
  const char* s = http_status_str(static_cast<http_status>(status));
  return (s == nullptr || std::strcmp(s, "<unknown>") == 0) ? "Unknown" : s;
}

}  // namespace

const std::string* HttpRequest::Header(absl::string_view lname) const {
  for (const auto& [name, value] : headers) {
    if (name == lname) return &value;
  }
  return nullptr;
}

absl::StatusOr<std::pair<std::string, uint16_t>> SplitHostPort(
    absl::string_view hp) {
  std::string host;
  absl::string_view port_text;
  if (absl::StartsWith(hp, "[")) {
    size_t end = hp.find(']');
    if (end == absl::string_view::npos || end + 1 >= hp.size() ||
        hp[end + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad host:port ", hp));
    }
    host = std::string(hp.substr(1, end - 1));
    port_text = hp.substr(end + 2);
  } else {
    size_t colon = hp.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad host:port ", hp));
    }
    host = std::string(hp.substr(0, colon));
    port_text = hp.substr(colon + 1);
  }
  uint32_t port = 0;
  if (host.empty() || !absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad host:port ", hp));
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

// One client connection. Owns its uv_tcp_t; keeps itself alive (self_) until
// the handle's close callback. Responders hold a weak_ptr.
class HttpServer::Connection
    : public std::enable_shared_from_this<HttpServer::Connection> {
 public:
  Connection(HttpServer* server, core::Loop& loop)
      : server_(server),
        loop_(loop),
        handler_(server->handler_),
        stream_route_(server->stream_route_),
        limits_(server->limits_),
        read_buf_(new char[kReadBufferSize]) {
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    tcp_.data = this;
  }

  // Accepts from `listener` and starts reading; closes on failure.
  void Start(std::shared_ptr<Connection> self, uv_stream_t* listener) {
    self_ = std::move(self);
    uv_tcp_init(loop_.uv(), &tcp_);
    if (uv_accept(listener, stream()) != 0) {
      Close();
      return;
    }
    uv_tcp_nodelay(&tcp_, 1);
    idle_timer_ = std::make_unique<core::Timer>(loop_);
    ArmIdle();
    ResumeReading();
  }

  // Closes now (pending writes are cancelled). Idempotent.
  void Close() {
    if (closing_) return;
    closing_ = true;
    idle_timer_.reset();  // closes the timer handle in this same iteration
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
      auto* c = static_cast<Connection*>(h->data);
      if (c->server_ != nullptr) c->server_->conns_.erase(c);
      std::shared_ptr<Connection> self = std::move(c->self_);
    });
  }

  void Detach() { server_ = nullptr; }

 private:
  struct Slot {
    bool ready = false;
    bool close_after = false;
    std::string head;
    std::string body;
  };
  struct WriteReq {
    uv_write_t req;
    std::string head;
    std::string body;
  };

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  void ArmIdle() {
    if (!idle_timer_ || limits_.idle_timeout_ms == 0) return;
    idle_timer_->Start(limits_.idle_timeout_ms, [this] {
      // A handler still working (e.g. waiting for a durable commit) keeps
      // the connection; otherwise the client has been silent too long (also
      // in the middle of a streamed body that we are not holding back).
      if (streaming_ && !body_paused_) {
        Close();
      } else if (!pipeline_.empty() || writes_in_flight_ > 0) {
        ArmIdle();
      } else {
        Close();
      }
    });
  }

  void ResumeReading() {
    if (reading_ || closing_ || stop_reading_) return;
    reading_ = true;
    uv_read_start(
        stream(),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* c = static_cast<Connection*>(h->data);
          *buf = uv_buf_init(c->read_buf_.get(), kReadBufferSize);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          static_cast<Connection*>(s->data)->OnRead(n, buf);
        });
  }

  void PauseReading() {
    if (!reading_) return;
    reading_ = false;
    if (!closing_) uv_read_stop(stream());
  }

  void OnRead(ssize_t n, const uv_buf_t* buf) {
    if (n == 0) return;
    if (n < 0) {
      // EOF or error: finish answering what was asked (EOF), then close.
      stop_reading_ = true;
      PauseReading();
      if (n != UV_EOF || (pipeline_.empty() && writes_in_flight_ == 0)) {
        Close();
      } else {
        close_when_drained_ = true;
      }
      return;
    }
    ArmIdle();
    Feed(buf->base, static_cast<size_t>(n));
  }

  void Feed(const char* data, size_t n) {
    static const http_parser_settings kSettings = MakeSettings();
    in_feed_ = true;
    size_t parsed = http_parser_execute(&parser_, &kSettings, data, n);
    in_feed_ = false;
    if (closing_) return;
    http_errno err = HTTP_PARSER_ERRNO(&parser_);
    if (err == HPE_PAUSED) {
      // Too many requests waiting for answers: keep the rest for later.
      pending_input_.append(data + parsed, n - parsed);
      PauseReading();
      return;
    }
    if (err == HPE_OK) return;
    if (stop_parsing_) return;  // Connection: close seen; ignore the rest.
    int status = error_status_;
    const char* message = "malformed HTTP request";
    if (status == 0 && err == HPE_HEADER_OVERFLOW) status = 431;
    if (status == 413) message = "request body too large";
    if (status == 431) message = "request headers too large";
    if (status == 0) status = 400;
    Fail(status, status == 400 ? "bad_request" : "too_large", message);
  }

  // Answers `status` after earlier responses, then closes.
  void Fail(int status, absl::string_view code, absl::string_view message) {
    stop_reading_ = true;
    stop_parsing_ = true;
    PauseReading();
    pending_input_.clear();
    pipeline_.emplace_back();
    Slot& slot = pipeline_.back();
    HttpResponse r;
    r.status = status;
    r.body = JsonError(code, message);
    Serialize(std::move(r), /*keep_alive=*/false, &slot);
    Flush();
  }

  static http_parser_settings MakeSettings() {
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_message_begin = [](http_parser* p) {
      return Self(p)->OnMessageBegin();
    };
    s.on_url = [](http_parser* p, const char* at, size_t len) {
      return Self(p)->OnUrl(at, len);
    };
    s.on_header_field = [](http_parser* p, const char* at, size_t len) {
      return Self(p)->OnHeaderField(at, len);
    };
    s.on_header_value = [](http_parser* p, const char* at, size_t len) {
      return Self(p)->OnHeaderValue(at, len);
    };
    s.on_headers_complete = [](http_parser* p) {
      return Self(p)->OnHeadersComplete();
    };
    s.on_body = [](http_parser* p, const char* at, size_t len) {
      return Self(p)->OnBody(at, len);
    };
    s.on_message_complete = [](http_parser* p) {
      return Self(p)->OnMessageComplete();
    };
    return s;
  }
  static Connection* Self(http_parser* p) {
    return static_cast<Connection*>(p->data);
  }

  bool AddHeaderBytes(size_t len) {
    header_bytes_ += static_cast<int64_t>(len);
    if (header_bytes_ > limits_.max_header_bytes) {
      error_status_ = 431;
      return false;
    }
    return true;
  }

  int OnMessageBegin() {
    cur_ = HttpRequest();
    url_.clear();
    field_.clear();
    value_.clear();
    in_value_ = false;
    header_bytes_ = 0;
    return 0;
  }
  int OnUrl(const char* at, size_t len) {
    if (!AddHeaderBytes(len)) return -1;
    url_.append(at, len);
    return 0;
  }
  void PushHeader() {
    absl::AsciiStrToLower(&field_);
    cur_.headers.emplace_back(std::move(field_), std::move(value_));
    field_.clear();
    value_.clear();
  }
  int OnHeaderField(const char* at, size_t len) {
    if (!AddHeaderBytes(len)) return -1;
    if (in_value_) {
      PushHeader();
      in_value_ = false;
    }
    field_.append(at, len);
    return 0;
  }
  int OnHeaderValue(const char* at, size_t len) {
    if (!AddHeaderBytes(len)) return -1;
    in_value_ = true;
    value_.append(at, len);
    return 0;
  }
  int OnHeadersComplete() {
    if (in_value_ || !field_.empty()) PushHeader();
    in_value_ = false;
    cur_.method = http_method_str(static_cast<http_method>(parser_.method));
    size_t q = url_.find('?');
    if (q == std::string::npos) {
      cur_.path = std::move(url_);
    } else {
      cur_.path = url_.substr(0, q);
      cur_.query = url_.substr(q + 1);
    }
    url_.clear();
    const bool has_length = cur_.Header("content-length") != nullptr;
    const bool streamed = stream_route_.wants && stream_route_.wants(cur_);
    if (has_length && !streamed) {
      if (parser_.content_length >
          static_cast<uint64_t>(limits_.max_body_bytes)) {
        error_status_ = 413;
        return -1;
      }
      cur_.body.reserve(parser_.content_length);
    }
    const std::string* expect = cur_.Header("expect");
    if (expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue") &&
        pipeline_.empty() && writes_in_flight_ == 0) {
      auto* w = new WriteReq;
      w->head = "HTTP/1.1 100 Continue\r\n\r\n";
      Write(w);
    }
    if (streamed) OpenStream();
    return 0;
  }

  // Headers of a streamed request are complete: its answer slot and stream.
  void OpenStream() {
    const bool keep_alive = http_should_keep_alive(&parser_) != 0;
    streaming_ = true;
    body_paused_ = false;
    std::weak_ptr<Connection> weak = weak_from_this();
    BodyFlow flow([weak](bool paused) {
      std::shared_ptr<Connection> c = weak.lock();
      if (c != nullptr && c->streaming_) c->SetBodyPaused(paused);
    });
    stream_ = stream_route_.open(std::move(cur_), NewSlot(keep_alive),
                                 std::move(flow));
  }

  // Loop thread, through a BodyFlow.
  void SetBodyPaused(bool paused) {
    if (closing_ || paused == body_paused_) return;
    body_paused_ = paused;
    if (paused) {
      if (in_feed_) {
        http_parser_pause(&parser_, 1);  // Feed() keeps the rest
      } else {
        PauseReading();
      }
    } else if (in_feed_) {
      http_parser_pause(&parser_, 0);
    } else {
      ResumeInput();
    }
  }

  // A new answer slot at the end of the pipeline, and its Responder.
  Responder NewSlot(bool keep_alive) {
    pipeline_.emplace_back();
    const uint64_t seq = next_seq_++;
    std::weak_ptr<Connection> weak = weak_from_this();
    return [weak, seq, keep_alive](HttpResponse r) {
      std::shared_ptr<Connection> c = weak.lock();
      if (c == nullptr || c->closing_) return;  // client left: drop
      c->Respond(seq, keep_alive, std::move(r));
    };
  }

  int OnBody(const char* at, size_t len) {
    if (streaming_) {
      if (stream_ != nullptr) stream_->OnBody(absl::string_view(at, len));
      return 0;
    }
    if (cur_.body.size() + len > static_cast<uint64_t>(limits_.max_body_bytes)) {
      error_status_ = 413;
      return -1;
    }
    cur_.body.append(at, len);
    return 0;
  }
  int OnMessageComplete() {
    const bool keep_alive = http_should_keep_alive(&parser_) != 0;
    if (!keep_alive) {
      stop_parsing_ = true;
      stop_reading_ = true;
    }
    if (streaming_) {
      streaming_ = false;
      body_paused_ = false;
      std::unique_ptr<BodyStream> stream = std::move(stream_);
      if (stream != nullptr) stream->OnEnd();
    } else {
      Responder respond = NewSlot(keep_alive);
      handler_(std::move(cur_), std::move(respond));
    }
    if (closing_ || stop_parsing_) return -1;  // see Feed(): not an error
    if (static_cast<int>(pipeline_.size()) >= limits_.max_pipelined) {
      http_parser_pause(&parser_, 1);
    }
    return 0;
  }

  void Serialize(HttpResponse r, bool keep_alive, Slot* slot) {
    slot->head = absl::StrCat("HTTP/1.1 ", r.status, " ", Reason(r.status),
                              "\r\nContent-Type: ", r.content_type,
                              "\r\nContent-Length: ", r.body.size(), "\r\n");
    for (const auto& [name, value] : r.headers) {
      absl::StrAppend(&slot->head, name, ": ", value, "\r\n");
    }
    if (!keep_alive) slot->head.append("Connection: close\r\n");
    slot->head.append("\r\n");
    slot->body = std::move(r.body);
    slot->ready = true;
    slot->close_after = !keep_alive;
  }

  void Respond(uint64_t seq, bool keep_alive, HttpResponse r) {
    if (seq < first_seq_ || seq - first_seq_ >= pipeline_.size()) return;
    Slot& slot = pipeline_[seq - first_seq_];
    if (slot.ready) return;  // answered twice: ignore
    Serialize(std::move(r), keep_alive, &slot);
    Flush();
  }

  // Writes the answered prefix of the pipeline, in order.
  void Flush() {
    while (!pipeline_.empty() && pipeline_.front().ready && !closing_) {
      Slot slot = std::move(pipeline_.front());
      pipeline_.pop_front();
      ++first_seq_;
      auto* w = new WriteReq;
      w->head = std::move(slot.head);
      w->body = std::move(slot.body);
      Write(w);
      if (slot.close_after) {
        close_when_drained_ = true;
        pipeline_.clear();
        break;
      }
    }
    if (closing_) return;
    if (close_when_drained_) {
      if (pipeline_.empty() && writes_in_flight_ == 0) Close();
      return;
    }
    ResumeInput();
  }

  // Input waits for answers (pipeline full) or for a streamed body's reader.
  bool InputBlocked() const {
    return body_paused_ ||
           (!streaming_ &&
            static_cast<int>(pipeline_.size()) >= limits_.max_pipelined);
  }

  // Parses what was kept while input was blocked, then reads again.
  void ResumeInput() {
    if (closing_ || InputBlocked()) return;
    if (HTTP_PARSER_ERRNO(&parser_) == HPE_PAUSED) {
      http_parser_pause(&parser_, 0);
      if (!pending_input_.empty()) {
        std::string input = std::move(pending_input_);
        pending_input_.clear();
        Feed(input.data(), input.size());
      }
    }
    if (pending_input_.empty() && !closing_ &&
        HTTP_PARSER_ERRNO(&parser_) == HPE_OK) {
      ResumeReading();
    }
  }

  void Write(WriteReq* w) {
    uv_buf_t bufs[2] = {uv_buf_init(w->head.data(), w->head.size()),
                        uv_buf_init(w->body.data(), w->body.size())};
    w->req.data = this;
    ++writes_in_flight_;
    int rc = uv_write(&w->req, stream(), bufs, w->body.empty() ? 1 : 2,
                      [](uv_write_t* req, int status) {
                        auto* w = reinterpret_cast<WriteReq*>(req);
                        auto* c = static_cast<Connection*>(req->data);
                        delete w;
                        c->OnWritten(status);
                      });
    if (rc != 0) {
      --writes_in_flight_;
      delete w;
      Close();
    }
  }

  void OnWritten(int status) {
    --writes_in_flight_;
    if (closing_) return;
    if (status != 0) {
      Close();
      return;
    }
    if (close_when_drained_ && pipeline_.empty() && writes_in_flight_ == 0) {
      Close();
    }
  }

  HttpServer* server_;
  core::Loop& loop_;
  Handler handler_;
  StreamRoute stream_route_;
  const Limits limits_;
  std::shared_ptr<Connection> self_;
  uv_tcp_t tcp_;
  std::unique_ptr<char[]> read_buf_;
  std::unique_ptr<core::Timer> idle_timer_;
  http_parser parser_;

  // Request being parsed.
  HttpRequest cur_;
  std::string url_, field_, value_;
  bool in_value_ = false;
  int64_t header_bytes_ = 0;
  int error_status_ = 0;  // 413 / 431 set by a callback that stopped parsing
  // A streamed request's body is being read (headers done, body not ended).
  bool streaming_ = false;
  bool body_paused_ = false;  // its reader asked us to stop reading
  std::unique_ptr<BodyStream> stream_;
  bool in_feed_ = false;  // inside http_parser_execute

  // Answers in request order: pipeline_[i] answers request first_seq_ + i.
  std::deque<Slot> pipeline_;
  uint64_t first_seq_ = 0;
  uint64_t next_seq_ = 0;
  std::string pending_input_;  // parsed later (pipeline full)
  int writes_in_flight_ = 0;
  bool reading_ = false;
  bool stop_reading_ = false;
  bool stop_parsing_ = false;
  bool close_when_drained_ = false;
  bool closing_ = false;
};

HttpServer::HttpServer(core::Loop& loop, Handler handler, Limits limits)
    : loop_(loop), handler_(std::move(handler)), limits_(limits) {}

HttpServer::~HttpServer() { Close(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Listen(
    core::Loop& loop, const std::string& host, uint16_t port, Handler handler,
    Limits limits) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) ==
      0) {
    addr_len = sizeof(sockaddr_in);
  } else if (uv_ip6_addr(host.c_str(), port,
                         reinterpret_cast<sockaddr_in6*>(&addr)) == 0) {
    addr_len = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address is not an IP address: ", host));
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("bind ", host, ":", port, ": ", err));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  uint16_t bound_port =
      ntohs(bound.ss_family == AF_INET
                ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);

  std::unique_ptr<HttpServer> server(
      new HttpServer(loop, std::move(handler), limits));
  server->port_ = bound_port;
  server->listener_ = new uv_tcp_t;
  uv_tcp_init(loop.uv(), server->listener_);
  server->listener_->data = server.get();
  int rc = uv_tcp_open(server->listener_, fd);
  if (rc != 0) {
    ::close(fd);
  } else {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(server->listener_), 1024,
                   &HttpServer::OnConnection);
  }
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("listen ", host, ":", port, ": ", uv_strerror(rc)));
    // ~HttpServer closes the listener.
  }
  return server;
}

void HttpServer::OnConnection(uv_stream_t* listener, int status) {
  if (status != 0) return;
  auto* server = static_cast<HttpServer*>(listener->data);
  auto conn = std::make_shared<Connection>(server, server->loop_);
  server->conns_.insert(conn.get());
  Connection* raw = conn.get();
  raw->Start(std::move(conn), listener);
}

void HttpServer::Close() {
  if (listener_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  std::unordered_set<Connection*> conns;
  conns.swap(conns_);
  for (Connection* c : conns) {
    c->Detach();
    c->Close();
  }
}

}  // namespace salvo::api
