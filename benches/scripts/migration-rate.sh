#!/usr/bin/env bash
# Migration job rate and memory: starts two `strata serve` on 127.0.0.1 (SOURCE and DEST),
# writes N objects of SIZE into SOURCE with strata-bench, then runs `strata admin migration start`
# on DEST and times it until DONE (bounded: 30 minutes). Prints objects/s, MiB/s and DEST's
# resident memory (VmRSS before, VmHWM peak after), and checks every object was copied.
#
#   benches/scripts/migration-rate.sh STRATA_BIN STRATA_BENCH_BIN [N] [SIZE] [CONCURRENCY]
#
# N defaults to 100000, SIZE to 1KiB, CONCURRENCY to 32. Loopback only.
set -euo pipefail
STRATA=${1:?strata binary}
BENCH=${2:?strata-bench binary}
N=${3:-100000}
SIZE=${4:-1KiB}
CONC=${5:-32}
WORK=$(mktemp -d)
AK=BENCHACCESSKEY000001
SK=bench-secret-key-000000000000000000000001
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_server() {
  local name=$1 addr=$2
  mkdir -p "$WORK/$name"
  head -c 32 /dev/urandom > "$WORK/$name/master.key"
  chmod 600 "$WORK/$name/master.key"
  env -u STRATA_MASTER_KEY STRATA_ADMIN_ACCESS_KEY=$AK STRATA_ADMIN_SECRET_KEY=$SK \
    STRATA_LOG=warn "$STRATA" serve --data-dir "$WORK/$name" --listen "$addr" > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 300); do grep -q "ready on" "$WORK/$name.log" && break; sleep 0.1; done
}
SRC=127.0.0.1:$(port)
DST=127.0.0.1:$(port)
start_server src "$SRC"
start_server dst "$DST"
DST_PID=${PIDS[1]}
"$BENCH" --endpoint "http://$SRC" --access-key $AK --secret-key $SK --bucket src --create-bucket \
  --op put --size "$SIZE" --objects "$N" --count "$N" --concurrency 32 --payload unsigned \
  > "$WORK/seed" 2>&1
admin=("$STRATA" admin --endpoint "http://$DST" --access-key $AK --secret-key $SK)
"$BENCH" --endpoint "http://$DST" --access-key $AK --secret-key $SK --bucket dst --create-bucket \
  --op put --size 1KiB --count 1 --concurrency 1 --prefix warm/ > /dev/null 2>&1
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$DST_PID/status"; }
rss_before=$(rss VmRSS)
start=$(date +%s.%N)
STRATA_SOURCE_SECRET_KEY=$SK "${admin[@]}" --json migration start bench \
  --source-endpoint "http://$SRC" --source-access-key $AK --source-bucket src --bucket dst \
  --concurrency "$CONC" > /dev/null
deadline=$(( $(date +%s) + 1800 ))
while :; do
  st=$("${admin[@]}" --json migration status bench)
  state=$(echo "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  [ "$state" = DONE ] || [ "$state" = ERROR ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { echo "still $state after 30 minutes"; exit 1; }
  sleep 1
done
end=$(date +%s.%N)
echo "$st" | python3 -c "
import json,sys
s=json.load(sys.stdin); n=$N; secs=$end-$start
assert s['state']=='DONE', s
assert s['objects_copied']==n and s['objects_failed']==0, s
print(f'objects: {n} of $SIZE, concurrency $CONC')
print(f'elapsed: {secs:.1f} s, {n/secs:.0f} objects/s, {s[\"bytes_copied\"]/secs/1048576:.2f} MiB/s')
"
echo "dest RSS before the job: $((rss_before / 1024)) MiB; peak (VmHWM) after: $(( $(rss VmHWM) / 1024 )) MiB"
