"""Line detectors side by side, in one run, judged the way models/README.md judges the
shipped one: every dev photo's best box (score, IoU against the colour-segmentation
box), empty belts (cut from the dev photos and generated) that get a box, the generated
held-out set (seed 9300: the older scenes, which the rule below was set on, and the
visible-defect ones beside them) through each detector and the same classifier, and the
one-core ONNX Runtime median (`quant_speed.median_ms`, alternating the files; the
classifier is timed in every round too, so the pair's time comes from the same run).

    .venv/bin/python compare_detectors.py ../../models/pear_detector.onnx runs/det128.onnx [--json runs/cmp.json]

Measurement only: it never writes a model. The qualifying rule (issue 11's detector
budget work): every dev photo boxed, no empty belt boxed, mean dev IoU >= 0.85,
held-out normal-vs-defect >= 0.875.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from eval_line import MODELS, dev_boxes, empty_belts, heldout, meta, session
from quant_speed import median_ms

MIN_MEAN_IOU = 0.85
MIN_HELDOUT_NVD = 0.875


def judge(path, cls, n):
    det = session(path)
    size = json.loads(meta(det)["imgsz"])[0]
    dev = dev_boxes(det)
    empty = empty_belts(det)
    held = heldout(det, cls, n, visible=False)  # the older scenes the qualifying rule was set on
    held_visible = heldout(det, cls, n)
    boxed = sum(b is not None for _, _, b, _, _ in dev)
    mean_iou = float(np.mean([iou for *_, iou in dev]))
    empty_boxed = empty["cutouts_with_box"] + empty["generated_with_box"]
    return {
        "file": path, "imgsz": size, "bytes": os.path.getsize(path),
        "dev": [{"photo": os.path.basename(p)[:24], "score": round(s, 3), "iou": round(iou, 3)}
                for p, _, _, s, iou in dev],
        "dev_boxed": boxed, "dev_n": len(dev), "dev_mean_iou": mean_iou,
        "dev_min_iou": min(iou for *_, iou in dev), "dev_min_score": min(s for _, _, _, s, _ in dev),
        "empty": empty, "empty_boxed": empty_boxed, "empty_n": empty["cutouts"] + empty["generated"],
        "heldout": held, "heldout_visible": held_visible,
        "qualifies": (boxed == len(dev) and empty_boxed == 0 and mean_iou >= MIN_MEAN_IOU
                      and held["normal_vs_defect"] >= MIN_HELDOUT_NVD),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("detectors", nargs="+", help="detector ONNX files, the baseline first")
    ap.add_argument("--classifier", default=os.path.join(MODELS, "pear_classifier.onnx"))
    ap.add_argument("--n", type=int, default=200, help="generated held-out scenes")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cls = session(a.classifier)
    res = [judge(p, cls, a.n) for p in a.detectors]
    cls_size = int(meta(cls)["input_size"])
    cls_ms = []
    for _ in range(a.rounds):
        for r in res:
            r.setdefault("median_ms", []).append(round(median_ms(r["file"], r["imgsz"], runs=40), 2))
        cls_ms.append(round(median_ms(a.classifier, cls_size, runs=40), 2))
    names = [f"{os.path.basename(r['file'])} ({r['imgsz']})" for r in res]
    print(f"classifier {os.path.basename(a.classifier)} ({cls_size}), one core (rounds): {cls_ms} ms")
    print("photo".ljust(26) + "".join(f"{n:>28}" for n in names))
    for i, row in enumerate(res[0]["dev"]):
        cells = "".join(f"{r['dev'][i]['score']:>18.3f} / {r['dev'][i]['iou']:.3f}" for r in res)
        print(f"{row['photo']:26}{cells}")
    for key, fmt in (("dev boxed", lambda r: f"{r['dev_boxed']}/{r['dev_n']}"),
                     ("dev mean IoU", lambda r: f"{r['dev_mean_iou']:.3f}"),
                     ("dev min IoU / score", lambda r: f"{r['dev_min_iou']:.3f} / {r['dev_min_score']:.3f}"),
                     ("empty boxed", lambda r: f"{r['empty_boxed']}/{r['empty_n']}"),
                     ("empty max score cut/gen", lambda r: f"{r['empty']['cutouts_max_score']:.3f} / "
                                                           f"{r['empty']['generated_max_score']:.3f}"),
                     ("held-out nvd / acc", lambda r: f"{r['heldout']['normal_vs_defect']:.3f} / "
                                                      f"{r['heldout']['accuracy']:.3f}"),
                     ("held-out visible nvd / acc", lambda r: f"{r['heldout_visible']['normal_vs_defect']:.3f} / "
                                                              f"{r['heldout_visible']['accuracy']:.3f}"),
                     ("held-out mean IoU / missed", lambda r: f"{r['heldout']['mean_iou']:.3f} / "
                                                              f"{r['heldout']['missed']}"),
                     ("ms one core (rounds)", lambda r: " ".join(f"{m:.2f}" for m in r["median_ms"])),
                     ("bytes", lambda r: f"{r['bytes']:,}"),
                     ("qualifies", lambda r: str(r["qualifies"]))):
        print(f"{key:26}" + "".join(f"{fmt(r):>28}" for r in res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"detectors": res, "classifier_ms": cls_ms}, f, indent=1)


if __name__ == "__main__":
    main()
