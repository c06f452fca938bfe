#!/usr/bin/env bash
# A whole Strata cluster on 127.0.0.1, for trying cluster mode and for the cluster tests:
# three etcd members (the metadata tier), storage nodes (the first three also host the key
# service and the destruction log, both replicated) and S3 gateways, all with certificates from a fresh cluster CA (docs/cluster.md).
#
#   scripts/local-cluster.sh up DIR [--nodes N] [--gateways G] [--etcd E] [--disks D]
#   scripts/local-cluster.sh down DIR
#
# `up` writes DIR/cluster.env (shell-sourceable): STRATA_GATEWAYS (comma-separated URLs),
# STRATA_ACCESS_KEY / STRATA_SECRET_KEY (the admin user), STRATA_ETCD_URL, STRATA_KEY_SERVICE
# (the key replicas' addresses, comma-separated), STRATA_NODE_ARGS (a file: line i holds node
# i's arguments after `strata node`, to restart it),
# STRATA_NODE_PIDS / STRATA_ETCD_PIDS / STRATA_GATEWAY_PIDS (space-separated), and the log
# paths (STRATA_NODE_LOGS, STRATA_ETCD_LOGS, STRATA_GATEWAY_LOGS). `down` stops exactly those
# processes. The strata binary is $STRATA_BIN, else target/release/strata (built if missing).
# etcd is installed from Debian's etcd-server when missing (root, or sudo -n).
set -euo pipefail

usage() {
    sed -n '5,6p' "$0" | sed 's/^# *//' >&2
    exit 2
}

log() { echo "local-cluster: $*" >&2; }

[ $# -ge 2 ] || usage
verb=$1
dir=$2
shift 2

if [ "$verb" = down ]; then
    env_file="$dir/cluster.env"
    [ -f "$env_file" ] || { log "no $env_file: nothing to stop"; exit 0; }
    # shellcheck disable=SC1090
    . "$env_file"
    pids="$STRATA_GATEWAY_PIDS $STRATA_NODE_PIDS $STRATA_ETCD_PIDS"
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
        alive=0
        for p in $pids; do
            # A zombie (killed earlier, not yet reaped by whoever adopted it) is gone too.
            state=$(ps -o stat= -p "$p" 2>/dev/null || true)
            [ -n "$state" ] && [ "${state:0:1}" != Z ] && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    log "stopped ($pids)"
    exit 0
fi
[ "$verb" = up ] || usage

nodes=6
gateways=2
members=3
disks=1
while [ $# -gt 0 ]; do
    case $1 in
        --nodes) nodes=$2; shift 2 ;;
        --gateways) gateways=$2; shift 2 ;;
        --etcd) members=$2; shift 2 ;;
        --disks) disks=$2; shift 2 ;;
        *) usage ;;
    esac
done
# RS(k, m) over the nodes: one shard per node when there are at least six.
if [ "$nodes" -ge 6 ]; then k=4; m=2; elif [ "$nodes" -ge 3 ]; then k=2; m=1; else k=1; m=1; fi

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${STRATA_BIN:-$root/target/release/strata}
if [ ! -x "$bin" ]; then
    log "building $bin"
    (cd "$root" && cargo build --release --bin strata)
fi
etcd_bin=${STRATA_ETCD_BIN:-$(command -v etcd || true)}
if [ -z "$etcd_bin" ]; then
    log "installing etcd-server"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd="sudo -n"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y etcd-server >&2
    etcd_bin=$(command -v etcd)
fi

