#!/usr/bin/env bash
# tools/bench.sh: the whole benchmark matrix of issue 5 in one command.
#
#   tools/bench.sh                    # writes docs/BENCHMARKS.md
#   BENCH_DURATION=10 tools/bench.sh  # longer cells
#
# Builds release, installs redis-server with apt when missing, starts every server it
# needs on loopback (killing each by pid on exit), runs pear-bench against pear-server
# and redis-server, and writes docs/BENCHMARKS.md. Never run by `cargo test` or CI.
# Tables: P1 0x22 vs redis PING, P2 idle connections, P3 classification images/s,
# P4 time to first answered request.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DUR=${BENCH_DURATION:-5}
WARM=${BENCH_WARMUP:-1}
IDLE=${BENCH_IDLE:-19500}
OUT=${BENCH_OUT:-docs/BENCHMARKS.md}
REDIS_PORT=${BENCH_REDIS_PORT:-6390}
P4_PORT=${BENCH_P4_PORT:-29090}
CLASSIFY='{"cmd":1,"request_data":["normal_01.jpg"]}'

WORK=$(mktemp -d /tmp/pear-bench.XXXXXX)
PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: ends one process this script started.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# field NAME < json-line: one value of a flat JSON object.
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,}\"]*\).*/\1/p" | head -n1; }
# calc EXPR: floating-point arithmetic.
calc() { awk "BEGIN { printf \"%s\", ($1) }"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
slab_kib() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }

# ---------------------------------------------------------------- setup
ulimit -n "$(ulimit -Hn)"
if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server"
    apt-get install -y redis-server >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y redis-server >/dev/null
    }
fi
log "building release binaries"
cargo build --release --bins >&2
SERVER=$ROOT/target/release/pear-server
BENCH=$ROOT/target/release/pear-bench
CLIENT=$ROOT/target/release/pear-client

# config MAX_BATCH [WORKERS]: a copy of the shipped config with absolute paths and a
# temp log (WORKERS 0 = one per core, as shipped).
config() {
    local cfg=$WORK/server_config_b$1_w${2:-0}.yaml
    sed -e "s#\"\.\./#\"$ROOT/#g" \
        -e "s#^\(  file:\).*#\1 \"$WORK/server.log\"#" \
        -e "s#^\(  max_batch:\) *[0-9]*#\1 $1#" \
        -e "s#^\(  workers:\) *[0-9]*#\1 ${2:-0}#" \
        config/server_config.yaml >"$cfg"
    "$SERVER" --config "$cfg" --check-config >/dev/null
    echo "$cfg"
}

# start_server CONFIG: starts pear-server on a free loopback port; sets SRV_PID, SRV_ADDR.
start_server() {
    local out=$WORK/server.out i
    : >"$out"
    $PIN_SERVER "$SERVER" --config "$1" --host 127.0.0.1 --port 0 >"$out" 2>>"$WORK/server.err" &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    for i in $(seq 300); do
        SRV_ADDR=$(sed -n 's/^listening on //p' "$out")
        [ -n "$SRV_ADDR" ] && return 0
        sleep 0.1
    done
    log "pear-server did not start"; tail "$WORK/server.err" >&2
    exit 1
}

# run_bench ARGS...: one pear-bench run; prints its JSON line (human line to the log).
run_bench() {
    $PIN_CLIENT "$BENCH" --duration "$DUR" --warmup "$WARM" "$@" 2>>"$WORK/bench.err" | tail -n1
    tail -n1 "$WORK/bench.err" >&2
}

CMDS=()
note_cmd() { CMDS+=("$*"); }

# ---------------------------------------------------------------- machine
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
FACTS="| nproc | $(nproc) |
| CPU | $CPU |
| memory | $MEM |
| kernel | $(uname -r) |
| rustc | $(rustc --version) |
| redis | $(redis-server --version | awk '{ print $3 }' | sed 's/v=//') |
| open-file limit | $(ulimit -n) per process |
| pear-server commit | $(git rev-parse --short HEAD) |
| date | $(date -u +%Y-%m-%dT%H:%MZ) |"

