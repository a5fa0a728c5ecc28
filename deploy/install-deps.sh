#!/usr/bin/env bash
# Installs the Debian packages Salvo builds, tests and demos with. Idempotent:
# packages already present are left alone, and apt runs only when something
# is missing. Debian bookworm; needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap g++ clang-14 libclang-rt-14-dev
  libuv1-dev librocksdb-dev libabsl-dev libc-ares-dev libhttp-parser-dev
  libre2-dev libtomlplusplus-dev rapidjson-dev libgtest-dev libgmock-dev
  libbenchmark-dev android-libboringssl-dev libnghttp2-dev libprotobuf-dev
  protobuf-compiler libsodium-dev libjemalloc-dev
  # real peers for tests, the demo and benchmarks
  postfix dnsmasq-base swaks python3 python3-dkim python3-grpcio prometheus
  redis-server curl openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix is only a test peer here: no system mail configuration.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
