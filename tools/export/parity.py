#!/usr/bin/env python3
"""Parity of pear-server with the Python original on the same weights (issue 12).

Makes seeded random weights saved as the original saves them (make_weights.py), runs
the original's pipeline (original.py) on the photos and on PNG copies, exports both
models (export.py), runs pear-server (release build) over TCP on the same files and
compares: same class on 100 % of the PNGs and >= 95 % of the JPEGs, the answered
class's softmax probability within 1e-3 on PNG, boxes within 2 px. Exit 0 only when
all hold; the last line is a one-line summary. Run through parity.sh.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2

import export
import make_weights
from original import Original
from server import Client, Server, free_port, write_config

HERE = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", required=True)
    ap.add_argument("--server", required=True, help="the pear-server binary")
    ap.add_argument("--work", default=str(HERE / "work"))
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--reference", default=str(HERE / "parity_reference.json"))
    a = ap.parse_args()

    work = Path(a.work)
    photos = work / "photos"
    shutil.rmtree(work, ignore_errors=True)
    photos.mkdir(parents=True)
    jpgs = sorted(Path(a.photos).glob("*.jpg"))
    if not jpgs:
        raise SystemExit(f"no .jpg in {a.photos}")
    names = []
    for j in jpgs:
        shutil.copy(j, photos / j.name)
        png = photos / (j.stem + ".png")
        cv2.imwrite(str(png), cv2.imread(str(j)))  # lossless copy of OpenCV's pixels
        names += [j.name, png.name]

    # 1. weights as the original saves them; 2. the original's answers
    sys.argv = ["make_weights", "--seed", str(a.seed), "--out", str(work),
                "--threshold", str(a.threshold)] + [str(photos / j.name) for j in jpgs]
    make_weights.main()
    pt, pth = work / "pear_yolov8.pt", work / "efficientnetb3_512_version2.pth"
    orig = Original(pt, pth, a.threshold)
    ref = {n: orig.run(photos / n) for n in names}

    # 3. export; 4. pear-server over TCP
    models = work / "models"
    models.mkdir()
    export.export_classifier(pth, models / "pear_classifier.onnx", export.CLASSES)
    export.export_detector(pt, models / "pear_detector.onnx")
    port = free_port()
    cfg = write_config(work / "server.yaml", models / "pear_classifier.onnx",
                       models / "pear_detector.onnx", photos, port, a.threshold)
    srv = Server(a.server, cfg, port)
    try:
        c = Client(port)
        items = c.classify(names)
        c.close()
    finally:
        srv.stop()
    got = {it["file_name"]: it for it in items}

    # 5. compare
    rows, stats = [], {"png": [0, 0], "jpg": [0, 0]}
    max_dp, max_dp_jpg, max_box, box_pairs, bad = 0.0, 0.0, 0, 0, []
    for n in names:
        o, s = ref[n], got.get(n)
        kind = "png" if n.endswith(".png") else "jpg"
        if s is None or s.get("error_code") != 0:
            bad.append(f"{n}: server error {s}")
            stats[kind][1] += 1
            continue
        same = o["class"] == s["result"] and (o["box"] is None) == (s["bbox"] is None)
        stats[kind][0] += same
        stats[kind][1] += 1
        dp = abs(o["probabilities"][s["result"]] - s["confidence"]) if o["box"] and s["bbox"] else 0.0
        db = max(abs(x - y) for x, y in zip(o["box"], s["bbox"])) if o["box"] and s["bbox"] else 0
        if o["box"] and s["bbox"]:
            box_pairs += 1
            max_box = max(max_box, db)
        if kind == "png" and same:
            max_dp = max(max_dp, dp)
        if kind == "jpg" and same:  # reported only: the target on JPEG is the class
            max_dp_jpg = max(max_dp_jpg, dp)
        if not same:
            bad.append(f"{n}: original class {o['class']} box {o['box']}, "
                       f"server {s['result']} box {s['bbox']}")
        rows.append({"file": n, "original": {"class": o["class"], "box": o["box"],
                                             "score": o["score"],
                                             "p": o["probabilities"][o["class"]] if o["box"] else None},
                     "server": {"class": s["result"], "box": s["bbox"], "p": s["confidence"]},
                     "abs_dp": dp, "box_px": db})
    png_rate = stats["png"][0] / max(stats["png"][1], 1)
    jpg_rate = stats["jpg"][0] / max(stats["jpg"][1], 1)
    classes_seen = sorted({r["original"]["class"] for r in rows})
    ok = png_rate == 1.0 and jpg_rate >= 0.95 and max_dp <= 1e-3 and max_box <= 2
    summary = (f"parity {'PASS' if ok else 'FAIL'}: class PNG {stats['png'][0]}/{stats['png'][1]}, "
               f"JPEG {stats['jpg'][0]}/{stats['jpg'][1]}; PNG max |dp| {max_dp:.2e}, "
               f"JPEG {max_dp_jpg:.2e}; "
               f"max box diff {max_box} px over {box_pairs} boxes; "
               f"original classes {classes_seen}; seed {a.seed}")
    for r in rows:
        print(f"{r['file']}: original {r['original']['class']} {r['original']['box']} | "
              f"server {r['server']['class']} {r['server']['box']} | dp {r['abs_dp']:.1e}")
    for b in bad:
        print("MISMATCH", b)
    Path(a.reference).write_text(json.dumps({"summary": summary, "files": rows}, indent=1) + "\n")
    print(summary)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
