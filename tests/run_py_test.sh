#!/bin/bash
# Runs one Python integration test with unittest and Debian's /usr/bin/python3
# (the pyenv python3 on PATH lacks dkim/grpc).
# In: $1 = the script's path from the workspace root (tests/peers_test.py);
#     any further arguments go to unittest (e.g. a test name filter with -k).
# Works under `bazel test` (runfiles root $TEST_SRCDIR/salvo) and by hand from
# a checkout. The working directory is the runfiles/workspace root, and
# PYTHONPATH points there, so `from tests.lib import peers` works.
set -euo pipefail
script="$1"
shift
if [[ -n "${TEST_SRCDIR:-}" && -d "${TEST_SRCDIR}/salvo" ]]; then
  root="${TEST_SRCDIR}/salvo"
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi
cd "${root}"
export SALVO_RUNFILES_ROOT="${root}"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1
# exec: Bazel's SIGTERM on timeout reaches Python, which then kills its peers.
exec /usr/bin/python3 -m unittest -v "${script}" "$@"
