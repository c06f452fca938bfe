#!/usr/bin/env bash
# The run command: build and start `strata serve` on its embedded default (127.0.0.1:9000, data in
# ./data, admin credentials printed on first start). Arguments go to `strata serve`.
# On a fresh Debian machine it first installs what the RocksDB build needs (clang, libclang).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! { command -v clang >/dev/null 2>&1 && ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; }; then
  echo "run: installing build prerequisites (clang, libclang-dev) for RocksDB"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q </dev/null
  "${SUDO[@]}" apt-get install -y -q clang libclang-dev build-essential </dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "run: cargo not found (install the Rust toolchain)"; exit 1; }
exec cargo run --release --bin strata -- serve "$@"
