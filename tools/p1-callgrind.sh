#!/usr/bin/env bash
# tools/p1-callgrind.sh: user-space instructions per request on the P1 path, for
# pear-server (0x22) and redis-server (PING), counted by valgrind's callgrind.
#
#   tools/p1-callgrind.sh [PEAR_BINARY] [REQUESTS] [CONNS] [PIPELINE]
#
# PIPELINE (default 1) is the number of requests each connection keeps outstanding,
# for both servers.
# Instruction counts do not depend on what else the machine is doing, so this is the
# repeatable half of P1 (the other half, throughput, is tools/bench.sh and
# tools/p1-ab.sh). pear-server: only the reactor thread's loop is counted
# (--toggle-collect=Reactor::run; no worker runs on this path). redis-server: the
# counters are zeroed after warm-up and dumped after the measured requests; its
# serverCron is left out, because under valgrind it runs far more often per request
# than at full speed. The kernel's share (recv/send) is not in either figure.
# Never run by `cargo test` or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEAR=${1:-$ROOT/target/release/pear-server}
N=${2:-20000}
CONNS=${3:-64}
DEPTH=${4:-1}
BENCH=$ROOT/target/release/pear-bench
PORT=${CG_PORT:-29190}
REDIS_PORT=${CG_REDIS_PORT:-6398}
PING='{"cmd": 0x22, "request_data": null}'

. tools/lib.sh
need valgrind valgrind
need redis-server redis-server
[ -x "$BENCH" ] && [ -x "$PEAR" ] || cargo build --release --bins >&2

scratch_dir pear-cg

server_config "$WORK/cfg.yaml"
# total FILE [EXCLUDE_FN]: the program total of a callgrind dump, minus one function.
total() {
    local all ex=0
    all=$(callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
    if [ -n "${2:-}" ]; then
        ex=$(callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
            awk -v f="$2" '$0 ~ f { gsub(",", "", $1); print $1; exit }')
    fi
    echo $((all - ${ex:-0}))
}
run_bench() {
    "$BENCH" --conns "$CONNS" --pipeline "$DEPTH" --duration 600 --warmup 0 --max-requests "$N" "$@" 2>/dev/null |
        sed -n 's/.*"requests":\([0-9]*\).*/\1/p'
}

# pear-server
valgrind --tool=callgrind --callgrind-out-file="$WORK/pear.%p" --collect-atstart=no \
    --toggle-collect='pear_server::reactor::Reactor::run' \
    "$PEAR" --config "$WORK/cfg.yaml" --host 127.0.0.1 --port "$PORT" >"$WORK/pear.out" 2>&1 &
VP=$!
PIDS+=("$VP")
for _ in $(seq 600); do grep -q "^listening on" "$WORK/pear.out" && break; sleep 0.2; done
done_pear=$(run_bench --addr "127.0.0.1:$PORT" --payload "$PING")
kill -TERM "$VP"
wait "$VP" || true
pear_ir=$(total "$(ls "$WORK"/pear.* | head -n1)")

# redis-server
valgrind --tool=callgrind --callgrind-out-file="$WORK/redis.%p" \
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$WORK/redis.log" >/dev/null 2>&1 &
VR=$!
PIDS+=("$VR")
for _ in $(seq 100); do
    "$BENCH" --redis --addr "127.0.0.1:$REDIS_PORT" --conns 1 --duration 1 --warmup 0 \
        --max-requests 10 >/dev/null 2>&1 && break
    sleep 0.2
done
callgrind_control -z "$VR" >/dev/null
done_redis=$(run_bench --redis --addr "127.0.0.1:$REDIS_PORT")
callgrind_control -d "$VR" >/dev/null
redis_ir=$(total "$(ls "$WORK"/redis.*.1 | head -n1)" ':serverCron ')

awk -v p="$pear_ir" -v np="$done_pear" -v r="$redis_ir" -v nr="$done_redis" -v c="$CONNS" -v d="$DEPTH" 'BEGIN {
    printf "{\"conns\":%d,\"pipeline\":%d,\"pear_requests\":%d,\"pear_instr_per_req\":%.0f,\"redis_requests\":%d,\"redis_instr_per_req\":%.0f,\"pear_over_redis\":%.2f}\n",
        c, d, np, p / np, nr, r / nr, (p / np) / (r / nr) }'
