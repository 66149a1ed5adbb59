#!/usr/bin/env python3
"""Speed of the Python original against pear-server, side by side in one run (issue 12).

On the same photos and the same weights (the work folder parity.py leaves: the `.pt`,
the `.pth` and their ONNX exports), interleaved so that both sides see the same
machine load:
- original: its pipeline (original.py: torch on the CPU, torch's default threads) one
  image at a time, as its server does; with N clients the requests wait in arrival
  order for that one pipeline, so images/s stays that of one and the latency grows;
- pear-server (release binary) with the exported fp32 ONNX files, over TCP, N client
  connections each sending one single-file request at a time;
- the same with the int8 exports (`export.py --int8`), and its agreement with fp32
  (same class and box within 2 px per photo).
Prints a table (images/s, p50 latency, ratio to the original at the same N) and
writes it to speed_reference.json.

    python speed.py --server target/release/pear-server --photos ../shared/real_pears/dev
"""
import argparse
import json
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

import export
from original import Original
from server import Client, Server, free_port, write_config

HERE = Path(__file__).resolve().parent


def run_clients(n_clients, names, one):
    """`one(client_index, name)` for every name, spread over n_clients threads, each
    one request at a time. Returns (images/s, p50 seconds, answers by name)."""
    lat, answers, lock = [], {}, threading.Lock()
    todo = list(names)

    def worker(i):
        while True:
            with lock:
                if not todo:
                    return
                name = todo.pop(0)
            t = time.perf_counter()
            ans = one(i, name)
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                answers[name] = ans

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return len(names) / wall, statistics.median(lat), answers


def server_side(binary, cfg, port, n_clients, names, work_dir):
    srv = Server(binary, cfg, port)
    try:
        clients = [Client(port) for _ in range(n_clients)]
        clients[0].classify(names[:1])  # sessions warm
        ips, p50, ans = run_clients(n_clients, names,
                                    lambda i, n: clients[i].classify([n])[0])
        for c in clients:
            c.close()
    finally:
        srv.stop()
    return ips, p50, ans


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--server", required=True, help="the pear-server binary")
    ap.add_argument("--work", default=str(HERE / "work"), help="parity.py's work folder")
    ap.add_argument("--clients", default="1,4")
    ap.add_argument("--passes", type=int, default=1, help="passes over the photos per row")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", default=str(HERE / "speed_reference.json"))
    a = ap.parse_args()

    work = Path(a.work)
    pt, pth = work / "pear_yolov8.pt", work / "efficientnetb3_512_version2.pth"
    fp32 = work / "models"
    if not (fp32 / "pear_classifier.onnx").exists():
        raise SystemExit(f"no exported models in {fp32}: run parity.sh first")
    int8 = work / "models_int8"
    int8.mkdir(exist_ok=True)
    for m in ("pear_classifier.onnx", "pear_detector.onnx"):
        export.quantize_int8(fp32 / m, int8 / m)
    photos = Path(a.photos)
    jpgs = sorted(p.name for p in photos.glob("*.jpg"))
    names = jpgs * a.passes

    orig = Original(pt, pth, a.threshold)
    orig.run(photos / jpgs[0])  # warm
    # The original's server: one pipeline, one image at a time, requests in arrival
    # order (a FIFO queue served by one thread).
    requests = queue.Queue()

    def serve():
        while True:
            name, reply = requests.get()
            reply.put(orig.run(photos / name))

    threading.Thread(target=serve, daemon=True).start()

    def original_one(_i, name):
        reply = queue.Queue(maxsize=1)
        requests.put((name, reply))
        return reply.get()

    cfgs = {}
    for label, folder in (("fp32", fp32), ("int8", int8)):
        port = free_port()
        cfgs[label] = (write_config(work / f"speed_{label}.yaml", folder / "pear_classifier.onnx",
                                    folder / "pear_detector.onnx", photos, port, a.threshold,
                                    log=f"speed_{label}.log"), port)

    rows, answers = [], {}
    for n in [int(c) for c in a.clients.split(",")]:
        ips, p50, _ = run_clients(n, names, original_one)
        base = ips
        rows.append({"side": "original (torch, CPU)", "clients": n, "images_per_s": ips,
                     "p50_ms": p50 * 1e3, "ratio": 1.0})
        print(f"original   clients {n}: {ips:.2f} images/s, p50 {p50 * 1e3:.0f} ms", flush=True)
        for label in ("fp32", "int8"):
            cfg, port = cfgs[label]
            ips, p50, ans = server_side(a.server, cfg, port, n, names, work)
            answers.setdefault(label, ans)
            rows.append({"side": f"pear-server {label}", "clients": n, "images_per_s": ips,
                         "p50_ms": p50 * 1e3, "ratio": ips / base})
            print(f"server {label} clients {n}: {ips:.2f} images/s, p50 {p50 * 1e3:.0f} ms, "
                  f"{ips / base:.2f}x the original", flush=True)

    same = 0
    for name in jpgs:
        f, q = answers["fp32"][name], answers["int8"][name]
        box_ok = (f["bbox"] is None) == (q["bbox"] is None) and (
            f["bbox"] is None or max(abs(x - y) for x, y in zip(f["bbox"], q["bbox"])) <= 2)
        same += f["result"] == q["result"] and box_ok
    agreement = f"int8 vs fp32: same class and box (2 px) on {same}/{len(jpgs)} photos"
    print("| side | clients | images/s | p50 ms | vs original |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']} | {r['clients']} | {r['images_per_s']:.2f} | "
              f"{r['p50_ms']:.0f} | {r['ratio']:.2f}x |")
    print(agreement)
    Path(a.out).write_text(json.dumps({"rows": rows, "int8_agreement": agreement,
                                       "photos": len(jpgs), "passes": a.passes},
                                      indent=1) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
