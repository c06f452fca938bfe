#!/usr/bin/env bash
# The project's test command (used by CI via .ci/run):
#   1. install the tools the tests need (scripts/setup.sh; idempotent and quick when done)
#   2. cargo build --workspace          (dev profile)
#   3. cargo test --workspace
#   4. .venv/bin/pytest tests/e2e      (real strata binary from target/debug, real S3 clients)
# Exits non-zero on any failure; pytest finding no tests (exit 5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
section() { printf '\n======== %s  [+%ds] ========\n' "$*" $((SECONDS - START)); }

section "setup: Debian packages and .venv"
bash scripts/setup.sh

command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found (install the Rust toolchain, see rust-version in Cargo.toml)"; exit 1; }

section "cargo build --workspace"
cargo build --workspace

section "cargo test --workspace"
cargo test --workspace

section "end-to-end: pytest tests/e2e against target/debug/strata"
export STRATA_E2E_TARGET=strata
export STRATA_BIN="$PWD/target/debug/strata"
set +e
timeout -k 30 35m .venv/bin/pytest tests/e2e
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests: that is a failure"
  exit 1
elif [[ $rc -ne 0 ]]; then
  echo "test.sh: end-to-end tests failed (pytest exit $rc)"
  exit "$rc"
fi

section "all tests passed"
