#!/usr/bin/env bash
# tools/scaleout-test.sh: two pear-server instances behind HAProxy on loopback.
#
#   tools/scaleout-test.sh
#
# Installs haproxy with apt when missing, builds the release binaries, starts
# two instances (protocol ports 19091/19092, metrics 19191/19192) and HAProxy
# (port 19090) with deploy/haproxy.cfg, sends requests through HAProxy and
# shows they are spread over both instances (each instance's 0x40 counters),
# kills one instance, and shows new requests through HAProxy still succeed.
# Every process it starts is stopped by pid on exit. Not run by cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d /tmp/pear-scaleout.XXXXXX)
PIDS=()
log() { printf '[scaleout %s] %s\n' "$(date +%T)" "$*" >&2; }
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v haproxy >/dev/null 2>&1; then
    log "installing haproxy"
    apt-get install -y haproxy >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y haproxy >/dev/null
    }
fi
haproxy -c -q -f deploy/haproxy.cfg
log "building release binaries"
cargo build --release --bins >&2
SERVER=$ROOT/target/release/pear-server
CLIENT=$ROOT/target/release/pear-client

# start_instance N: pear-server N on port 1909N, metrics on 1919N; sets PID_N.
start_instance() {
    local n=$1 dir=$WORK/pear$1
    mkdir -p "$dir"
    sed -e "s#\"\.\./#\"$ROOT/#g" \
        -e "s#^\(  file:\).*#\1 \"$dir/server.log\"#" \
        -e "s#^\(  listen:\).*#\1 \"127.0.0.1:1919$n\"#" \
        config/server_config.yaml >"$dir/server_config.yaml"
    "$SERVER" --config "$dir/server_config.yaml" --host 127.0.0.1 --port "1909$n" \
        >"$dir/out" 2>"$dir/err" &
    eval "PID_$n=$!"
    PIDS+=("$!")
    for _ in $(seq 100); do
        grep -q '^listening on' "$dir/out" && return 0
        sleep 0.1
    done
    log "instance $n did not start"; cat "$dir/err" >&2; exit 1
}

# served N: requests_served of instance N (0x40, straight to the instance).
served() {
    "$CLIENT" --addr "127.0.0.1:1909$1" --json status |
        sed -n 's/.*"requests_served":\([0-9]*\).*/\1/p'
}

start_instance 1
start_instance 2
haproxy -f deploy/haproxy.cfg -db >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
# Wait until HAProxy answers and has seen both backends healthy (rise 2 x 1 s).
sleep 3
kill -0 "$HAPROXY_PID" 2>/dev/null || { log "haproxy did not start"; cat "$WORK/haproxy.log" >&2; exit 1; }

before1=$(served 1); before2=$(served 2)
N=40
ok=0
for _ in $(seq $N); do
    # One connection per request: HAProxy balances connections.
    "$CLIENT" --addr 127.0.0.1:19090 model >/dev/null && ok=$((ok + 1))
done
after1=$(served 1); after2=$(served 2)
# Each `served` call itself is one request on that instance.
d1=$((after1 - before1 - 1)); d2=$((after2 - before2 - 1))
log "through haproxy: $ok/$N answered; instance 1 served $d1, instance 2 served $d2"
[ "$ok" -eq "$N" ] || { log "FAIL: not every request was answered"; exit 1; }
[ "$d1" -gt 0 ] && [ "$d2" -gt 0 ] || { log "FAIL: requests not spread over both"; exit 1; }

log "killing instance 2 (SIGKILL, no drain)"
kill -9 "$PID_2"
wait "$PID_2" 2>/dev/null || true
ok=0
for _ in $(seq $N); do
    "$CLIENT" --addr 127.0.0.1:19090 model >/dev/null && ok=$((ok + 1))
done
log "after the kill, right away: $ok/$N answered (redispatch covers the dead backend)"
sleep 3   # fall 2 x 1 s: HAProxy marks instance 2 down
before1=$(served 1)
ok=0
for _ in $(seq $N); do
    "$CLIENT" --addr 127.0.0.1:19090 model >/dev/null && ok=$((ok + 1))
done
d1=$(($(served 1) - before1 - 1))
log "after health checks marked it down: $ok/$N answered; instance 1 served $d1"
[ "$ok" -eq "$N" ] || { log "FAIL: requests failed with one instance down"; exit 1; }
grep -E 'pear2 is DOWN|Server pear_servers/pear2' "$WORK/haproxy.log" | head -n2 >&2 || true
log "PASS"
