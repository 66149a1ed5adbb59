"""Honest figures of the shipped line models (models/README.md "Measured").

    python eval_line.py --feats runs/feats.npz --json runs/eval_line.json --sheet ../../models/dev_sheet.png

1. Leave-one-fruit-out on the dev photos (`cv.py`'s recipe as `train_line_classifier.py`
   fits it): p(normal) of each photo from the fold that never saw its fruit; the
   figures at the shipped `normal_threshold`; the same recipe on background-only
   views (pear blacked out) as a shortcut check.
2. The exported detector through onnxruntime on every dev photo (trained on generated
   scenes only, so these are held out): box IoU against the colour-segmentation box,
   and empty-belt cut-outs from the photos and generated empty belts (no box expected).
3. A generated held-out set (seed and size never used in training) through both ONNX
   files, the server's way: letterbox, best box, widen 10 %, resize, classify.
4. Time per photo on one core (intra_op_num_threads = 1), detector + classifier,
   decode excluded.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw

from common import box_iou, letterbox
from cv import figures, lofo
from line_gen import make_line_scene
from real import dev_photos, pear_box
from train_line_classifier import NAMES, RECIPE

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.normpath(os.path.join(HERE, "..", "..", "models"))
SEED_EVAL = 9300                      # generated held-out scenes (training used 7100, 7200)
EVAL_SIZE = (512, 384)                # training rendered 640x480 (classifier) and 384x288 (detector)
NORMAL_THRESHOLD = 0.5                # the shipped default (config DEFAULT_NORMAL_THRESHOLD)
CONF = 0.5


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def meta(sess):
    return sess.get_modelmeta().custom_metadata_map


def detect(det, img):
    S = json.loads(meta(det)["imgsz"])[0]
    arr, s, px, py = letterbox(img, S)
    out = det.run(None, {"images": (arr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})[0][0]
    k = int(out[4].argmax())
    cx, cy, w, h, score = out[:, k]
    if score < CONF:
        return None, float(score)
    W, H = img.size
    b = [(cx - w / 2 - px) / s, (cy - h / 2 - py) / s, (cx + w / 2 - px) / s, (cy + h / 2 - py) / s]
    b = [float(np.clip(b[0], 0, W)), float(np.clip(b[1], 0, H)), float(np.clip(b[2], 0, W)), float(np.clip(b[3], 0, H))]
    return b, float(score)


def classify(cls, img, box):
    m = meta(cls)
    S, margin = int(m["input_size"]), float(m.get("crop_margin", 0))
    mean, std = np.array(json.loads(m["mean"]), np.float32), np.array(json.loads(m["std"]), np.float32)
    W, H = img.size
    x1, y1, x2, y2 = int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))
    w, h = x2 - x1, y2 - y1
    c = img.crop((max(0, int(np.floor(x1 - margin * w))), max(0, int(np.floor(y1 - margin * h))),
                  min(W, int(np.ceil(x2 + margin * w))), min(H, int(np.ceil(y2 + margin * h)))))
    x = (np.asarray(c.resize((S, S), Image.BILINEAR), np.float32) / 255.0 - mean) / std
    z = cls.run(None, {"input": x.transpose(2, 0, 1)[None]})[0][0]
    p = np.exp(z - z.max())
    return p / p.sum()


def decide(p, th):
    if p[0] >= th:
        return 0
    return 1 + int(np.argmax(p[1:]))


def heldout(det, cls, n, visible=True):
    """Generated held-out scenes (SEED_EVAL) through both sessions, the server's way.
    `visible` draws every defect where the camera sees it (line_gen's visible_defects,
    the reported set); off, the older scenes where a defect may hide under the holder
    or outside the frame while the label still says defect."""
    hits, nvd, ious, miss = 0, 0, [], 0
    for i in range(n):
        img, box, c = make_line_scene(SEED_EVAL, i, size=EVAL_SIZE, visible_defects=visible)
        b, _ = detect(det, img)
        if b is None:
            miss += 1
            pred = 0
        else:
            ious.append(box_iou(b, box))
            pred = decide(classify(cls, img, b), NORMAL_THRESHOLD)
        hits += pred == c
        nvd += (pred == 0) == (c == 0)
    return {"seed": SEED_EVAL, "size": EVAL_SIZE, "visible_defects": visible, "n": n, "missed": miss,
            "mean_iou": float(np.mean(ious)), "accuracy": hits / n, "normal_vs_defect": nvd / n}


def dev_boxes(det):
    """The detector's best box on every dev photo: (path, label, box or None, score, IoU
    against the colour-segmentation box; 0 when no box)."""
    rows = []
    for p, lab, *_ in dev_photos():
        img = Image.open(p).convert("RGB")
        b, s = detect(det, img)
        rows.append((p, lab, b, s, box_iou(b, pear_box(img)) if b else 0.0))
    return rows


def empty_belts(det):
    """Empty belts: cut from the dev photos and generated (seed SEED_EVAL + 1, 40); how
    many get a box (score >= CONF) and the highest score of each kind."""
    from train_line_detector import empty_cutouts
    cut = [detect(det, c) for c in empty_cutouts()]
    gen = [detect(det, make_line_scene(SEED_EVAL + 1, i, empty=True, size=EVAL_SIZE)[0]) for i in range(40)]
    return {"cutouts": len(cut), "cutouts_with_box": sum(b is not None for b, _ in cut),
            "cutouts_max_score": max(s for _, s in cut),
            "generated": len(gen), "generated_with_box": sum(b is not None for b, _ in gen),
            "generated_max_score": max(s for _, s in gen)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default="runs/feats.npz")
    ap.add_argument("--json", default="runs/eval_line.json")
    ap.add_argument("--sheet", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--classifier", default=os.path.join(MODELS, "pear_classifier.onnx"))
    ap.add_argument("--detector", default=os.path.join(MODELS, "pear_detector.onnx"))
    ap.add_argument("--heldout-only", action="store_true", help="only the generated held-out set (3.), e.g. for a candidate")
    a = ap.parse_args()
    if a.heldout_only:
        det, cls = session(a.detector), session(a.classifier)
        print("generated held-out:", heldout(det, cls, a.n))
        print("generated held-out, older scenes (defects may hide):", heldout(det, cls, a.n, visible=False))
        return
    rep = {}
    F = dict(np.load(a.feats))
    y = F["labels"]
    # 1. leave-one-fruit-out
    pn = lofo(F, **RECIPE)
    acc, rec, kept = figures(y, pn, NORMAL_THRESHOLD)
    acc5, rec5, kept5 = figures(y, pn, 0.5)
    # the same head on background-only frames (pear blacked out), nothing else in training
    pbg = lofo(F, "w", RECIPE["feats"], False, False, RECIPE["C"], real="bg", test="bgtest", kind=RECIPE["kind"])
    bacc, brec, bkept = figures(y, pbg, NORMAL_THRESHOLD)
    rep["lofo"] = {"normal_threshold": NORMAL_THRESHOLD, "normal_vs_defect": acc, "defect_recall": rec,
                   "normal_kept": kept, "at_0.5": [acc5, rec5, kept5],
                   "p_normal": {str(n): round(float(v), 3) for n, v in zip(F["names"], pn)},
                   "background_only": {"normal_vs_defect": bacc, "defect_recall": brec, "normal_kept": bkept}}
    print(f"LOFO (th {NORMAL_THRESHOLD}): normal-vs-defect {acc:.3f}, defect recall {rec:.3f}, normal kept {kept:.3f}; "
          f"at 0.5: {acc5:.3f}/{rec5:.3f}/{kept5:.3f}; background only: {bacc:.3f}/{brec:.3f}/{bkept:.3f}")
    # 2. detector on the dev photos and on empty belts
    det = session(a.detector)
    cls = session(a.classifier)
    rows, tiles = [], []
    for (p, lab, b, s, iou), pnorm in zip(dev_boxes(det), pn):
        verdict = 0 if pnorm >= NORMAL_THRESHOLD else -1
        rows.append({"photo": os.path.basename(p), "label": lab, "box": b, "score": s, "iou": iou,
                     "lofo_p_normal": float(pnorm)})
        if a.sheet:
            t = Image.open(p).convert("RGB").resize((512, 384))
            d = ImageDraw.Draw(t)
            if b:
                d.rectangle([v / 4 for v in b], outline=(255, 0, 0), width=3)
            ok = (verdict == 0) == (lab == 0)
            txt = f"{os.path.basename(p)[:18]}  LOFO: {'normal' if verdict == 0 else 'defect'} p(n)={pnorm:.2f}"
            d.rectangle([0, 0, 512, 22], fill=(0, 110, 0) if ok else (170, 0, 0))
            d.text((6, 5), txt, fill=(255, 255, 255))
            tiles.append(t)
    rep["dev_detector"] = rows
    missed = [r["photo"] for r in rows if r["box"] is None]
    print(f"detector on {len(rows)} dev photos: missed {len(missed)}, mean IoU {np.mean([r['iou'] for r in rows]):.3f}, "
          f"min IoU {min(r['iou'] for r in rows):.3f}, min score {min(r['score'] for r in rows):.3f}")
    rep["empty"] = empty_belts(det)
    print("empty belts:", rep["empty"])
    # 3. generated held-out set
    rep["generated_heldout"] = heldout(det, cls, a.n)
    rep["generated_heldout_hidden"] = heldout(det, cls, a.n, visible=False)
    print("generated held-out:", rep["generated_heldout"])
    print("generated held-out, older scenes (defects may hide):", rep["generated_heldout_hidden"])
    # 4. time per photo, one core
    img = Image.open(dev_photos()[0][0]).convert("RGB")
    ts = []
    for _ in range(30):
        t = time.perf_counter()
        b, _ = detect(det, img)
        classify(cls, img, b)
        ts.append((time.perf_counter() - t) * 1000)
    rep["ms_per_photo_python"] = {"median": float(np.median(ts)), "p90": float(np.percentile(ts, 90))}
    rep["files"] = {os.path.basename(f): {"bytes": os.path.getsize(f),
                                          "sha256": hashlib.sha256(open(f, "rb").read()).hexdigest()}
                    for f in (a.detector, a.classifier)}
    print("ms/photo (python, incl. resize):", rep["ms_per_photo_python"], rep["files"])
    if a.sheet:
        sheet = Image.new("RGB", (4 * 512, 4 * 384), "white")
        for i, t in enumerate(tiles):
            sheet.paste(t, ((i % 4) * 512, (i // 4) * 384))
        sheet.save(a.sheet, optimize=True)
    with open(a.json, "w") as f:
        json.dump(rep, f, indent=1)


if __name__ == "__main__":
    main()
