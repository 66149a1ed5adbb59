#!/usr/bin/env python3
"""Writes the reference numbers for tests/inference_parity.rs with Python onnxruntime.

The preprocessing is written out here with numpy, independently of the Rust code but
to the same definition:
- decode with Pillow, convert("RGB");
- detector: ultralytics letterbox (scale to fit, Python rounding, pad 114/255, centred),
  RGB 0..1; output [1, 4+nc, N]; class-0 scores >= threshold; greedy NMS; best box
  mapped back to source pixels, clamped, rounded outwards to whole pixels;
- resizing: Pillow's BILINEAR coefficients (triangle filter widened when downscaling),
  applied in floating point as two matrices (no 8-bit rounding between passes);
- crop: the whole-pixel box [x1, y1, x2, y2] widened by the classifier's `crop_margin`
  metadata m (default 0) on each side, in float32 as the server does (Rect::widened):
  x1' = floor(x1 - m*w) >= 0, x2' = ceil(x2 + m*w) <= W (same for y with h), at least
  1 px; the reported bbox stays the unwidened box;
- classifier: the crop (or the whole image) resized to the input, (x/255 - mean)/std,
  softmax, argmax; labels/mean/std/input size/crop_margin from the model metadata.

    python tools/parity/make_reference.py \
        --classifier models/pear_classifier.onnx --detector models/pear_detector.onnx \
        --out tests/fixtures/parity/reference.json tests/fixtures/parity/*.png tests/fixtures/parity/*.jpg

Needs onnxruntime, numpy and pillow (a venv; not used at run time).
"""
import argparse
import ast
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

PAD = 114.0 / 255.0
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def coeffs(in_size, out_size):
    scale = in_size / out_size
    fs = max(scale, 1.0)
    m = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - fs + 0.5), 0)
        hi = min(int(center + fs + 0.5), in_size)
        j = np.arange(lo, hi, dtype=np.float64)
        w = np.maximum(1.0 - np.abs((j - center + 0.5) / fs), 0.0)
        if w.sum() > 0:
            m[i, lo:hi] = w / w.sum()
    return m


def resize(rgb, out_w, out_h):
    """rgb: HxWx3 float64 0..255 -> 3 x out_h x out_w."""
    wy = coeffs(rgb.shape[0], out_h)
    wx = coeffs(rgb.shape[1], out_w)
    return np.stack([wy @ rgb[:, :, c] @ wx.T for c in range(3)])


def letterbox_geometry(sw, sh, dw, dh):
    scale = min(dh / sh, dw / sw)
    nw = min(max(int(round(sw * scale)), 1), dw)
    nh = min(max(int(round(sh * scale)), 1), dh)
    left = max(int(round((dw - nw) / 2 - 0.1)), 0)
    top = max(int(round((dh - nh) / 2 - 0.1)), 0)
    return scale, left, top, nw, nh


def model_size(sess, meta, keys, fallback):
    shape = sess.get_inputs()[0].shape
    if isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0 and shape[3] > 0:
        return shape[2], shape[3]
    for k in keys:
        if k in meta:
            v = json.loads(meta[k])
            v = [v] if isinstance(v, int) else v
            return (v[0], v[0]) if len(v) == 1 else (v[-2], v[-1])
    return fallback, fallback


def parse_names(raw):
    try:
        v = json.loads(raw)
    except ValueError:
        v = ast.literal_eval(raw)
    if isinstance(v, dict):
        return [str(v[k]) for k in sorted(v, key=int)]
    return [str(x) for x in v]


def iou(a, b):
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(sess, rgb, size, conf, iou_thr):
    (dh, dw) = size
    sh, sw = rgb.shape[:2]
    scale, left, top, nw, nh = letterbox_geometry(sw, sh, dw, dh)
    x = np.full((1, 3, dh, dw), PAD, np.float64)
    x[0, :, top:top + nh, left:left + nw] = resize(rgb, nw, nh) / 255.0
    out = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0][0]
    if out.shape[0] > out.shape[1]:
        out = out.T
    f = np.float32
    cands = []
    for i in range(out.shape[1]):
        s = out[4, i]
        if s >= conf:
            cx, cy, w, h = out[0, i], out[1, i], out[2, i], out[3, i]
            cands.append([cx - w / f(2), cy - h / f(2), cx + w / f(2), cy + h / f(2), s])
    cands.sort(key=lambda c: -c[4])
    keep = []
    for c in cands:
        if all(iou(k, c) <= iou_thr for k in keep):
            keep.append(c)
    if not keep:
        return None
    b = keep[0]

    def back(v, off, hi):
        return float(np.float32(min(max((float(v) - off) / scale, 0.0), hi)))

    return [back(b[0], left, sw), back(b[1], top, sh), back(b[2], left, sw), back(b[3], top, sh), float(b[4])]


def pixel_box(d, sw, sh):
    x1, y1 = int(np.floor(d[0])), int(np.floor(d[1]))
    x2, y2 = int(np.ceil(d[2])), int(np.ceil(d[3]))
    if x2 <= x1:
        x1 = min(x1, sw - 1)
        x2 = x1 + 1
    if y2 <= y1:
        y1 = min(y1, sh - 1)
        y2 = y1 + 1
    return [x1, y1, min(x2, sw), min(y2, sh)]


