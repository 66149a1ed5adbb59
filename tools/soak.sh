#!/usr/bin/env bash
# tools/soak.sh: a long mixed-load run of the release server, on loopback only.
#
#   tools/soak.sh 45m        # or 3600 (seconds), 90s, 1h; default 10m
#   SOAK_CLIENTS=3 SOAK_OUT=target/soak tools/soak.sh 2m
#
# Builds release, starts pear-server on 127.0.0.1 (port 0) with a temp copy of the shipped
# config whose model folder is a temp copy holding the shipped classifier twice (A and B)
# and the detector, and runs until the duration is over:
#   - SOAK_CLIENTS (3) well-behaved clients (python3, one connection each) classifying
#     samples/ images with 0x01, one request at a time with a short pause; each counts the
#     requests it sent (owed) and the responses it got (answered); a request not answered
#     within 30 s, or a connection the server closed, is a lost answer;
#   - pear-bench bursts of 0x22 (2 connections, 20,000 requests, every 10 s);
#   - a misbehaving client: disconnects mid-request (FIN and RST, after a whole request or
#     half of one), garbage bytes, an oversized message, bad JSON, a bad extension, a
#     missing file; one case every 0.5 s, each on its own connection;
#   - model swaps: 0x26 between the two classifier copies every 10 s (pear-client use).
# Every minute one CSV row goes to $SOAK_OUT/soak.csv (default target/soak): server RSS
# (VmRSS) and open fds, owed / answered / lost of the well-behaved clients, error codes
# of every answer seen, bench, swap and misbehaviour counts. The end prints one summary
# line (also $SOAK_OUT/summary.txt). Exit 1 if an owed answer was lost, pear-bench lost a
# connection, or the server died; 0 otherwise. Every loop is bounded in count and time;
# the exit trap ends every process it started, by pid. Never run by `cargo test` or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ARG=${1:-10m}
case "$ARG" in
    *h) DUR=$(( ${ARG%h} * 3600 )) ;;
    *m) DUR=$(( ${ARG%m} * 60 )) ;;
    *s) DUR=${ARG%s} ;;
    *) DUR=$ARG ;;
esac
[[ "$DUR" =~ ^[0-9]+$ ]] && [ "$DUR" -ge 10 ] || { echo "usage: tools/soak.sh DURATION (e.g. 45m, 600, 90s; at least 10 s)" >&2; exit 2; }
CLIENTS=${SOAK_CLIENTS:-3}
OUT=${SOAK_OUT:-$ROOT/target/soak}
mkdir -p "$OUT"
CSV=$OUT/soak.csv
SUMMARY=$OUT/summary.txt

. tools/lib.sh
scratch_dir pear-soak
trap 'exit 130' INT TERM

log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }

log "building release binaries"
cargo build --release --bins >&2
# Copies, so a rebuild by other work during the run changes nothing here.
mkdir -p "$WORK/bin"
cp target/release/pear-server target/release/pear-client target/release/pear-bench "$WORK/bin/"
SERVER=$WORK/bin/pear-server
CLIENT=$WORK/bin/pear-client
BENCH=$WORK/bin/pear-bench
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo "+dirty")

# The model folder: a copy, so the swaps never touch models/ and its state stays here.
mkdir -p "$WORK/models"
cp models/pear_classifier.onnx "$WORK/models/pear_classifier.onnx"
cp models/pear_classifier.onnx "$WORK/models/pear_classifier_b.onnx"
cp models/pear_detector.onnx "$WORK/models/pear_detector.onnx"
server_config "$WORK/cfg.yaml"
sed -i -e "s#^\(  model_path:\).*#\1 \"$WORK/models/pear_classifier.onnx\"#" \
    -e "s#^\(  preprocessor_path:\).*#\1 \"$WORK/models/pear_detector.onnx\"#" "$WORK/cfg.yaml"
"$SERVER" --config "$WORK/cfg.yaml" --check-config >/dev/null

"$SERVER" --config "$WORK/cfg.yaml" --host 127.0.0.1 --port 0 >"$WORK/server.out" 2>"$WORK/server.err" &
SRV_PID=$!
PIDS+=("$SRV_PID")
ADDR=""
for _ in $(seq 300); do
    ADDR=$(sed -n 's/^listening on //p' "$WORK/server.out")
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { log "pear-server did not start"; tail "$WORK/server.err" >&2; exit 1; }
case "$ADDR" in 127.0.0.1:*) ;; *) log "not loopback: $ADDR"; exit 1 ;; esac
log "pear-server pid $SRV_PID on $ADDR, commit $COMMIT, $DUR s, $CLIENTS clients"

START=$(date +%s)
END=$((START + DUR))

# ---------------------------------------------------------------- the python3 clients
# One process: CLIENTS well-behaved threads and one misbehaving thread. It rewrites
# $WORK/counters (one line: owed answered lost e0..e6 other disconnects bad) every second.
cat >"$WORK/clients.py" <<'PY'
import json, os, random, socket, struct, sys, threading, time

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)
end = float(sys.argv[2])
nclients = int(sys.argv[3])
counters_path = sys.argv[4]
images = sys.argv[5].split(",")

