"""Train the single-class anchor-free pear detector and export it to ONNX.

    python train_detector.py --train data/train.npz --val data/val.npz \
        --epochs 8 --out runs/detector.pt --onnx ../../models/pear_detector.onnx
    python train_detector.py --export-only --out runs/detector.pt --onnx ...

Assignment: a grid point (stride 16 or 32) is positive for a box when its
centre lies inside the box and within 2.5 strides of the box centre. Box loss:
1 - GIoU over positives. Score loss: BCE against the IoU of the predicted box
(positives) or 0 (everything else), so the top score marks the best box.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from nets import PearDetector, export_detector

CENTER_RADIUS = 2.5


def to_input(batch_uint8, boxes, rng=None):
    x = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    b = torch.from_numpy(boxes.copy())
    if rng is not None:
        S = x.shape[-1]
        flip = rng.random(len(x)) < 0.5
        ft = torch.from_numpy(flip)
        x[ft] = x[ft].flip(3)
        valid = b[:, 0] >= 0
        fb = ft & valid
        x0 = S - b[fb, 2]
        x1 = S - b[fb, 0]
        b[fb, 0], b[fb, 2] = x0, x1
        n = len(x)
        gain = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32))
        x = (x * gain).clamp_(0, 1)
    return x, b


def iou_giou(p, g):
    """p [B,N,4], g [B,1,4] xyxy -> iou, giou [B,N]."""
    ix0 = torch.maximum(p[..., 0], g[..., 0])
    iy0 = torch.maximum(p[..., 1], g[..., 1])
    ix1 = torch.minimum(p[..., 2], g[..., 2])
    iy1 = torch.minimum(p[..., 3], g[..., 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    ap = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    ag = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    union = ap + ag - inter + 1e-6
    iou = inter / union
    cx0 = torch.minimum(p[..., 0], g[..., 0])
    cy0 = torch.minimum(p[..., 1], g[..., 1])
    cx1 = torch.maximum(p[..., 2], g[..., 2])
    cy1 = torch.maximum(p[..., 3], g[..., 3])
    hull = (cx1 - cx0) * (cy1 - cy0) + 1e-6
    return iou, iou - (hull - union) / hull


def det_loss(model, x, gt):
    out = model.raw(x).float()
    d, logit = model.ltrb(out)
    pb = model.boxes_xyxy(d)                       # [B,N,4]
    P, st = model.points, model.pstride
    valid = gt[:, 0] >= 0
    g = gt[:, None, :]
    gcx = (gt[:, 0] + gt[:, 2]) / 2
    gcy = (gt[:, 1] + gt[:, 3]) / 2
    px, py = P[None, :, 0], P[None, :, 1]
    inside = (px > g[..., 0]) & (px < g[..., 2]) & (py > g[..., 1]) & (py < g[..., 3])
    near = ((px - gcx[:, None]).abs() < CENTER_RADIUS * st) & ((py - gcy[:, None]).abs() < CENTER_RADIUS * st)
    pos = inside & near & valid[:, None]
    iou, giou = iou_giou(pb, g)
    npos = pos.sum().clamp(min=1).float()
    box_loss = ((1 - giou) * pos).sum() / npos
    tgt = torch.zeros_like(logit)
    tgt[pos] = iou[pos].detach().clamp(min=0.05)
    obj_loss = F.binary_cross_entropy_with_logits(logit, tgt, reduction="sum") / npos
    return obj_loss + 2.0 * box_loss, obj_loss.item(), box_loss.item()


@torch.no_grad()
def evaluate(model, imgs, boxes, bs=128):
    """Mean IoU of the top-scoring box on scenes with a pear; false alarms on empty ones."""
    model.eval()
    ious, fa, n_empty = [], 0, 0
    for i in range(0, len(imgs), bs):
        x, b = to_input(imgs[i:i + bs], boxes[i:i + bs])
        out = model(x)                              # [B,5,N]
        score = out[:, 4]
        best = score.argmax(1)
        for j in range(len(x)):
            cx, cy, w, h, s = out[j, :, best[j]].tolist()
            if b[j, 0] < 0:
                n_empty += 1
                fa += s >= 0.5
                continue
            pbox = torch.tensor([[[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]]])
            iou, _ = iou_giou(pbox, b[j].view(1, 1, 4))
            ious.append(iou.item() if s >= 0.5 else 0.0)
    ious = np.array(ious)
    return float(ious.mean()), float((ious >= 0.75).mean()), fa, n_empty


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", nargs="+", default=["data/train_0.npz"])
    ap.add_argument("--val", default="data/val.npz")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="use only N training scenes (spread over the set)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast on CPUs with AMX)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/detector.pt")
    ap.add_argument("--onnx", default="../../models/pear_detector.onnx")
    ap.add_argument("--export-only", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(min(a.threads, 2))
    torch.manual_seed(a.seed)
    model = PearDetector().to(memory_format=torch.channels_last)

    if not a.export_only:
        shards = [np.load(p) for p in a.train]
        X = np.concatenate([t["det_img"] for t in shards])
        B = np.concatenate([t["det_box"] for t in shards])
        del shards
        if a.limit:
            sel = np.linspace(0, len(X) - 1, a.limit).astype(np.int64)
            X, B = X[sel], B[sel]
        va = np.load(a.val)
        VX, VB = va["det_img"], va["det_box"]
        print(f"train scenes {len(X)}, val scenes {len(VX)}, params {sum(p.numel() for p in model.parameters())}", flush=True)
        rng = np.random.default_rng(a.seed)
        spe = len(X) // a.bs
        total = spe * a.epochs
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=5e-4)
        warm = min(300, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
        for ep in range(a.epochs):
            model.train()
            perm = rng.permutation(len(X))
            t0, acc = time.time(), np.zeros(3)
            for s in range(spe):
                idx = np.sort(perm[s * a.bs:(s + 1) * a.bs])
                x, b = to_input(X[idx], B[idx], rng)
                x = x.contiguous(memory_format=torch.channels_last)
                ctx = torch.autocast("cpu", dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext()
                with ctx:
                    loss, lo, lb = det_loss(model, x, b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                sched.step()
                acc += (loss.item(), lo, lb)
                if s % 50 == 0:
                    print(f"  ep {ep} step {s}/{spe} loss {acc[0] / (s + 1):.4f} obj {acc[1] / (s + 1):.4f} box {acc[2] / (s + 1):.4f} {time.time() - t0:.0f}s", flush=True)
            miou, hit, fa, ne = evaluate(model, VX, VB)
            print(f"epoch {ep}: loss {acc[0] / spe:.4f} val mean IoU {miou:.4f} IoU>=0.75 {hit:.3f} false alarms {fa}/{ne} ({time.time() - t0:.0f}s)", flush=True)
            os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
            torch.save(model.state_dict(), a.out)

    model = PearDetector()
    model.load_state_dict(torch.load(a.out, map_location="cpu"))
    os.makedirs(os.path.dirname(a.onnx) or ".", exist_ok=True)
    export_detector(model, a.onnx)
    print(f"exported {a.onnx} ({os.path.getsize(a.onnx)} bytes)")


if __name__ == "__main__":
    main()
