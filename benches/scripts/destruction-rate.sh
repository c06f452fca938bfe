#!/usr/bin/env bash
# How fast the GC destroys deleted versions (key slot overwritten, shards removed, read verified
# to fail, destruction record appended). Starts `strata serve` on a fresh data dir with a 0 ms
# GC grace, writes and deletes N small objects with strata-bench, then times how long the `gc`
# worker takes to finish them (bounded: 5 minutes).
#
#   benches/scripts/destruction-rate.sh STRATA_BIN STRATA_BENCH_BIN [N]
#
# N defaults to 2000. Loopback only.
set -euo pipefail
STRATA=${1:?strata binary}
BENCH=${2:?strata-bench binary}
N=${3:-2000}
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
AK=BENCHACCESSKEY000001
SK=bench-secret-key-000000000000000000000001
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/data"
# The benchmark's own master key, never an operator's.
head -c 32 /dev/urandom > "$WORK/data/master.key"
chmod 600 "$WORK/data/master.key"
env -u STRATA_MASTER_KEY STRATA_ADMIN_ACCESS_KEY=$AK STRATA_ADMIN_SECRET_KEY=$SK \
  "$STRATA" serve --data-dir "$WORK/data" --listen 127.0.0.1:$PORT --gc-grace-ms 0 \
  > "$WORK/log" 2>&1 &
PID=$!
for _ in $(seq 200); do grep -q "ready on" "$WORK/log" && break; sleep 0.1; done
common=(--endpoint http://127.0.0.1:$PORT --access-key $AK --secret-key $SK)
"$BENCH" "${common[@]}" --bucket bench-destruction --create-bucket --op delete --size 4KiB \
  --objects "$N" --concurrency 16 --count "$N" > "$WORK/bench" 2>&1
start=$(date +%s.%N)
done_=0
for _ in $(seq 1200); do
  done_=$("$STRATA" admin "${common[@]}" worker list | python3 -c \
    'import json,sys; print(next(w for w in json.load(sys.stdin) if w["name"]=="gc")["status"]["items_done"])')
  [ "$done_" -ge "$N" ] && break
  sleep 0.25
done
end=$(date +%s.%N)
python3 -c "t=$end-$start; print(f'{$done_} items destroyed in {t:.1f} s ({$done_/t:.0f}/s)')"