lock = threading.Lock()
c = {"owed": 0, "answered": 0, "lost": 0, "codes": [0] * 7, "other": 0,
     "disconnects": 0, "bad": 0}
MAX_REQUESTS = 10_000_000  # per thread; the deadline ends the loop long before

def count_codes(resp):
    try:
        items = json.loads(resp)["response_data"]
    except Exception:
        with lock:
            c["other"] += 1
        return
    with lock:
        for it in items or []:
            code = it.get("error_code")
            if isinstance(code, int) and 0 <= code < 7:
                c["codes"][code] += 1
            else:
                c["other"] += 1

def read_line(sock, buf, timeout):
    """One newline-terminated response; (line, rest) or (None, buf) on close/timeout."""
    deadline = time.time() + timeout
    while b"\n" not in buf:
        left = deadline - time.time()
        if left <= 0:
            return None, buf
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, OSError):
            return None, buf
        if not chunk:
            return None, buf
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest

def connect():
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def good_client(n):
    rnd = random.Random(n)
    sock, buf, seq = None, b"", 0
    while time.time() < end and seq < MAX_REQUESTS:
        if sock is None:
            try:
                sock, buf = connect(), b""
            except OSError:
                time.sleep(1)
                continue
        seq += 1
        files = rnd.sample(images, rnd.randint(1, 3))
        req = json.dumps({"cmd": 1, "request_data": files, "id": f"c{n}-{seq}"}) + "\n"
        with lock:
            c["owed"] += 1
        try:
            sock.sendall(req.encode())
            line, buf = read_line(sock, buf, 30)
        except OSError:
            line = None
        if line is None:
            with lock:
                c["lost"] += 1
            print(f"lost answer: client {n} request {seq}", file=sys.stderr, flush=True)
            sock.close()
            sock = None
            continue
        with lock:
            c["answered"] += 1
        if f'"c{n}-{seq}"'.encode() not in line:
            print(f"client {n} request {seq}: reply without its id: {line[:200]!r}", file=sys.stderr, flush=True)
            with lock:
                c["other"] += 1
        count_codes(line)
        time.sleep(0.05)
    if sock is not None:
        sock.close()