CFG8=$(config 8)
CFG1=$(config 1)
CFG1W1=$(config 1 1)

# P1 pins the servers (pear-server and redis-server alike) to CPU 0 and pear-bench to
# CPU 1, so the server under test and the load generator never queue for one core;
# unpinned, a cell's result depended on how the scheduler happened to place them.
PIN_SERVER=""
PIN_CLIENT=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SERVER="taskset -c 0"
    PIN_CLIENT="taskset -c 1"
fi

# ---------------------------------------------------------------- P1
log "P1: 0x22 vs redis PING"
$PIN_SERVER redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --protected-mode no --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 50); do
    "$BENCH" --redis --addr "127.0.0.1:$REDIS_PORT" --conns 1 --duration 0.1 --warmup 0 \
        >/dev/null 2>&1 && break
    sleep 0.1
done
start_server "$CFG8"
note_cmd "$PIN_SERVER pear-server ... ; $PIN_SERVER redis-server ...   # P1 only"
note_cmd "$PIN_CLIENT pear-bench --addr $SRV_ADDR --conns C --pipeline D --duration $DUR --warmup $WARM"
note_cmd "$PIN_CLIENT pear-bench --redis --addr 127.0.0.1:$REDIS_PORT --conns C --pipeline D --duration $DUR --warmup $WARM"
P1="| conns | pipeline | pear 0x22 rps | pear p99 (µs) | redis PING rps | redis p99 (µs) | pear / redis | errors |
|---:|---:|---:|---:|---:|---:|---:|---:|"
BASE_P99_64=""
P1_RATIO="-"
for d in 1 16; do
    for c in 1 16 64 256; do
        p=$(run_bench --addr "$SRV_ADDR" --conns "$c" --pipeline "$d")
        r=$(run_bench --redis --addr "127.0.0.1:$REDIS_PORT" --conns "$c" --pipeline "$d")
        prps=$(field rps <<<"$p"); pp99=$(field p99_us <<<"$p")
        rrps=$(field rps <<<"$r"); rp99=$(field p99_us <<<"$r")
        errs=$(( $(field errors <<<"$p") + $(field errors <<<"$r") ))
        ratio=$(calc "$rrps > 0 ? sprintf(\"%.2f×\", $prps / $rrps) : \"-\"")
        P1+="
| $c | $d | $(calc "sprintf(\"%.0f\", $prps)") | $pp99 | $(calc "sprintf(\"%.0f\", $rrps)") | $rp99 | $ratio | $errs |"
        if [ "$c" = 64 ] && [ "$d" = 1 ]; then BASE_P99_64=$pp99; P1_RATIO=$ratio; fi
    done
done
stop "$REDIS_PID"
stop "$SRV_PID"
PIN_SERVER=""
PIN_CLIENT=""

# Instructions per request (callgrind): the part of P1 that machine load cannot move.
CG="(skipped: BENCH_CALLGRIND=0)"
if [ "${BENCH_CALLGRIND:-1}" = 1 ]; then
    log "P1: callgrind, instructions per request"
    CGJ=$(tools/p1-callgrind.sh "$SERVER" 20000 64 2>>"$WORK/bench.err" | tail -n1 || true)
    if [ -n "$CGJ" ]; then
        CG="| pear 0x22 instructions/request | redis PING instructions/request | pear / redis |
|---:|---:|---:|
| $(field pear_instr_per_req <<<"$CGJ") | $(field redis_instr_per_req <<<"$CGJ") | $(field pear_over_redis <<<"$CGJ")× |"
    else
        CG="(tools/p1-callgrind.sh failed; see its output)"
    fi
    note_cmd "tools/p1-callgrind.sh target/release/pear-server 20000 64"
fi

# ---------------------------------------------------------------- P2
log "P2: $IDLE idle connections + 64 active"
start_server "$CFG8"
"$CLIENT" --addr "$SRV_ADDR" model >/dev/null
RSS0=$(rss_kib "$SRV_PID")
SLAB0=$(slab_kib)
"$BENCH" --addr "$SRV_ADDR" --idle-only --idle "$IDLE" --duration $((DUR * 4 + 120)) \
    >"$WORK/idle.out" 2>"$WORK/idle.err" &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for _ in $(seq 1200); do
    [ -s "$WORK/idle.out" ] && break
    sleep 0.1
