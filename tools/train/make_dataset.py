"""Render a stream of generated scenes into training arrays (one .npz).

    python make_dataset.py --seed 1000 --start 0 --count 2000 --crops 3 --out data/train_0.npz

Holds:
  det_img  uint8 [N,S,S,3]  letterboxed detector inputs (S = DET_SIZE)
  det_box  float32 [N,4]    x0,y0,x1,y1 in letterbox pixels (all -1 for an empty scene)
  cls_img  uint8 [M,H,W,3]  classifier crops: the box (jittered like a detector's
                             box would be) cut from the source scene and resized
                             straight to CLS_SIZE with bilinear, as the server does
  cls_lab  int64 [M]
Scene i of the stream is empty when i % 25 == 24, else of class i % 8, so
consecutive shards (--start/--count) of one seed make up one larger set.
"""
from __future__ import annotations

import argparse
import os
from multiprocessing import Pool

import numpy as np

from common import CLS_SIZE, DET_SIZE, crop_resize, letterbox
from pear_gen import make_scene


def jitter_box(rng, box, W, H, strength=1.0):
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    d = np.clip(rng.normal(0, 0.05 * strength, 4), -0.14, 0.14)
    if rng.random() < 0.15:  # looser box
        loose = rng.uniform(0, 0.12, 4)
        d[:2] -= loose[:2]
        d[2:] += loose[2:]
    x0, x1 = x0 + d[0] * bw, x1 + d[2] * bw
    y0, y1 = y0 + d[1] * bh, y1 + d[3] * bh
    return (max(0, x0), max(0, y0), min(W, x1), min(H, y1))


def is_empty(idx):
    return idx % 25 == 24


def _work(args):
    seed, idx, crops, jit = args
    empty = is_empty(idx)
    img, box, cls = make_scene(seed, idx, empty=empty)
    lb, scale, px, py = letterbox(img)
    if box is None:
        dbox = np.full(4, -1, np.float32)
    else:
        dbox = np.array([box[0] * scale + px, box[1] * scale + py, box[2] * scale + px, box[3] * scale + py], np.float32)
    out = []
    if box is not None:
        rng = np.random.default_rng([seed, idx, 7])
        for k in range(crops):
            b = box if (k == 0 and crops > 1) else jitter_box(rng, box, *img.size, strength=jit)
            out.append(crop_resize(img, b))
    return lb, dbox, out, cls


def build(seed, start, count, crops, jit=1.0, procs=2):
    jobs = [(seed, i, crops, jit) for i in range(start, start + count)]
    det_img = np.empty((count, DET_SIZE, DET_SIZE, 3), np.uint8)
    det_box = np.empty((count, 4), np.float32)
    cls_img, cls_lab = [], []
    with Pool(procs) as pool:
        for i, (lb, dbox, crops_, cls) in enumerate(pool.imap(_work, jobs, chunksize=16)):
            det_img[i] = lb
            det_box[i] = dbox
            for c in crops_:
                cls_img.append(c)
                cls_lab.append(cls)
            if i % 500 == 0:
                print(f"  scene {i}/{count}", flush=True)
    cls_img = np.stack(cls_img) if cls_img else np.empty((0, CLS_SIZE, CLS_SIZE, 3), np.uint8)
    return det_img, det_box, cls_img, np.array(cls_lab, np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="first scene index")
    ap.add_argument("--count", type=int, required=True, help="number of scenes")
    ap.add_argument("--crops", type=int, default=1, help="classifier crops per scene")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    det_img, det_box, cls_img, cls_lab = build(a.seed, a.start, a.count, a.crops, procs=a.procs)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    np.savez(a.out, det_img=det_img, det_box=det_box, cls_img=cls_img, cls_lab=cls_lab)
    print(f"wrote {a.out}: {len(det_img)} scenes, {len(cls_img)} crops")


if __name__ == "__main__":
    main()
