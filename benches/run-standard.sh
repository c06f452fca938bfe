#!/usr/bin/env bash
# The standard benchmark run of issue 15: every workload of docs/benchmarks.md's standard table
# with the repository's load generator (strata-bench), against any S3 endpoint on this machine.
#
#   benches/run-standard.sh ENDPOINT ACCESS_KEY SECRET_KEY [options]
#
# options:
#   --server-pid PID     report the server's CPU per operation (utime+stime from /proc/PID/stat
#                        over each measured phase; the server must run on this machine)
#   --out DIR            where results.md and results.jsonl go (default: bench-results/DATE)
#   --duration 20s       measured time per workload (each also has 3 s of warm-up)
#   --list-objects N     objects in the LIST workload's bucket (default 1000000; preparing them is
#                        the long part of the run: about N / PUT-rate seconds)
#   --only a,b           run only these workloads (names below)
#   --bench PATH         strata-bench binary (default: build target/release/strata-bench)
#
# Workloads (name: what), as issue 15 states them:
#   put-4k   4 KiB PUT, concurrency 16          get-4k   4 KiB GET, concurrency 16
#   put-1m   1 MiB PUT, concurrency 8           get-1m   1 MiB GET, concurrency 8
#   list     ListObjectsV2 pages of 1000 keys, concurrency 4, in a bucket of --list-objects
#            objects, while a 4 KiB PUT load (concurrency 16) runs into the same bucket
#   mixed    70% GET, 20% PUT, 5% LIST, 5% DELETE, sizes log-uniform 4 KiB..1 MiB, concurrency 16
#
# Every GET is verified by strata-bench (BLAKE3 of what was written). The run writes a Markdown
# table (results.md) and one JSON line per workload (results.jsonl: strata-bench's own JSON plus
# "workload"). Exit code 1 when any workload had errors. Loopback endpoints only (strata-bench
# refuses others). Bounded: each workload ends at its duration; preparation is capped at 2 hours.
set -euo pipefail

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 3 ] || usage
ENDPOINT=$1 AK=$2 SK=$3
shift 3
PID="" OUT="" DURATION=20s LIST_OBJECTS=1000000 ONLY="" BENCH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --server-pid) PID=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --list-objects) LIST_OBJECTS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --bench) BENCH=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run-standard: unknown option $1" >&2; usage ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$BENCH" ]; then
  (cd "$ROOT" && cargo build --release --bin strata-bench >&2)
  BENCH="${CARGO_TARGET_DIR:-$ROOT/target}/release/strata-bench"
fi
[ -x "$BENCH" ] || { echo "run-standard: no strata-bench at $BENCH" >&2; exit 2; }
if [ -n "$PID" ] && [ ! -r "/proc/$PID/stat" ]; then
  echo "run-standard: no process $PID on this machine" >&2; exit 2
fi
OUT=${OUT:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
export STRATA_BENCH_ENDPOINT=$ENDPOINT STRATA_BENCH_ACCESS_KEY=$AK STRATA_BENCH_SECRET_KEY=$SK
cpu=()
[ -n "$PID" ] && cpu=(--server-pid "$PID")
failed=0

wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# run NAME BUCKET ARGS...: one strata-bench workload, its JSON line tagged with NAME.
run() {
  local name=$1 bucket=$2
  shift 2
  wanted "$name" || return 0
  echo "== $name" >&2
  local log="$OUT/$name.log" rc=0
  timeout 7200 "$BENCH" --bucket "$bucket" --create-bucket --warmup 3s --duration "$DURATION" \
    --cleanup --json "${cpu[@]}" "$@" >"$log" 2>"$OUT/$name.stderr" || rc=$?
  grep -v '^{' "$log" >&2 || true
  local line
  line=$(grep '^{' "$log" | tail -1 || true)
  if [ -z "$line" ]; then
    echo "run-standard: $name produced no result (exit $rc), see $OUT/$name.stderr" >&2
    tail -5 "$OUT/$name.stderr" >&2 || true
    failed=1
    return 0
  fi
  [ "$rc" -eq 0 ] || failed=1
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["workload"]=sys.argv[1]; print(json.dumps(d))' \
    "$name" "$line" >>"$OUT/results.jsonl"
}

run put-4k std-put-4k --op put --size 4KiB --concurrency 16
run get-4k std-get-4k --op get --size 4KiB --concurrency 16 --objects 2000
run put-1m std-put-1m --op put --size 1MiB --concurrency 8
run get-1m std-get-1m --op get --size 1MiB --concurrency 8 --objects 400

if wanted list; then
  # The PUT load starts once the LIST run has prepared its objects (its stderr says
  # "prepared ..."), and outlasts the measured LIST phase.
  (
    for _ in $(seq 1 72000); do
      grep -q '^prepared' "$OUT/list.stderr" 2>/dev/null && break
      [ -e "$OUT/list.done" ] && exit 0
      sleep 0.1
    done
    secs=${DURATION%s}
    timeout 7200 "$BENCH" --bucket std-list --op put --size 4KiB --concurrency 16 \
      --duration "$((secs + 10))s" --cleanup --json >"$OUT/list-put-load.log" 2>&1 || true
  ) &
  load=$!
  run list std-list --op list --size 1KiB --objects "$LIST_OBJECTS" --concurrency 4 \
    --list-max-keys 1000
  touch "$OUT/list.done"
  wait "$load" || true
fi

run mixed std-mixed --op mixed --mix get=70,put=20,list=5,delete=5 --size log:4KiB..1MiB \
  --objects 2000 --concurrency 16

python3 - "$OUT/results.jsonl" "$ENDPOINT" >"$OUT/results.md" <<'PY'
import json, sys, platform, os, datetime
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
print(f"Standard run against {sys.argv[2]}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
      f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}.\n")
print("| workload | op | ops/s | MiB/s | p50 ms | p90 ms | p99 ms | errors | server CPU/op | server CPU/MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    rep = r["report"]
    sc = r.get("server_cpu") or {}
    per_op = f'{sc["cpu_us_per_op"]:.0f} µs' if sc else "—"
    per_mib = f'{sc["cpu_ms_per_mib"]:.2f} ms' if sc and rep["total"]["bytes"] else "—"
    ops = rep["ops"]
    single = len(ops) == 1
    for i, (name, op) in enumerate(sorted(ops.items())):
        l = op["latency"]
        print(f'| {r["workload"] if i == 0 else ""} | {name} | {op["ops_per_s"]:.1f} | {op["mib_per_s"]:.2f} | '
              f'{l["p50_ms"]:.2f} | {l["p90_ms"]:.2f} | {l["p99_ms"]:.2f} | {op["errors"]} | '
              f'{per_op if single else ""} | {per_mib if single else ""} |')
    if not single:
        # The server's CPU cannot be split by operation: it goes on the total row.
        t = rep["total"]; l = t["latency"]
        print(f'| | total | {t["ops_per_s"]:.1f} | {t["mib_per_s"]:.2f} | {l["p50_ms"]:.2f} | {l["p90_ms"]:.2f} | '
              f'{l["p99_ms"]:.2f} | {t["errors"]} | {per_op} | {per_mib} |')
print("\nServer CPU is utime+stime of the server process over the measured phase divided by its operations "
      "(for `list`, the concurrent 4 KiB PUT load's CPU is included).")
PY
cat "$OUT/results.md"
echo "run-standard: results in $OUT/results.md and $OUT/results.jsonl" >&2
exit "$failed"