done
IDLE_LINE=$(head -n1 "$WORK/idle.out")
IDLE_OK=$(field connected <<<"$IDLE_LINE")
IDLE_MS=$(field open_ms <<<"$IDLE_LINE")
sleep 1
RSS1=$(rss_kib "$SRV_PID")
SLAB1=$(slab_kib)
P2RUN=$(run_bench --addr "$SRV_ADDR" --conns 64)
RSS2=$(rss_kib "$SRV_PID")
STILL=$(ls "/proc/$SRV_PID/fd" | wc -l)
stop "$IDLE_PID"
stop "$SRV_PID"
note_cmd "pear-bench --addr $SRV_ADDR --idle-only --idle $IDLE --duration N &   # then:"
note_cmd "pear-bench --addr $SRV_ADDR --conns 64 --duration $DUR --warmup $WARM"
log "P2: 100k idle connections over several servers (tools/c100k.sh)"
C100K=$(C100K_DURATION=$DUR C100K_WARMUP=$WARM tools/c100k.sh "${BENCH_C100K:-100000}" 2>>"$WORK/c100k.err" | head -n1 || true)
note_cmd "tools/c100k.sh ${BENCH_C100K:-100000}"
if [ -n "$C100K" ]; then
    C100K_HELD=$(field idle_held <<<"$C100K")
    C100K_P99=$(field p99_us_with_idle <<<"$C100K")
    C100K_PER=$(field rss_per_idle_bytes <<<"$C100K")
    C100K_ROW="$(field servers <<<"$C100K") servers sharing the port (SO_REUSEPORT), fd cap 20,000 each | $C100K_HELD of $(field idle_wanted <<<"$C100K") | $C100K_P99 (without idle: $(field p99_us_baseline <<<"$C100K"); other CPU use $(field other_cpu_pct_with_idle <<<"$C100K") %) | $(calc "sprintf(\"%.0f\", $(field rps <<<"$C100K"))") | $(field errors <<<"$C100K") | $(field rss_before_kib <<<"$C100K") → $(field rss_after_kib <<<"$C100K") (sum of servers) | $C100K_PER B"
else
    C100K_HELD=0; C100K_P99=99999999; C100K_PER=99999999
    C100K_ROW="tools/c100k.sh failed: $(tail -n1 "$WORK/c100k.err" 2>/dev/null) | | | | | |"
fi
PER_IDLE=$(calc "sprintf(\"%.0f\", ($RSS1 - $RSS0) * 1024 / ($IDLE_OK > 0 ? $IDLE_OK : 1))")
KERNEL_PER=$(calc "sprintf(\"%.0f\", ($SLAB1 - $SLAB0) * 1024 / ($IDLE_OK > 0 ? $IDLE_OK : 1))")
P2="| case | idle held | active p99 (µs) | rps | errors | server RSS before → after (KiB) | RSS per idle conn |
|---|---:|---:|---:|---:|---:|---:|
| 1 server, fd cap 20,000 | $IDLE_OK of $IDLE (opened in $IDLE_MS ms; server fds during run: $STILL) | $(field p99_us <<<"$P2RUN") (without idle: ${BASE_P99_64:-?}) | $(calc "sprintf(\"%.0f\", $(field rps <<<"$P2RUN"))") | $(field errors <<<"$P2RUN") | $RSS0 → $RSS1 (after load: $RSS2) | $PER_IDLE B |
| $C100K_ROW |

