// Implementation of TlsEngine, TlsClientContext, TlsSessionCache and
// TlsFallbackMemory (see tls_engine.h). No sockets: memory BIOs only.
#include "engine/smtp/tls_engine.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace salvo::smtp {
namespace {

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

// ------------------------------------------------------------ session cache

void TlsSessionCache::Put(const std::string& key,
                          bssl::UniquePtr<SSL_SESSION> session) {
  if (session == nullptr || !SSL_SESSION_is_resumable(session.get())) return;
  auto it = map_.find(key);
  if (it != map_.end()) {
    order_.erase(it->second.order);
    map_.erase(it);
  }
  while (!order_.empty() && map_.size() >= capacity_) {
    map_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(key);
  map_[key] = Entry{std::move(session), std::prev(order_.end())};
}

SSL_SESSION* TlsSessionCache::Get(const std::string& key) const {
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : it->second.session.get();
}

void TlsSessionCache::Erase(const std::string& key) {
  auto it = map_.find(key);
  if (it == map_.end()) return;
  order_.erase(it->second.order);
  map_.erase(it);
}

// ------------------------------------------------------------ client context

absl::StatusOr<std::unique_ptr<TlsClientContext>> TlsClientContext::Create(
    const std::string& ca_file) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_VERSION);
  if (!ca_file.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) !=
          1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load CA file ", ca_file));
  }
  // Sessions reach the cache through TlsEngine::TakeNewSession().
  SSL_CTX_set_session_cache_mode(
      ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx.get(), &TlsEngine::OnNewSession);
  return std::unique_ptr<TlsClientContext>(
      new TlsClientContext(std::move(ctx)));
}

TlsClientContext* TlsClientContext::ThreadDefault() {
  thread_local std::unique_ptr<TlsClientContext> context = [] {
    auto c = Create();
    return c.ok() ? std::move(*c) : nullptr;
  }();
  return context.get();
}

// ------------------------------------------------------------------ engine

TlsEngine::TlsEngine(SSL* ssl, bool verify) : ssl_(ssl), verify_(verify) {
  SSL_set_app_data(ssl_, this);
}

TlsEngine::~TlsEngine() { SSL_free(ssl_); }

namespace {

// Memory BIOs: reads from an empty one ask to retry instead of reporting EOF.
bool AttachMemoryBios(SSL* ssl) {
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return false;
  }
  BIO_set_mem_eof_return(rbio, -1);
  BIO_set_mem_eof_return(wbio, -1);
  SSL_set_bio(ssl, rbio, wbio);
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsEngine>> TlsEngine::Client(
    SSL_CTX* ctx, const std::string& host_name, bool verify,
    SSL_SESSION* resume) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return absl::InternalError("SSL_new failed");
  std::unique_ptr<TlsEngine> e(new TlsEngine(ssl, verify));
  if (!AttachMemoryBios(ssl)) return absl::InternalError("BIO_new failed");
  SSL_set_connect_state(ssl);
  if (!host_name.empty() && !IsIpLiteral(host_name)) {
    SSL_set_tlsext_host_name(ssl, host_name.c_str());
  }
  if (verify) {
    if (host_name.empty()) {
      return absl::InvalidArgumentError("verify needs the MX host name");
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param,
                                    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(param, host_name.data(),
                                    host_name.size()) != 1) {
      return absl::InvalidArgumentError("bad host name for verification");
    }
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
  }
  if (resume != nullptr) SSL_set_session(ssl, resume);
  return e;
}

absl::StatusOr<std::unique_ptr<TlsEngine>> TlsEngine::Server(SSL_CTX* ctx) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return absl::InternalError("SSL_new failed");
  std::unique_ptr<TlsEngine> e(new TlsEngine(ssl, false));
  if (!AttachMemoryBios(ssl)) return absl::InternalError("BIO_new failed");
  SSL_set_accept_state(ssl);
  return e;
}

int TlsEngine::OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* e = static_cast<TlsEngine*>(SSL_get_app_data(ssl));
  if (e == nullptr) return 0;
  e->new_session_.reset(session);
  return 1;  // we took the reference
}

