#!/usr/bin/env bash
# Install everything the test suite needs, idempotently.
#   - Debian packages: clang/libclang (RocksDB bindgen), the real S3 clients restic, rclone, s3cmd,
#     strace (test_durability.py watches the server's fsyncs with it), chromium (test_cors.py
#     drives a real headless browser) and chromium-driver (test_console.py drives the console
#     with Selenium through it; no browser is ever downloaded), etcd-server (the metadata tier of cluster mode: its tests
#     start real members, /usr/bin/etcd) and protobuf-compiler (protoc: the etcd-client crate
#     compiles etcd's gRPC protos at build time) and prometheus (promtool checks the alerting
#     rules in docs/alerts/, test_metrics.py).
#   - A project-local virtualenv .venv with boto3, awscli, pytest, pytest-timeout, cryptography
#     (test_keys.py unwraps the key store with the test's own master key, as an attacker would)
#     and selenium (test_console.py; it talks to Debian's chromedriver, nothing else), requests
#     (test_post_object.py posts HTML forms with it, as the boto3 docs for presigned POSTs do).
# Fast when everything is already there: apt is skipped when every package is installed, pip when
# every module imports. Runs unattended (no stdin, CI=true) as root; uses sudo if not root.
# STRATA_E2E_TARGET=moto additionally installs moto[server] (the reference S3 server, see docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libclang-dev clang restic rclone s3cmd strace chromium chromium-driver etcd-server protobuf-compiler prometheus build-essential pkg-config python3 python3-venv)
PY_PACKAGES=(boto3 awscli pytest pytest-timeout cryptography selenium requests)
PY_MODULES="boto3, botocore, awscli, pytest, pytest_timeout, cryptography, selenium, requests"

log() { printf 'setup: %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# Clients installed another way (e.g. a newer release in /usr/local/bin) also count as present.
still=()
for p in "${missing[@]}"; do
  case "$p" in
    restic|rclone|s3cmd) command -v "$p" >/dev/null 2>&1 || still+=("$p") ;;
    python3) command -v python3 >/dev/null 2>&1 || still+=("$p") ;;
    python3-venv) python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || still+=("$p") ;;
    build-essential) { command -v cc && command -v c++ && command -v make; } >/dev/null 2>&1 || still+=("$p") ;;
    pkg-config) command -v pkg-config >/dev/null 2>&1 || still+=("$p") ;;
    *) still+=("$p") ;;
  esac
done
missing=("${still[@]}")

if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q </dev/null
  "${SUDO[@]}" apt-get install -y -q "${APT_PACKAGES[@]}" </dev/null
else
  log "Debian packages present (apt skipped)"
fi

for tool in restic rclone s3cmd clang strace chromium chromedriver etcd protoc promtool; do
  command -v "$tool" >/dev/null 2>&1 || { log "ERROR: $tool still missing after install"; exit 1; }
done

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'pass' >/dev/null 2>&1; then
  log "creating virtualenv .venv"
  rm -rf .venv
  python3 -m venv .venv
fi

if [[ "${STRATA_E2E_TARGET:-strata}" == moto ]]; then
  PY_PACKAGES+=("moto[server]")
  PY_MODULES+=", moto, flask"
fi

if .venv/bin/python -c "import ${PY_MODULES}" >/dev/null 2>&1 && [[ -x .venv/bin/aws && -x .venv/bin/pytest ]]; then
  log "python packages present in .venv (pip skipped)"
else
  log "installing python packages into .venv: ${PY_PACKAGES[*]}"
  .venv/bin/pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}" </dev/null
fi

log "versions: $(.venv/bin/python -c 'import boto3,botocore; print("boto3", boto3.__version__, "botocore", botocore.__version__)'); $(.venv/bin/aws --version 2>&1); $(rclone version 2>/dev/null | head -n1); $(s3cmd --version 2>&1); $(restic version 2>&1)"