RSS is the server process's own memory (its per-connection state). The kernel's socket
objects are not in it: machine-wide slab memory (/proc/meminfo \`Slab\`) grew by
$((SLAB1 - SLAB0)) KiB, about $KERNEL_PER B per idle connection, for both ends of each
loopback connection (client and server sockets) and anything else the machine did meanwhile."

# ---------------------------------------------------------------- P3
log "P3: classification images/s"
SRV_BEST=0
RAW_IDEAL=""
P3="| batching | clients | server images/s | p50 (ms) | p99 (ms) | errors |
|---|---:|---:|---:|---:|---:|"
for b in 8 1; do
    if [ "$b" = 8 ]; then cfg=$CFG8; name="on (max_batch 8)"; else cfg=$CFG1; name="off (max_batch 1)"; fi
    start_server "$cfg"
    for c in 1 8 32; do
        j=$(run_bench --addr "$SRV_ADDR" --conns "$c" --payload "$CLASSIFY")
        SRV_BEST=$(calc "$(field rps <<<"$j") > $SRV_BEST ? $(field rps <<<"$j") : $SRV_BEST")
        P3+="
| $name | $c | $(field rps <<<"$j") | $(calc "sprintf(\"%.1f\", $(field p50_us <<<"$j") / 1000)") | $(calc "sprintf(\"%.1f\", $(field p99_us <<<"$j") / 1000)") | $(field errors <<<"$j") |"
    done
    stop "$SRV_PID"
done
note_cmd "pear-bench --addr $SRV_ADDR --conns C --payload '$CLASSIFY' --duration $DUR --warmup $WARM"
# The raw pipeline, in process (pear-bench --raw-pipeline): the server's own models,
# image folder and worker count, the same read + decode + classify per file, one
# image at a time per worker thread, no sockets. Same payload, same run.
RAW="| raw pipeline, in process | workers | images/s | p50 (ms) | p99 (ms) |
|---|---:|---:|---:|---:|"
WORKERS=$(nproc)
for w in "$WORKERS" 1; do
    if [ "$w" = "$WORKERS" ]; then cfg=$CFG1; else cfg=$CFG1W1; fi
    j=$("$BENCH" --raw-pipeline --config "$cfg" --payload "$CLASSIFY" --duration "$DUR" \
        --warmup "$WARM" 2>>"$WORK/bench.err" | tail -n1 || true)
    if [ -n "$j" ]; then
        [ "$w" = "$WORKERS" ] && RAW_IDEAL=$(field rps <<<"$j")
        [ "$w" = 1 ] && RAW_ONE=$(field rps <<<"$j")
        RAW+="
| read + decode + classify | $w | $(field rps <<<"$j") | $(calc "sprintf(\"%.1f\", $(field p50_us <<<"$j") / 1000)") | $(calc "sprintf(\"%.1f\", $(field p99_us <<<"$j") / 1000)") |"
    else
        RAW+="
| pear-bench --raw-pipeline failed ($(tail -n1 "$WORK/bench.err")) | $w | - | - | - |"
    fi
done
note_cmd "pear-bench --raw-pipeline --config CONFIG(workers W) --payload '$CLASSIFY' --duration $DUR --warmup $WARM"

# ---------------------------------------------------------------- P4
log "P4: start to first answered request"
P4_WORST=0
P4="| run | start → first 0x22 answered (ms) |
|---:|---:|"
for i in 1 2 3; do
    t0=$(date +%s%N)
    "$SERVER" --config "$CFG8" --host 127.0.0.1 --port "$P4_PORT" >/dev/null 2>>"$WORK/server.err" &
    pid=$!
    PIDS+=("$pid")
    ok=""
    for _ in $(seq 2000); do
        if "$CLIENT" --addr "127.0.0.1:$P4_PORT" --timeout 5 model >/dev/null 2>&1; then
            ok=1; break
        fi
        sleep 0.002
    done
    t1=$(date +%s%N)
    stop "$pid"
    if [ -n "$ok" ]; then
        ms=$(( (t1 - t0) / 1000000 ))
        if [ "$P4_WORST" != never ] && [ "$ms" -gt "$P4_WORST" ]; then P4_WORST=$ms; fi
        P4+="
| $i | $ms |"
    else
        P4_WORST=never
        P4+="
| $i | never answered |"
    fi
done
note_cmd "pear-server --port $P4_PORT & then pear-client model in a loop every 2 ms until it answers"

# ---------------------------------------------------------------- report
mkdir -p "$(dirname "$OUT")"
{
    cat <<EOF
# Benchmarks

Written by \`tools/bench.sh\` (one command; $DUR s cells after $WARM s warm-up).
Everything runs on loopback on one machine: the load generator, pear-server and
redis-server share the same cores, so absolute numbers are low and ratios are the point.
pear-bench is a closed-loop \`mio\` client (one thread here); redis-server is measured
with the very same client (inline \`PING\\r\\n\`). pear-server runs the shipped config
(INFO logging, 2 workers) with absolute paths; redis-server runs without persistence.
On this 2-core machine, shared with other builds, a cell can move by ±15–30% between runs:
read a ratio below about 0.8× or above 1.2× as a real difference, not one in between.
Targets: \`SPEC.md\` §5. Why each is met or missed, what profiling found and what
would close a gap: \`docs/PERFORMANCE.md\` (kept by hand; this file is rewritten by
every run).

## Targets at a glance

| target | measured | met |
|---|---|---|
| P1: 0x22 ≥ 1.0× redis PING, 64 conns, no pipelining | $P1_RATIO | $(calc "\"$P1_RATIO\" + 0 >= 1.0 ? \"yes\" : \"no\"") |
| P2: p99 ≤ 2 ms on 0x22 with idle connections held | $(field p99_us <<<"$P2RUN") µs with $IDLE_OK idle (one server) | $(calc "$(field p99_us <<<"$P2RUN") <= 2000 ? \"yes\" : \"no\"") |
| P2: ≤ 4 KiB server memory per idle connection | $PER_IDLE B (RSS) | $(calc "$PER_IDLE <= 4096 ? \"yes\" : \"no\"") |
| P2: 100,000 idle connections | $C100K_HELD held over several servers; p99 $C100K_P99 µs; $C100K_PER B RSS each | $( [ "$C100K_HELD" -ge 100000 ] && calc "$C100K_PER > 4096 ? \"held; memory no\" : ($C100K_P99 <= 2000 ? \"yes\" : \"held, memory yes; p99 no (see docs/PERFORMANCE.md)\")" || echo no) |
| P3: server ≥ 0.95× raw pipeline images/s | best server $SRV_BEST images/s vs raw ${RAW_IDEAL:-(not measured)} | $( [ -n "$RAW_IDEAL" ] && calc "$SRV_BEST / $RAW_IDEAL >= 0.95 ? sprintf(\"yes (%.2f×)\", $SRV_BEST / $RAW_IDEAL) : sprintf(\"no (%.2f×)\", $SRV_BEST / $RAW_IDEAL)" || echo "-") |
| P4: ready ≤ 1 s after start | worst of 3: $P4_WORST ms | $( [ "$P4_WORST" != never ] && [ "$P4_WORST" -le 1000 ] && echo yes || echo no) |

## Machine

| fact | value |
|---|---|
$FACTS

## Commands

\`\`\`
$(printf '%s\n' "${CMDS[@]}")
\`\`\`

## P1: protocol path, 0x22 vs redis PING (target ≥ 1.0× at 64 connections)

Servers pinned to CPU 0, pear-bench to CPU 1 (\`taskset\`), for both.

$P1

Instructions per request in user space (\`tools/p1-callgrind.sh\`, 20,000 requests over
64 connections; pear: the reactor thread; redis: without serverCron). Unlike the rps
above this does not move with machine load; the kernel's recv/send work is not in it
and is the same two syscalls per request for both servers.

$CG

## P2: idle connections (target: 100k idle, p99 ≤ 2 ms on 0x22, ≤ 4 KiB per idle connection)

$P2

## P3: classification images/s (target ≥ 0.95× the raw pipeline)

Payload \`$CLASSIFY\`; the server runs $(nproc) inference workers.

$P3

$RAW

The raw rows are \`pear-bench --raw-pipeline\`: the server's models, image folder and
worker count, the same read + decode + classify per file, with no sockets, queue or
reactor. With one client the server can keep only one worker busy (one request in
flight), so compare that row with the one-worker raw row (${RAW_ONE:-?} images/s); the
target compares the best server row with the raw pipeline on all $WORKERS workers.

## P4: start to first answered request (target ≤ 1 s)

$P4
EOF
} >"$OUT"
log "wrote $OUT"