[ ! -e "$dir/cluster.env" ] || { log "$dir/cluster.env exists: run down first, or use a new DIR"; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Free ports, chosen by the kernel (then released; the window before our bind is small).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r -a ports <<<"$(free_ports $((members * 2 + nodes + gateways)))"
next_port=0
port() { echo "${ports[$next_port]}"; }

wait_for() { # what, deadline seconds, command...
    local what=$1 secs=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || { log "$what not ready within ${secs}s"; return 1; }
        sleep 0.1
    done
}

# ---- etcd ----------------------------------------------------------------------------------
etcd_flags=(--max-txn-ops=10240 --max-request-bytes=8388608 --quota-backend-bytes=8589934592
    --auto-compaction-retention=0 --heartbeat-interval=50 --election-timeout=500 --log-level=warn)
initial=""
clients=()
peers=()
for i in $(seq 0 $((members - 1))); do
    clients+=("$(port)"); next_port=$((next_port + 1))
    peers+=("$(port)"); next_port=$((next_port + 1))
    initial+="${initial:+,}e$i=http://127.0.0.1:${peers[$i]}"
done
etcd_pids=()
etcd_logs=()
token="strata-local-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
for i in $(seq 0 $((members - 1))); do
    mkdir -p "$dir/etcd"
    logf="$dir/etcd/e$i.log"
    setsid "$etcd_bin" --name="e$i" --data-dir="$dir/etcd/e$i" \
        --listen-client-urls="http://127.0.0.1:${clients[$i]}" \
        --advertise-client-urls="http://127.0.0.1:${clients[$i]}" \
        --listen-peer-urls="http://127.0.0.1:${peers[$i]}" \
        --initial-advertise-peer-urls="http://127.0.0.1:${peers[$i]}" \
        --initial-cluster="$initial" --initial-cluster-state=new \
        --initial-cluster-token="$token" "${etcd_flags[@]}" \
        </dev/null >"$logf" 2>&1 &
    etcd_pids+=($!)
    etcd_logs+=("$logf")
done
endpoints=""
for c in "${clients[@]}"; do endpoints+="${endpoints:+,}127.0.0.1:$c"; done
for c in "${clients[@]}"; do
    wait_for "etcd member 127.0.0.1:$c" 30 sh -c "curl -fsS http://127.0.0.1:$c/health | grep -q '\"health\":\"true\"'"
done
etcd_url="etcd://$endpoints/strata/"
log "etcd: $endpoints"

# ---- certificates and keys -----------------------------------------------------------------
"$bin" cluster init "$dir/ca" >/dev/null
mkdir -p "$dir/certs"
umask 077
head -c 32 /dev/urandom >"$dir/master.key"
admin_ak="AK$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)"
admin_sk="$(od -An -N30 -tx1 /dev/urandom | tr -d ' \n')"
umask 022

# ---- storage nodes -------------------------------------------------------------------------
node_pids=()
node_logs=()
node_args=()
key_service=""
: >"$dir/node-args"
for i in $(seq 1 "$nodes"); do
    p=$(port); next_port=$((next_port + 1))
    "$bin" cluster issue --ca "$dir/ca" --name "n$i" --out "$dir/certs/n$i" >/dev/null
    mkdir -p "$dir/nodes/n$i"
    extra=()
    # The key service on the first three nodes (replicas: any one may be lost).
    if [ "$i" -le 3 ]; then extra=(--key-service); key_service+="${key_service:+,}127.0.0.1:$p"; fi
    # Every replica of the cluster's destruction log signs with one key (docs/cluster.md): the
    # first key node creates it at its start, the others get a copy before theirs.
    if [ "$i" -ge 2 ] && [ "$i" -le 3 ]; then
        wait_for "destruction log key" 30 test -s "$dir/nodes/n1/destruction-log/log-key.pem"
        mkdir -p -m 700 "$dir/nodes/n$i/destruction-log"
        install -m 600 "$dir/nodes/n1/destruction-log/log-key.pem" "$dir/nodes/n$i/destruction-log/log-key.pem"
    fi
    logf="$dir/nodes/n$i.log"
    args=(--cluster "$dir/certs/n$i" --node-id "n$i" --data-dir "$dir/nodes/n$i"
        --listen "127.0.0.1:$p" --disks "$disks" "${extra[@]}")
    echo "${args[*]}" >>"$dir/node-args"
    setsid "$bin" node "${args[@]}" </dev/null >"$logf" 2>&1 &
    node_pids+=($!)
    node_logs+=("$logf")
    node_args+=(--node "127.0.0.1:$p")
done
for f in "${node_logs[@]}"; do
    wait_for "node ($f)" 30 grep -q 'ready on' "$f"
done
log "nodes: ${#node_pids[@]} (key service replicas on $key_service)"

# ---- gateways (one after the other: the first registers the nodes in the cluster map) -------
gateway_pids=()
gateway_logs=()
urls=""
for i in $(seq 1 "$gateways"); do
    p=$(port); next_port=$((next_port + 1))
    "$bin" cluster issue --ca "$dir/ca" --name "g$i" --out "$dir/certs/g$i" >/dev/null
    gdir="$dir/gateways/g$i"
    mkdir -p "$gdir"
    chmod 700 "$gdir"
    install -m 600 "$dir/master.key" "$gdir/master.key"
    logf="$dir/gateways/g$i.log"
    STRATA_ADMIN_ACCESS_KEY=$admin_ak STRATA_ADMIN_SECRET_KEY=$admin_sk \
        setsid "$bin" gateway --cluster "$dir/certs/g$i" "${node_args[@]}" \
        --key-service "$key_service" --meta "$etcd_url" --data-dir "$gdir" \
        --listen "127.0.0.1:$p" --data-shards "$k" --parity-shards "$m" \
        ${STRATA_GATEWAY_ARGS:-} </dev/null >"$logf" 2>&1 &
    gateway_pids+=($!)
    gateway_logs+=("$logf")
    wait_for "gateway g$i ($logf)" 60 grep -q '^strata: ready on' "$logf" || {
        tail -20 "$logf" >&2
        exit 1
    }
    urls+="${urls:+,}http://127.0.0.1:$p"
done

cat >"$dir/cluster.env" <<EOF
# Written by scripts/local-cluster.sh up; stop with: scripts/local-cluster.sh down $dir
STRATA_GATEWAYS=$urls
STRATA_ACCESS_KEY=$admin_ak
STRATA_SECRET_KEY=$admin_sk
STRATA_ETCD_URL=$etcd_url
STRATA_KEY_SERVICE=$key_service
STRATA_NODE_ARGS=$dir/node-args
STRATA_CLUSTER_CA=$dir/ca/ca.pem
STRATA_ETCD_PIDS="${etcd_pids[*]}"
STRATA_NODE_PIDS="${node_pids[*]}"
STRATA_GATEWAY_PIDS="${gateway_pids[*]}"
STRATA_ETCD_LOGS="${etcd_logs[*]}"
STRATA_NODE_LOGS="${node_logs[*]}"
STRATA_GATEWAY_LOGS="${gateway_logs[*]}"
EOF
chmod 600 "$dir/cluster.env"
log "gateways: $urls"
log "ready: . $dir/cluster.env"
