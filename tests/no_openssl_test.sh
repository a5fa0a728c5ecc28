#!/usr/bin/env bash
# Fails if any Salvo binary loads OpenSSL 3 (libssl.so.3 / libcrypto.so.3):
# its symbols collide with BoringSSL's, and such a process crashes.
# Args: the binaries to check. A negative control checks that the same test
# does flag an OpenSSL-linked program (curl), so the check can fail.
set -u
flagged() { ldd "$1" 2>/dev/null | grep -E 'lib(ssl|crypto)\.so\.3' ; }

status=0
checked=0
for bin in "$@"; do
  [ -x "$bin" ] || { echo "not executable: $bin"; status=1; continue; }
  if hits=$(flagged "$bin") && [ -n "$hits" ]; then
    echo "FAIL: $bin loads OpenSSL:"; echo "$hits"; status=1
  else
    echo "ok: $bin"
  fi
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || { echo "no binaries given"; exit 1; }

control=$(command -v curl || true)
if [ -n "$control" ]; then
  if [ -z "$(flagged "$control")" ]; then
    echo "negative control: $control should load OpenSSL but the check saw none"
    status=1
  else
    echo "negative control ok: $control is flagged"
  fi
fi
exit $status
