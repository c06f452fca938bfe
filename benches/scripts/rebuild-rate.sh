#!/usr/bin/env bash
# Rebuild rate of a cluster against the disks' read bandwidth. Starts, on 127.0.0.1, a cluster
# CA, six `strata node --cluster` processes (one disk each) and a `strata gateway --cluster`
# (RS(4,2), 4 MiB chunks), writes MIB MiB with strata-bench, then kill -9s node n2, wipes its
# data dir and starts it again empty with the same node id (the documented operator step). The
# rebuild job then walks every version and rewrites every shard n2 held; the script times it from
# the restart until no disk is pending, and compares with `dd iflag=direct` reading a file of
# the same filesystem (bounded: 10 minutes).
#
#   benches/scripts/rebuild-rate.sh STRATA_BIN STRATA_BENCH_BIN [MIB] [PRIORITY]
#
# MIB defaults to 512, PRIORITY (low|normal|high) to high. Loopback only.
set -euo pipefail
STRATA=${1:?strata binary}
BENCH=${2:?strata-bench binary}
MIB=${3:-512}
PRIORITY=${4:-high}
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

"$STRATA" cluster init "$WORK/ca" > /dev/null
NODES=()
declare -A NODE_PID
start_node() {
  local i=$1
  "$STRATA" node --data-dir "$WORK/data-n$i" --listen "${NODES[$i]}" --disks 1 \
    --cluster "$WORK/certs/n$i" --node-id "n$i" > "$WORK/n$i.log" 2>&1 &
  NODE_PID[$i]=$!
  PIDS+=($!)
  for _ in $(seq 100); do grep -q "ready on" "$WORK/n$i.log" && break; sleep 0.1; done
}
for i in 0 1 2 3 4 5; do
  NODES[$i]=127.0.0.1:$(port)
  "$STRATA" cluster issue --ca "$WORK/ca" --name "n$i" --out "$WORK/certs/n$i" > /dev/null
  start_node "$i"
done
"$STRATA" cluster issue --ca "$WORK/ca" --name gw --out "$WORK/certs/gw" > /dev/null
GW=127.0.0.1:$(port)
node_args=()
for n in "${NODES[@]}"; do node_args+=(--node "$n"); done
mkdir -p "$WORK/gw"
head -c 32 /dev/urandom > "$WORK/gw/master.key"
chmod 600 "$WORK/gw/master.key"
env -u STRATA_MASTER_KEY STRATA_ADMIN_ACCESS_KEY=$AK STRATA_ADMIN_SECRET_KEY=$SK \
  "$STRATA" gateway --data-dir "$WORK/gw" --listen "$GW" --cluster "$WORK/certs/gw" \
  "${node_args[@]}" --rebalance-rate 0 --rebuild-rate 1024 --rebuild-priority "$PRIORITY" \
  > "$WORK/gw.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do grep -q "ready on" "$WORK/gw.log" && break; sleep 0.1; done
common=(--endpoint "http://$GW" --access-key $AK --secret-key $SK)
OBJECTS=$((MIB / 4))
"$BENCH" "${common[@]}" --bucket bench-rebuild --create-bucket --op put --size 4MiB \
  --objects "$OBJECTS" --count "$OBJECTS" --concurrency 4 > "$WORK/bench" 2>&1

# The disks' read bandwidth: a file as large as what n2 holds, read with O_DIRECT (no cache).
held=$(du -sm "$WORK/data-n2" | cut -f1)
dd if=/dev/urandom of="$WORK/ddfile" bs=1M count="$held" status=none
sync
read_mibs=$(dd if="$WORK/ddfile" of=/dev/null bs=4M iflag=direct 2>&1 | python3 -c '
import re,sys; t=sys.stdin.read(); m=re.search(r"(\d+) bytes.* ([\d.]+) s,", t); print(f"{int(m.group(1))/float(m.group(2))/1048576:.0f}")')
rm -f "$WORK/ddfile"

status() { "$STRATA" admin "${common[@]}" --json rebuild status; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['status']['$1'])"; }
before=$(status | field shards_rebuilt)
kill -9 "${NODE_PID[2]}"
wait "${NODE_PID[2]}" 2>/dev/null || true
rm -rf "$WORK/data-n2"
start=$(date +%s.%N)
start_node 2
# Until the map has seen the new disk (or the rebuild already began), then until it is done.
for _ in $(seq 100); do
  status | python3 -c "import json,sys; s=json.load(sys.stdin)['status']; sys.exit(0 if s['disks_pending'] or s['shards_rebuilt'] > $before else 1)" && break
  sleep 0.1
done
for _ in $(seq 2400); do
  status | python3 -c 'import json,sys; s=json.load(sys.stdin)["status"]; sys.exit(0 if not s["disks_pending"] and s["degraded_chunks_pending"]==0 else 1)' && break
  sleep 0.1
done
end=$(date +%s.%N)
status > "$WORK/final.json"
# (the counters include nothing from before the kill: no shard needed rebuilding then)
python3 - "$WORK/final.json" "$start" "$end" "$read_mibs" "$held" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["status"]
t = float(sys.argv[3]) - float(sys.argv[2])
w, r = s["bytes_done"] / 1048576, s["bytes_read"] / 1048576
print(f"worker's own measured rate (bytes written per busy second): {s['rate_bytes_per_sec']/1048576:.0f} MiB/s")
print(f"rebuilt {s['shards_rebuilt']} shards ({w:.0f} MiB written, {r:.0f} MiB read from survivors) "
      f"in {t:.1f} s: {w/t:.0f} MiB/s written, {r/t:.0f} MiB/s read; "
      f"disk read bandwidth (dd iflag=direct, {sys.argv[5]} MiB) {sys.argv[4]} MiB/s")
EOF
