#!/usr/bin/env bash
# Runs the whole test suite: installs the peer programs that the integration tests
# run (see scripts/install-peers.sh), then every cargo test target. Arguments go to
# both cargo runs, for example a test name filter. Exits with cargo's status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-peers.sh

# --all-targets runs the unit tests, the integration tests under tests/, and the
# examples and benchmarks as tests, but not the doc tests, which only a library
# target has. --no-fail-fast runs every test binary even after one fails, so a
# single run reports all failures, and cargo still exits non-zero.
status=0
cargo test --no-fail-fast --all-targets "$@" || status=$?
if cargo metadata --no-deps --format-version 1 | grep -q '"kind":\["lib"\]'; then
  cargo test --no-fail-fast --doc "$@" || status=$?
fi
exit "$status"