def crop_margin(meta):
    """`crop_margin` metadata as the server reads it (an f32 in 0..=1; absent = 0)."""
    if "crop_margin" not in meta:
        return np.float32(0.0)
    m = np.float32(float(meta["crop_margin"].strip()))
    if not (0.0 <= m <= 1.0):
        raise SystemExit(f"crop_margin metadata must be a number in 0..=1, got {meta['crop_margin']!r}")
    return m


def widened(box, m, sw, sh):
    """Rect::widened: box [x1, y1, x2, y2] grown by m x its width/height per side (f32)."""
    if not (m > 0 and np.isfinite(m)):
        return list(box)
    f = np.float32
    x1, y1, x2, y2 = box
    mx, my = f(m * f(x2 - x1)), f(m * f(y2 - y1))
    nx1 = int(max(np.floor(f(f(x1) - mx)), f(0)))
    ny1 = int(max(np.floor(f(f(y1) - my)), f(0)))
    nx2 = int(min(np.ceil(f(f(x2) + mx)), f(sw)))
    ny2 = int(min(np.ceil(f(f(y2) + my)), f(sh)))
    return [nx1, ny1, max(nx2, nx1 + 1), max(ny2, ny1 + 1)]


def fnv1a64(path):
    """FNV-1a 64 of a file: lets the test say clearly when a model changed."""
    h = 0xCBF29CE484222325
    for b in Path(path).read_bytes():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", required=True)
    ap.add_argument("--detector")
    ap.add_argument("--conf", type=float, default=0.5)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--img-size", type=int, default=320)
    ap.add_argument("--classes", default="", help="comma-separated fallback labels")
    ap.add_argument("--out", required=True)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    cls = ort.InferenceSession(a.classifier, so, providers=["CPUExecutionProvider"])
    cmeta = cls.get_modelmeta().custom_metadata_map
    ch, cw = model_size(cls, cmeta, ["input_size"], a.img_size)
    mean = np.array(json.loads(cmeta["mean"]) if "mean" in cmeta else IMAGENET_MEAN).reshape(3, 1, 1)
    std = np.array(json.loads(cmeta["std"]) if "std" in cmeta else IMAGENET_STD).reshape(3, 1, 1)
    margin = crop_margin(cmeta)
    labels = parse_names(cmeta["names"]) if "names" in cmeta else [s for s in a.classes.split(",") if s]
    det = dsize = None
    if a.detector:
        det = ort.InferenceSession(a.detector, so, providers=["CPUExecutionProvider"])
        dmeta = det.get_modelmeta().custom_metadata_map
        dsize = model_size(det, dmeta, ["imgsz"], a.img_size)

    out_dir = Path(a.out).parent
    root = Path(__file__).resolve().parents[2]
    rel = lambda p: os.path.relpath(Path(p).resolve(), root)  # noqa: E731
    entries = []
    for path in a.images:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        sh, sw = rgb.shape[:2]
        d = detect(det, rgb, dsize, a.conf, a.iou) if det else None
        if det and d is None:
            entries.append({"file": os.path.relpath(path, out_dir), "class": 0, "label": "no_pear",
                            "probabilities": [], "bbox": None, "detection": None})
            continue
        box = pixel_box(d, sw, sh) if d else [0, 0, sw, sh]
        region = widened(box, margin, sw, sh)
        crop = rgb[region[1]:region[3], region[0]:region[2]]
        x = (resize(crop, cw, ch) / 255.0 - mean) / std
        logits = cls.run(None, {cls.get_inputs()[0].name: x[None].astype(np.float32)})[0][0].astype(np.float64)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        k = int(p.argmax())
        entries.append({
            "file": os.path.relpath(path, out_dir),
            "class": k,
            "label": labels[k] if k < len(labels) else f"class_{k}",
            "probabilities": [float(v) for v in p],
            "bbox": box if det else [0, 0, sw, sh],
            "detection": d,
            "crop": region,
        })
        print(f"{path}: {entries[-1]['label']} {p[k]:.4f} {box} crop {region}")
    ref = {
        "generator": "tools/parity/make_reference.py",
        "onnxruntime": ort.__version__,
        "classifier": rel(a.classifier),
        "classifier_fnv1a64": fnv1a64(a.classifier),
        "detector": rel(a.detector) if a.detector else None,
        "detector_fnv1a64": fnv1a64(a.detector) if a.detector else None,
        "command": "python tools/parity/make_reference.py " + " ".join(
            [f"--classifier {rel(a.classifier)}"] + ([f"--detector {rel(a.detector)}"] if a.detector else [])
            + [f"--conf {a.conf}", f"--iou {a.iou}", f"--img-size {a.img_size}"]
            + ([f"--classes {a.classes}"] if a.classes else []) + [f"--out {rel(a.out)}"]
            + [rel(p) for p in a.images]),
        "confidence_threshold": a.conf,
        "iou_threshold": a.iou,
        "img_size": a.img_size,
        "crop_margin": float(margin),
        "classes": [s for s in a.classes.split(",") if s],
        "images": entries,
    }
    Path(a.out).write_text(json.dumps(ref, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
