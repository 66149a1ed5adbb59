#!/usr/bin/env bash
# tools/reactor-bench.sh: server.reactors 1 vs 2 on the protocol path (0x22),
# same pear-bench command style as tools/bench.sh. Prints a markdown table.
#   tools/reactor-bench.sh            # 5 s cells after 1 s warm-up
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DUR=${BENCH_DURATION:-5}
WORK=$(mktemp -d /tmp/pear-rbench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$WORK"; }
trap cleanup EXIT
cargo build --release --bins >&2
SERVER=$ROOT/target/release/pear-server
BENCH=$ROOT/target/release/pear-bench
echo "| reactors | conns | pipeline | rps | p50 (µs) | p99 (µs) | errors |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for R in 1 2; do
    sed -e "s#\"\.\./#\"$ROOT/#g" -e "s#^\(  file:\).*#\1 \"$WORK/server.log\"#" \
        -e "s#^\(  reactors:\) *[0-9]*#\1 $R#" config/server_config.yaml >"$WORK/cfg.yaml"
    "$SERVER" --config "$WORK/cfg.yaml" --host 127.0.0.1 --port 0 >"$WORK/out" 2>>"$WORK/err" &
    PID=$!
    for _ in $(seq 100); do grep -q '^listening on' "$WORK/out" && break; sleep 0.1; done
    ADDR=$(sed -n 's/^listening on //p' "$WORK/out")
    for C in 64 256; do
        for D in 1 16; do
            line=$("$BENCH" --addr "$ADDR" --conns "$C" --pipeline "$D" --duration "$DUR" --warmup 1 2>/dev/null | tail -n1)
            f() { echo "$line" | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -n1; }
            printf '| %s | %s | %s | %.0f | %s | %s | %s |\n' "$R" "$C" "$D" "$(f rps)" "$(f p50_us)" "$(f p99_us)" "$(f errors)"
        done
    done
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