def bad_case(i):
    kind = i % 9
    s = connect()
    try:
        if kind in (0, 1, 2, 3):  # disconnect mid-request: whole or half, FIN or RST
            req = json.dumps({"cmd": 1, "request_data": random.sample(images, 3)}) + "\n"
            data = req.encode() if kind < 2 else req.encode()[: len(req) // 2]
            s.sendall(data)
            time.sleep(random.random() * 0.05)
            if kind % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with lock:
                c["disconnects"] += 1
            return
        if kind == 4:
            data = bytes(random.getrandbits(8) for _ in range(200)).replace(b"{", b"x") + b"\n"
            data = b"g" + data
        elif kind == 5:  # over server.max_message_bytes (1 MiB)
            data = b'{"cmd":1,"request_data":["' + b"a" * (1100 * 1024) + b'.jpg"]}\n'
        elif kind == 6:
            data = b'{"cmd":1,"request_data":[normal_01.jpg,]}\n'
        elif kind == 7:
            data = b'{"cmd":1,"request_data":["normal_01.txt"]}\n'
        else:
            data = b'{"cmd":1,"request_data":["no_such_pear.jpg"]}\n'
        try:
            s.sendall(data)
        except OSError:
            pass
        line, _ = read_line(s, b"", 10)
        with lock:
            c["bad"] += 1
        if line is not None:
            count_codes(line)
        else:
            with lock:
                c["other"] += 1
    finally:
        s.close()

def bad_client():
    i = 0
    while time.time() < end and i < MAX_REQUESTS:
        try:
            bad_case(i)
        except OSError:
            pass
        i += 1
        time.sleep(0.5)

def write_counters():
    with lock:
        line = " ".join(str(v) for v in
                        [c["owed"], c["answered"], c["lost"], *c["codes"], c["other"],
                         c["disconnects"], c["bad"]])
    tmp = counters_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(line + "\n")
    os.replace(tmp, counters_path)

threads = [threading.Thread(target=good_client, args=(n,), daemon=True) for n in range(nclients)]
threads.append(threading.Thread(target=bad_client, daemon=True))
for t in threads:
    t.start()
while any(t.is_alive() for t in threads) and time.time() < end + 60:
    write_counters()
    time.sleep(1)
write_counters()
PY

IMAGES=$(find samples -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.jpeg' -o -name '*.png' \) \
    ! -name 'empty*' -printf '%f\n' | sort | paste -sd, -)
[ -n "$IMAGES" ] || { log "no images in samples/"; exit 1; }
python3 -u "$WORK/clients.py" "$ADDR" "$END" "$CLIENTS" "$WORK/counters" "$IMAGES" \
    2>"$WORK/clients.err" &
PY_PID=$!
PIDS+=("$PY_PID")

# ---------------------------------------------------------------- 0x22 bursts (pear-bench)
(
    i=0
    while [ "$(date +%s)" -lt "$END" ] && [ "$i" -lt 100000 ]; do
        timeout 60 "$BENCH" --addr "$ADDR" --conns 2 --duration 5 --warmup 0 \
            --max-requests 20000 2>/dev/null | tail -n1 >>"$WORK/bench.jsonl" || true
        i=$((i + 1))
        sleep 10
    done
) &
PIDS+=("$!")

# ---------------------------------------------------------------- model swaps (0x26)
(
    i=0
    while [ "$(date +%s)" -lt "$END" ] && [ "$i" -lt 100000 ]; do
        if [ $((i % 2)) = 0 ]; then m=pear_classifier_b.onnx; else m=pear_classifier.onnx; fi
        if "$CLIENT" --addr "$ADDR" --timeout 30 use "$m" >/dev/null 2>&1; then
            echo ok >>"$WORK/swaps"
        else
            echo failed >>"$WORK/swaps"
        fi
        i=$((i + 1))
        sleep 10
    done
) &
PIDS+=("$!")

# ---------------------------------------------------------------- per-minute sampling
# bench_sum FIELD: the sum of one numeric field over all pear-bench runs so far.
bench_sum() {
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$WORK/bench.jsonl" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
ALIVE=1
RSS0=""
FD0=""
echo "minute,elapsed_s,alive,rss_kib,fds,owed,answered,lost,e0,e1,e2,e3,e4,e5,e6,e_other,disconnects,bad_inputs,bench_requests,bench_errors,bench_lost_conns,swaps_ok,swaps_failed" >"$CSV"
sample() {
    local now rss fds cnt swaps_ok swaps_failed
    now=$(date +%s)
    if kill -0 "$SRV_PID" 2>/dev/null && [ -r "/proc/$SRV_PID/status" ]; then
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SRV_PID/status")
        fds=$(ls "/proc/$SRV_PID/fd" | wc -l)
    else
        ALIVE=0; rss=0; fds=0
    fi
    cnt=$(cat "$WORK/counters" 2>/dev/null || echo "0 0 0 0 0 0 0 0 0 0 0 0 0")
    swaps_ok=$(grep -c '^ok' "$WORK/swaps" 2>/dev/null || true)
    swaps_failed=$(grep -c '^failed' "$WORK/swaps" 2>/dev/null || true)
    LAST="$1,$((now - START)),$ALIVE,$rss,$fds,$(tr ' ' ',' <<<"$cnt"),$(bench_sum requests),$(bench_sum errors),$(bench_sum io_errors),${swaps_ok:-0},${swaps_failed:-0}"
    echo "$LAST" >>"$CSV"
    [ -n "$RSS0" ] || { RSS0=$rss; FD0=$fds; }
    log "$LAST"
}
sample 0
m=0
while [ "$m" -lt $((DUR / 60 + 2)) ]; do
    m=$((m + 1))
    next=$((START + m * 60))
    [ "$next" -gt "$END" ] && break
    while [ "$(date +%s)" -lt "$next" ]; do sleep 1; done
    sample "$m"
    [ "$ALIVE" = 1 ] || break
done

# The end: wait (bounded) for the clients to finish their last requests, then a last row.
for _ in $(seq 120); do
    kill -0 "$PY_PID" 2>/dev/null || break
    sleep 1
done
for p in "${PIDS[@]:2}"; do  # the bench and swap loops end within 70 s of the deadline
    for _ in $(seq 90); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
done
sample end

IFS=, read -r _ _ alive rss fds owed answered lost e0 e1 e2 e3 e4 e5 e6 eo disc bad breq berr blost sok sfail <<<"$LAST"
PANICS=$(cat "$WORK/server.log" "$WORK/server.err" 2>/dev/null | grep -ci 'panic' || true)
cp "$WORK/clients.err" "$OUT/clients.err" 2>/dev/null || true
{ grep -E 'ERROR|WARN|panic' "$WORK/server.log" 2>/dev/null || true; } | tail -n 200 >"$OUT/server-warnings.log"
VERDICT=ok
if [ "$alive" != 1 ]; then VERDICT="FAIL: server died"
elif [ "$lost" != 0 ] || [ "$owed" != "$answered" ]; then VERDICT="FAIL: lost answers"
elif [ "$blost" != 0 ]; then VERDICT="FAIL: pear-bench lost connections"
fi
LINE="soak $COMMIT ${DUR}s: $VERDICT; owed $owed answered $answered lost $lost; codes 0:$e0 1:$e1 2:$e2 3:$e3 4:$e4 5:$e5 6:$e6 other:$eo; disconnects $disc bad inputs $bad; 0x22 $breq (errors $berr, lost conns $blost); swaps $sok ok $sfail failed; RSS ${RSS0} -> $rss KiB; fds $FD0 -> $fds; panics in log $PANICS; csv $CSV"
echo "$LINE" | tee "$SUMMARY"
[ "$VERDICT" = ok ]
