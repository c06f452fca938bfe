#!/usr/bin/env bash
# 4 KiB GET latency while PUTs load the same server: does a PUT's blocking work (metadata
# commits, fsyncs, body hashing) delay GETs? Starts `strata serve` on a fresh data dir, preloads
# 1000 small objects, then runs a GET load and a concurrent PUT load side by side and prints the
# GET run's figures (and the PUT run's), as strata-bench reports them.
#
#   benches/scripts/get-p99-under-put.sh STRATA_BIN STRATA_BENCH_BIN [PUT_SIZE] [SECONDS]
#
# PUT_SIZE defaults to 1MiB (8 writers), SECONDS to 30. Loopback only. Bounded in time.
set -euo pipefail
STRATA=${1:?strata binary}
BENCH=${2:?strata-bench binary}
PUT_SIZE=${3:-1MiB}
SECS=${4:-30}
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
AK=BENCHACCESSKEY000001
SK=bench-secret-key-000000000000000000000001
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
STRATA_ADMIN_ACCESS_KEY=$AK STRATA_ADMIN_SECRET_KEY=$SK STRATA_LOG=warn \
  timeout $((SECS + 120)) "$STRATA" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
  >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do grep -q "ready on" "$WORK/server.log" && break; sleep 0.2; done
grep -q "ready on" "$WORK/server.log" || { cat "$WORK/server.log"; exit 1; }
common=(--endpoint "http://127.0.0.1:$PORT" --access-key "$AK" --secret-key "$SK" --create-bucket)
# The PUT load runs first and outlasts the GET run (its preload of 1000 objects, then SECS
# measured), so every measured GET overlaps it.
timeout $((SECS + 120)) "$BENCH" "${common[@]}" --bucket puts --op put --size "$PUT_SIZE" \
  --concurrency 8 --duration "$((SECS + 40))s" --json >"$WORK/put.out" 2>&1 &
PUT=$!
sleep 3
timeout $((SECS + 90)) "$BENCH" "${common[@]}" --bucket gets --op get --size 4KiB --objects 1000 \
  --concurrency 8 --duration "${SECS}s" --json >"$WORK/get.out" 2>&1
wait $PUT
echo "== GET 4KiB c8 (under PUT $PUT_SIZE c8 load)"; grep -v '^{' "$WORK/get.out" | tail -4
echo "== PUT $PUT_SIZE c8"; grep -v '^{' "$WORK/put.out" | tail -4
echo "== json"; grep '^{' "$WORK/get.out" "$WORK/put.out" || true
