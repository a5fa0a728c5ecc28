// Test helper: a self-signed P-256 certificate for a host name (CN and DNS
// SAN), made with BoringSSL, written to a temp PEM file usable as a CA file;
// and a server SSL_CTX using it. Test code only; any thread.
#ifndef SALVO_ENGINE_SMTP_TLS_TEST_CERT_H_
#define SALVO_ENGINE_SMTP_TLS_TEST_CERT_H_

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

namespace salvo::smtp {

struct Cert {
  bssl::UniquePtr<EVP_PKEY> key;
  bssl::UniquePtr<X509> x509;
  std::string pem_path;  // the certificate as a CA file
};

// A self-signed P-256 certificate for `host` (CN and DNS SAN).
inline Cert MakeCert(const std::string& host) {
  Cert c;
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  EC_KEY_generate_key(ec.get());
  c.key.reset(EVP_PKEY_new());
  EVP_PKEY_assign_EC_KEY(c.key.get(), ec.release());
  c.x509.reset(X509_new());
  X509* x = c.x509.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  GENERAL_NAME* dns = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  ASN1_STRING_set(ia5, host.data(), static_cast<int>(host.size()));
  GENERAL_NAME_set0_value(dns, GEN_DNS, ia5);
  sk_GENERAL_NAME_push(names, dns);
  X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0);
  GENERAL_NAMES_free(names);
  X509_set_pubkey(x, c.key.get());
  X509_sign(x, c.key.get(), EVP_sha256());
  char path[] = "/tmp/salvo-tls-ca-XXXXXX";
  int fd = mkstemp(path);
  FILE* f = fdopen(fd, "w");
  PEM_write_X509(f, x);
  fclose(f);
  c.pem_path = path;
  return c;
}

inline bssl::UniquePtr<SSL_CTX> ServerCtx(const Cert& cert) {
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  SSL_CTX_use_certificate(ctx.get(), cert.x509.get());
  SSL_CTX_use_PrivateKey(ctx.get(), cert.key.get());
  return ctx;
}

}  // namespace salvo::smtp

#endif  // SALVO_ENGINE_SMTP_TLS_TEST_CERT_H_
