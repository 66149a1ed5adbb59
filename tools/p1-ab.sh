#!/usr/bin/env bash
# tools/p1-ab.sh: A/B of the P1 protocol path (0x22) for two pear-server binaries,
# with redis-server PING measured by the same client in the same run.
#
#   tools/p1-ab.sh OLD_BINARY NEW_BINARY [CONNS] [PIPELINE] [ROUNDS]
#
# Servers are pinned to CPU 0 and pear-bench to CPU 1, so the client and the server
# under test do not fight for one core; rounds alternate old / new / redis and the
# script prints every round plus the median of each ratio. Used for the before/after
# figures in commit messages. Never run by `cargo test` or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OLD=$1
NEW=$2
CONNS=${3:-64}
DEPTH=${4:-1}
ROUNDS=${5:-5}
DUR=${AB_DURATION:-3}
REDIS_PORT=${AB_REDIS_PORT:-6391}
BENCH=$ROOT/target/release/pear-bench
PING='{"cmd": 0x22, "request_data": null}'

. tools/lib.sh
scratch_dir pear-ab
command -v redis-server >/dev/null || apt-get install -y redis-server >/dev/null
[ -x "$BENCH" ] || cargo build --release --bin pear-bench >&2

server_config "$WORK/cfg.yaml"

# start NAME BINARY: pear-server on CPU 0; sets ADDR_<NAME>.
start() {
    taskset -c 0 "$2" --config "$WORK/cfg.yaml" --host 127.0.0.1 --port 0 >"$WORK/$1.out" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 300); do
        a=$(sed -n 's/^listening on //p' "$WORK/$1.out")
        if [ -n "$a" ]; then printf -v "ADDR_$1" '%s' "$a"; return; fi
        sleep 0.1
    done
    echo "$2 did not start" >&2; exit 1
}
start old "$OLD"
start new "$NEW"
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --protected-mode no --daemonize no --logfile "$WORK/redis.log" &
PIDS+=("$!")
sleep 0.5

rps() { sed -n 's/.*"rps":\([0-9.]*\).*/\1/p' | head -n1; }
bench() { taskset -c 1 "$BENCH" --conns "$CONNS" --pipeline "$DEPTH" --duration "$DUR" --warmup 1 "$@" 2>/dev/null | rps; }

echo "round old_rps new_rps redis_rps new/old old/redis new/redis"
for r in $(seq "$ROUNDS"); do
    o=$(bench --addr "$ADDR_old" --payload "$PING")
    n=$(bench --addr "$ADDR_new" --payload "$PING")
    d=$(bench --redis --addr "127.0.0.1:$REDIS_PORT")
    awk -v r="$r" -v o="$o" -v n="$n" -v d="$d" \
        'BEGIN { printf "%d %.0f %.0f %.0f %.2f %.2f %.2f\n", r, o, n, d, n/o, o/d, n/d }'
done | tee "$WORK/rounds"
# median COLUMN: the median of one ratio column over the rounds.
median() { awk -v c="$1" '{ print $c }' "$WORK/rounds" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median of $ROUNDS rounds ($CONNS conns, pipeline $DEPTH): new/old $(median 5)x, old/redis $(median 6)x, new/redis $(median 7)x"
