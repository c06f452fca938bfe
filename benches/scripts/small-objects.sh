#!/usr/bin/env bash
# 4 KiB PUT and GET (issue 15, "Small objects"): ops/s and the server's CPU per operation.
# Starts `strata serve` on a fresh data dir (extra serve flags after the binaries), runs
# strata-bench PUT then GET (1000 objects preloaded), and reads the server's utime + stime from
# /proc/PID/stat around each measured phase (the GET preload is excluded: the CPU is sampled
# once strata-bench prints that its objects are prepared).
#
#   benches/scripts/small-objects.sh STRATA_BIN STRATA_BENCH_BIN [serve flags...]
#
# Environment: SIZE (4KiB), CONC (16), SECS (20), OPS (put,get), KEEP=1 keeps the data dir
# (its path is printed) for du. Loopback only. Bounded in time.
set -euo pipefail
STRATA=${1:?strata binary}
BENCH=${2:?strata-bench binary}
shift 2
SIZE=${SIZE:-4KiB}
CONC=${CONC:-16}
SECS=${SECS:-20}
OPS=${OPS:-put,get}
WORK=$(mktemp -d /tmp/strata-small.XXXXXX)
PORT=$((20000 + RANDOM % 20000))
AK=BENCHACCESSKEY000001
SK=bench-secret-key-000000000000000000000001
TCK=$(getconf CLK_TCK)
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "data dir kept: $WORK/data"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
STRATA_ADMIN_ACCESS_KEY=$AK STRATA_ADMIN_SECRET_KEY=$SK STRATA_LOG=warn \
  timeout $((SECS * 4 + 300)) "$STRATA" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" "$@" \
  >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 150); do grep -q "ready on" "$WORK/server.log" && break; sleep 0.2; done
grep -q "ready on" "$WORK/server.log" || { cat "$WORK/server.log"; exit 1; }
SPID=$(pgrep -P "$PID" | head -1)  # the server under `timeout`
echo "server pid $SPID"
# utime + stime of the server, in clock ticks (fields 14 and 15 after the command name).
cpu() { sed 's/^.*) //' "/proc/$SPID/stat" | awk '{print $12 + $13}'; }
common=(--endpoint "http://127.0.0.1:$PORT" --access-key "$AK" --secret-key "$SK" --create-bucket
  --bucket bench --size "$SIZE" --concurrency "$CONC" --duration "${SECS}s" --warmup 0s --json)
run() { # op, extra args...
  local op=$1; shift
  : >"$WORK/$op.err"
  timeout $((SECS + 240)) "$BENCH" "${common[@]}" --op "$op" "$@" >"$WORK/$op.out" 2>"$WORK/$op.err" &
  local B=$!
  if [ "$op" = get ]; then
    for _ in $(seq 1 4000); do grep -q '^prepared' "$WORK/$op.err" && break; sleep 0.05; done
  fi
  local c0; c0=$(cpu)
  wait $B || true
  local c1; c1=$(cpu)
  local line; line=$(grep '^{' "$WORK/$op.out" | tail -1)
  python3 - "$op" "$c0" "$c1" "$TCK" "$line" <<'EOF'
import json, sys
op, c0, c1, tck, line = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
j = json.loads(line)["report"]
tot = j["total"]
n, errs, secs = tot["ok"], tot["errors"], j["seconds"]
cpu_s = (c1 - c0) / tck
lat = tot["latency"]
print(f"{op}: {n} ops in {secs:.1f}s = {n/secs:.0f} ops/s, p50 {lat['p50_ms']} ms, "
      f"p99 {lat['p99_ms']} ms, errors {errs}, server CPU {cpu_s:.2f}s = {cpu_s/max(n,1)*1e6:.0f} us/op")
EOF
}
IFS=, read -ra ops <<<"$OPS"
for op in "${ops[@]}"; do
  case $op in
    put) run put ;;
    get) run get --objects 1000 ;;
  esac
done
echo "loadavg: $(cat /proc/loadavg)"
