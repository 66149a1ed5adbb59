#!/usr/bin/env bash
# tools/bench-photos.sh: images/s on the line's real photos at full camera size
# (2048×1536, tests/fixtures/real) against the same photos downscaled to 480×360
# (tests/fixtures/real_480), through the release server over loopback, in one run.
#
#   tools/bench-photos.sh                 # 4 clients, 2 rounds of 10 s each, alternating
#   CLIENTS=1 ROUNDS=3 DUR=5 tools/bench-photos.sh
#
# Each round starts the server (shipped config, models and worker count; only img_path
# and the log file changed) on one folder, runs `pear-bench --photos FOLDER` (every
# photo of the folder round-robin, one 0x01 each), stops it, then does the same on the
# other folder. Prints a Markdown table and, as its last line, the ratio of the medians
# (issue 13 target: 2048×1536 images/s ≥ 0.6× the 480×360 images/s). Each row also has
# the server's whole-process CPU time (utime + stime, every thread) per image it
# answered: on 2 shared cores that figure moves much less with other load than
# images/s does, so the CPU ratio (480×360 ms / 2048×1536 ms) is printed beside it.
# tools/bench.sh runs this for its "P3, real photos" section. Loopback only; never
# run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-2}
DUR=${DUR:-10}
WARM=${WARM:-2}

cargo build --release --quiet --bin pear-server --bin pear-bench
WORK=$(mktemp -d /tmp/pear-photos.XXXXXX)
SRV_PID=""
cleanup() {
    [ -n "$SRV_PID" ] && { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
. tools/lib.sh   # field, cpu_ticks, median
# answered ADDR: replies the server has made so far, by its own counter (0x40).
answered() {
    target/release/pear-client --json --addr "$1" status |
        sed -n 's/.*"requests_served": *\([0-9]*\).*/\1/p' | head -n1
}

config() { # config FOLDER > yaml
    sed -e "s#\"\.\./models/#\"$ROOT/models/#g" \
        -e "s#^  img_path: .*#  img_path: \"$1\"#" \
        -e "s#^  file: .*#  file: \"$WORK/server.log\"#" config/server_config.yaml
}

run_one() { # run_one FOLDER -> prints "rps p50_us errors cpu_ms_per_image"
    config "$1" >"$WORK/cfg.yaml"
    : >"$WORK/out"
    target/release/pear-server --config "$WORK/cfg.yaml" --host 127.0.0.1 --port 0 >"$WORK/out" 2>>"$WORK/err" &
    SRV_PID=$!
    local addr="" i
    for i in $(seq 300); do
        addr=$(sed -n 's/^listening on //p' "$WORK/out")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "pear-server did not start" >&2; tail "$WORK/err" >&2; exit 1; }
    local j a0 a1 t0 t1
    a0=$(answered "$addr"); t0=$(cpu_ticks "$SRV_PID")
    j=$(target/release/pear-bench --addr "$addr" --conns "$CLIENTS" --photos "$1" \
        --duration "$DUR" --warmup "$WARM" 2>/dev/null | tail -n1)
    t1=$(cpu_ticks "$SRV_PID"); a1=$(answered "$addr")
    kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=""
    # warm-up included on both sides; the first status query is taken off
    echo "$(field rps <<<"$j") $(field p50_us <<<"$j") $(field errors <<<"$j") \
$(awk "BEGIN { n = $a1 - $a0 - 1; printf \"%.2f\", ($t1 - $t0) * 1000 / $HZ / (n > 0 ? n : 1) }")"
}

BIG=$ROOT/tests/fixtures/real
SMALL=$ROOT/tests/fixtures/real_480
echo "| round | photos | clients | images/s | p50 (ms) | server CPU ms / image | errors |"
echo "|---:|---|---:|---:|---:|---:|---:|"
: >"$WORK/big"; : >"$WORK/small"; : >"$WORK/bigcpu"; : >"$WORK/smallcpu"
for r in $(seq "$ROUNDS"); do
    for f in "$BIG" "$SMALL"; do
        read -r rps p50 err cpu <<<"$(run_one "$f")"
        label=$([ "$f" = "$BIG" ] && echo "2048×1536" || echo "480×360")
        echo "| $r | $label | $CLIENTS | $rps | $(awk "BEGIN{printf \"%.1f\", $p50/1000}") | $cpu | $err |"
        if [ "$f" = "$BIG" ]; then
            echo "$rps" >>"$WORK/big"; echo "$cpu" >>"$WORK/bigcpu"
        else
            echo "$rps" >>"$WORK/small"; echo "$cpu" >>"$WORK/smallcpu"
        fi
    done
done
B=$(median $(cat "$WORK/big")); S=$(median $(cat "$WORK/small"))
BC=$(median $(cat "$WORK/bigcpu")); SC=$(median $(cat "$WORK/smallcpu"))
echo
echo "median 2048×1536 $B images/s, 480×360 $S images/s: ratio $(awk "BEGIN{printf \"%.2f\", $B/$S}")× (target ≥ 0.60×); server CPU per image $BC vs $SC ms: ratio $(awk "BEGIN{printf \"%.2f\", $SC/$BC}")×; commit $(git rev-parse --short HEAD)"
