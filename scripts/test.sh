#!/usr/bin/env bash
# The project's test command (used by CI via .ci/run):
#   1. install the tools the tests need (scripts/setup.sh; idempotent and quick when done)
#   2. cargo build --workspace          (dev profile)
#   3. cargo test --workspace
#   3b. the metadata semantics/property tests again, on a real etcd (STRATA_TEST_META=etcd)
#   4. .venv/bin/pytest tests/e2e      (real strata binary from target/debug, real S3 clients)
#   4b. the versioning and boto3 suites again with the metadata tier on etcd (STRATA_E2E_META=etcd)
#   4c. the real-client suites (boto3, AWS CLI, rclone, s3cmd, restic) against a local cluster
#       (STRATA_E2E_CLUSTER=1: etcd, six storage nodes, two gateways)
# Exits non-zero on any failure; pytest finding no tests (exit 5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
section() { printf '\n======== %s  [+%ds] ========\n' "$*" $((SECONDS - START)); }

section "setup: Debian packages and .venv"
bash scripts/setup.sh

command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found (install the Rust toolchain, see rust-version in Cargo.toml)"; exit 1; }

# In CI, keep the build outside the fresh clone so that later runs on the same machine reuse it
# (a fresh machine simply builds everything). Always whole-workspace builds: building one crate
# with -p changes feature unification and recompiles RocksDB.
if [[ "${CI:-}" == "true" && -z "${CARGO_TARGET_DIR:-}" ]]; then
  export CARGO_TARGET_DIR="$HOME/.cache/strata-ci/target"
  mkdir -p "$CARGO_TARGET_DIR"
fi
# CI builds once per commit: incremental state would only cost disk (about 8 GiB for this
# workspace), and a fuller disk is what the stores' high-water mark refuses writes on.
if [[ "${CI:-}" == "true" ]]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

section "cargo build --workspace (target: $TARGET_DIR)"
cargo build --workspace

section "cargo test --workspace"
cargo test --workspace

section "metadata tests on etcd (STRATA_TEST_META=etcd)"
STRATA_TEST_META=etcd cargo test --workspace --test semantics --test listing_model \
  --test listing_seek --test intents --test usage --test layouts --test archive --test keyrefs

section "end-to-end: pytest tests/e2e against $TARGET_DIR/debug/strata"
export STRATA_E2E_TARGET=strata
export STRATA_BIN="$TARGET_DIR/debug/strata"
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

section "end-to-end on etcd: versioning and boto3 suites with --meta etcd://"
set +e
STRATA_E2E_META=etcd timeout -k 30 10m .venv/bin/pytest tests/e2e/test_versioning.py tests/e2e/test_boto3.py
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "test.sh: end-to-end tests on etcd failed (pytest exit $rc)"
  exit 1
fi

section "end-to-end on a cluster: real-client suites against gateways + storage nodes + etcd"
set +e
STRATA_E2E_CLUSTER=1 timeout -k 30 15m .venv/bin/pytest tests/e2e/test_boto3.py tests/e2e/test_awscli.py \
  tests/e2e/test_rclone.py tests/e2e/test_s3cmd.py tests/e2e/test_restic.py
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  echo "test.sh: end-to-end tests on a cluster failed (pytest exit $rc)"
  exit 1
fi

section "all tests passed"
