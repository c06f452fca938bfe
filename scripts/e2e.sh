#!/usr/bin/env bash
# Run (part of) the end-to-end suite only. Arguments go to pytest.
#   scripts/e2e.sh                                   # whole suite against target/debug/strata
#   scripts/e2e.sh tests/e2e/test_boto3.py -k range  # one file / one test
#   STRATA_E2E_TARGET=moto scripts/e2e.sh            # validate the tests against moto_server
# Builds the binary first (cargo build --bin strata) unless STRATA_BIN is set or target is moto.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${STRATA_E2E_TARGET:-strata}"
STRATA_E2E_TARGET="$TARGET" bash scripts/setup.sh
if [[ "$TARGET" == strata && -z "${STRATA_BIN:-}" ]]; then
  cargo build --bin strata
  export STRATA_BIN="$PWD/target/debug/strata"
fi
export STRATA_E2E_TARGET="$TARGET"
set +e
.venv/bin/pytest "${@:-tests/e2e}"
rc=$?
set -e
[[ $rc -eq 5 ]] && { echo "e2e.sh: no tests collected"; exit 1; }
exit $rc