void TlsEngine::FeedCiphertext(absl::string_view bytes) {
  if (!bytes.empty()) {
    BIO_write(SSL_get_rbio(ssl_), bytes.data(), static_cast<int>(bytes.size()));
  }
}

bool TlsEngine::TakeCiphertext(std::string* out) {
  BIO* w = SSL_get_wbio(ssl_);
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(w, &data, &len) || len == 0) return false;
  out->append(reinterpret_cast<const char*>(data), len);
  BIO_reset(w);
  return true;
}

std::string TlsEngine::ErrorText(int ret, absl::string_view what) {
  int err = SSL_get_error(ssl_, ret);
  std::string text = absl::StrCat(what, " failed");
  long vr = SSL_get_verify_result(ssl_);
  if (verify_ && vr != X509_V_OK) {
    absl::StrAppend(&text, ": certificate: ",
                    X509_verify_cert_error_string(vr));
  }
  uint32_t e = ERR_get_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&text, ": ", buf);
  } else if (err == SSL_ERROR_ZERO_RETURN) {
    absl::StrAppend(&text, ": peer closed");
  } else {
    absl::StrAppend(&text, ": ssl error ", err);
  }
  ERR_clear_error();
  return text;
}

TlsEngine::Progress TlsEngine::Handshake() {
  if (done_) return Progress::kDone;
  if (!error_.empty()) return Progress::kFailed;
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    done_ = true;
    return Progress::kDone;
  }
  int err = SSL_get_error(ssl_, ret);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    return Progress::kWantMore;
  }
  error_ = ErrorText(ret, "TLS handshake");
  return Progress::kFailed;
}

absl::Status TlsEngine::WritePlaintext(absl::string_view plain) {
  if (!done_) return absl::FailedPreconditionError("TLS handshake not done");
  while (!plain.empty()) {
    int n = SSL_write(ssl_, plain.data(),
                      static_cast<int>(std::min<size_t>(plain.size(), 1 << 30)));
    if (n <= 0) {
      error_ = ErrorText(n, "TLS write");
      return absl::UnavailableError(error_);
    }
    plain.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status TlsEngine::ReadPlaintext(std::string* out, bool* peer_closed) {
  if (peer_closed != nullptr) *peer_closed = false;
  char buf[16 * 1024];
  while (true) {
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, n);
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      return absl::OkStatus();
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      if (peer_closed != nullptr) *peer_closed = true;
      return absl::OkStatus();
    }
    error_ = ErrorText(n, "TLS read");
    return absl::UnavailableError(error_);
  }
}

bool TlsEngine::Shutdown() {
  if (!done_) return false;
  // 0: our close_notify is written, the peer's not seen yet (we do not
  // wait for it); 1: both. Either way the alert is in the write BIO.
  int rc = SSL_shutdown(ssl_);
  if (rc < 0) {
    ERR_clear_error();
    return false;
  }
  return true;
}

TlsInfo TlsEngine::info() const {
  TlsInfo i;
  if (!done_) return i;
  i.active = true;
  i.verified = verify_ && SSL_get_verify_result(ssl_) == X509_V_OK;
  i.resumed = SSL_session_reused(ssl_) == 1;
  i.version = SSL_get_version(ssl_);
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  if (c != nullptr) i.cipher = SSL_CIPHER_standard_name(c);
  return i;
}

// ------------------------------------------------------------ fallback memory

void TlsFallbackMemory::Remember(const std::string& key) {
  absl::Time now = clock_.Now();
  if (until_.size() >= capacity_) {  // drop what has expired, else everything
    for (auto it = until_.begin(); it != until_.end();) {
      if (it->second <= now) {
        until_.erase(it++);
      } else {
        ++it;
      }
    }
    if (until_.size() >= capacity_) until_.clear();
  }
  until_[key] = now + ttl_;
}

bool TlsFallbackMemory::ShouldSkipTls(const std::string& key) {
  auto it = until_.find(key);
  if (it == until_.end()) return false;
  if (it->second > clock_.Now()) return true;
  until_.erase(it);
  return false;
}

}  // namespace salvo::smtp
