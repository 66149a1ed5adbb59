"""Line detectors side by side, in one run, judged the way models/README.md judges the
shipped one: every dev photo's best box (score, IoU against the colour-segmentation
box), empty belts (cut from the dev photos and generated) that get a box, the generated
held-out set (seed 9300: the older scenes, which the rule below was set on, and the
visible-defect ones beside them) through each detector and the same classifier, changed
views of the dev photos (`augmented_views`: part of the frame, mirrored, lighter or
darker; boxed share and IoU, not part of the rule), and the one-core ONNX Runtime median (`quant_speed.median_ms`, alternating the files; the
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

from PIL import Image, ImageEnhance

from common import box_iou
from eval_line import MODELS, detect, dev_boxes, empty_belts, heldout, meta, session
from quant_speed import median_ms
from real import dev_photos, pear_box

MIN_MEAN_IOU = 0.85
MIN_HELDOUT_NVD = 0.875


def augmented_views(n_per, seed=21):
    """`n_per` changed views of every dev photo, the way another camera or day might
    show it: a random part of the frame (60-100 % of each side, the pear's box clipped
    to it, at least half of the pear kept), mirrored or not, brighter or darker
    (0.6-1.4), more or less colourful (0.7-1.3). Returns (image, box) pairs at 512x384
    scale."""
    rng = np.random.default_rng(seed)
    out = []
    for p, *_ in dev_photos():
        full = Image.open(p).convert("RGB")
        b = pear_box(full)
        im = full.resize((512, 384), Image.BILINEAR)
        b = [v * 512 / full.size[0] for v in b]
        area = (b[2] - b[0]) * (b[3] - b[1])
        made = 0
        while made < n_per:
            cw, ch = 512 * rng.uniform(0.6, 1.0), 384 * rng.uniform(0.6, 1.0)
            x0, y0 = rng.uniform(0, 512 - cw), rng.uniform(0, 384 - ch)
            bb = [max(0.0, b[0] - x0), max(0.0, b[1] - y0), min(cw, b[2] - x0), min(ch, b[3] - y0)]
            if bb[2] <= bb[0] or bb[3] <= bb[1] or (bb[2] - bb[0]) * (bb[3] - bb[1]) < 0.5 * area:
                continue
            c = im.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
            bb = [bb[0], bb[1], min(bb[2], c.size[0]), min(bb[3], c.size[1])]
            if rng.random() < 0.5:
                c = c.transpose(Image.FLIP_LEFT_RIGHT)
                bb = [c.size[0] - bb[2], bb[1], c.size[0] - bb[0], bb[3]]
            c = ImageEnhance.Brightness(c).enhance(rng.uniform(0.6, 1.4))
            c = ImageEnhance.Color(c).enhance(rng.uniform(0.7, 1.3))
            out.append((c, bb))
            made += 1
    return out


def augmented(det, views):
    """Boxed share, mean and lowest IoU against the clipped pear box, over `views`."""
    found = [detect(det, img) for img, _ in views]
    ious = [box_iou(b, bb) if b else 0.0 for (b, _), (_, bb) in zip(found, views)]
    return {"n": len(views), "boxed": sum(b is not None for b, _ in found),
            "mean_iou": float(np.mean(ious)), "min_iou": float(np.min(ious))}


def judge(path, cls, n, views):
    det = session(path)
    size = json.loads(meta(det)["imgsz"])[0]
    dev = dev_boxes(det)
    empty = empty_belts(det)
    held = heldout(det, cls, n, visible=False)  # the older scenes the qualifying rule was set on
    held_visible = heldout(det, cls, n)
    aug = augmented(det, views) if views else None
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
        "heldout": held, "heldout_visible": held_visible, "augmented": aug,
        "qualifies": (boxed == len(dev) and empty_boxed == 0 and mean_iou >= MIN_MEAN_IOU
                      and held["normal_vs_defect"] >= MIN_HELDOUT_NVD),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("detectors", nargs="+", help="detector ONNX files, the baseline first")
    ap.add_argument("--classifier", default=os.path.join(MODELS, "pear_classifier.onnx"))
    ap.add_argument("--n", type=int, default=200, help="generated held-out scenes")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds")
    ap.add_argument("--augmented", type=int, default=20, help="changed views per dev photo (0 = none)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    cls = session(a.classifier)
    views = augmented_views(a.augmented) if a.augmented else []
    res = [judge(p, cls, a.n, views) for p in a.detectors]
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
                     ("changed dev views boxed", lambda r: f"{r['augmented']['boxed']}/{r['augmented']['n']}"
                                                           if r["augmented"] else "-"),
                     ("changed views IoU mean/min", lambda r: f"{r['augmented']['mean_iou']:.3f} / "
                                                              f"{r['augmented']['min_iou']:.3f}" if r["augmented"] else "-"),
                     ("ms one core (rounds)", lambda r: " ".join(f"{m:.2f}" for m in r["median_ms"])),
                     ("bytes", lambda r: f"{r['bytes']:,}"),
                     ("qualifies", lambda r: str(r["qualifies"]))):
        print(f"{key:26}" + "".join(f"{fmt(r):>28}" for r in res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"detectors": res, "classifier_ms": cls_ms}, f, indent=1)


if __name__ == "__main__":
    main()
