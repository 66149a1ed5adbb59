"""Train the 8-class pear classifier on generated crops and export it to ONNX.

    python train_classifier.py --train data/train.npz --val data/val.npz \
        --epochs 10 --out runs/classifier.pt --onnx ../../models/pear_classifier.onnx
    python train_classifier.py --export-only --out runs/classifier.pt --onnx ...

Crops come from make_dataset.py: the scene's box (jittered) cut from the source
image and resized straight to 128x128 with bilinear, the server's path.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import CLASSES, MEAN, STD
from nets import PearClassifier, export_classifier

MEAN_T = torch.tensor(MEAN).view(1, 3, 1, 1)
STD_T = torch.tensor(STD).view(1, 3, 1, 1)


def to_input(batch_uint8: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
    x = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    if rng is not None:  # light photometric + flip augmentation
        n = x.shape[0]
        flip = torch.from_numpy(rng.random(n) < 0.5)
        x[flip] = x[flip].flip(3)
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32))
        chan = torch.from_numpy(rng.uniform(0.94, 1.06, (n, 3, 1, 1)).astype(np.float32))
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = torch.from_numpy(rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32))
        x = ((x - mean) * contrast + mean) * gain * chan
        x = x.clamp_(0, 1)
    return (x - MEAN_T) / STD_T


@torch.no_grad()
def evaluate(model, imgs, labs, bs=256):
    model.eval()
    preds = []
    for i in range(0, len(imgs), bs):
        preds.append(model(to_input(imgs[i:i + bs])).argmax(1).numpy())
    p = np.concatenate(preds)
    acc = float((p == labs).mean())
    nvd = float(((p == 0) == (labs == 0)).mean())
    conf = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(conf, (labs, p), 1)
    return acc, nvd, conf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", nargs="+", default=["data/train_0.npz"])
    ap.add_argument("--val", default="data/val.npz")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training crops")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast on CPUs with AMX)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/classifier.pt")
    ap.add_argument("--onnx", default="../../models/pear_classifier.onnx")
    ap.add_argument("--export-only", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(min(a.threads, 2))
    torch.manual_seed(a.seed)
    model = PearClassifier().to(memory_format=torch.channels_last)

    if not a.export_only:
        shards = [np.load(p) for p in a.train]
        X = np.concatenate([t["cls_img"] for t in shards])
        Y = np.concatenate([t["cls_lab"] for t in shards])
        del shards
        if a.limit:
            X, Y = X[:a.limit], Y[:a.limit]
        va = np.load(a.val)
        VX, VY = va["cls_img"], va["cls_lab"]
        print(f"train crops {len(X)}, val crops {len(VX)}, params {sum(p.numel() for p in model.parameters())}", flush=True)
        rng = np.random.default_rng(a.seed)
        steps_per_epoch = len(X) // a.bs
        total = steps_per_epoch * a.epochs
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=5e-4)
        warm = min(300, total // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
        step = 0
        for ep in range(a.epochs):
            model.train()
            perm = rng.permutation(len(X))
            t0, tl, tc = time.time(), 0.0, 0
            for b in range(steps_per_epoch):
                idx = np.sort(perm[b * a.bs:(b + 1) * a.bs])
                x = to_input(X[idx], rng)
                y = torch.from_numpy(Y[idx])
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                tl += loss.item()
                tc += 1
                if b % 100 == 0:
                    print(f"  ep {ep} step {b}/{steps_per_epoch} loss {tl / tc:.4f} {time.time() - t0:.0f}s", flush=True)
            acc, nvd, conf = evaluate(model, VX, VY)
            print(f"epoch {ep}: loss {tl / max(1, tc):.4f} val acc {acc:.4f} normal-vs-defect {nvd:.4f} ({time.time() - t0:.0f}s)", flush=True)
            os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
            torch.save(model.state_dict(), a.out)
        print("confusion (rows = truth):\n" + "\n".join(f"{CLASSES[i]:>12} {conf[i].tolist()}" for i in range(len(CLASSES))))

    model = PearClassifier()
    model.load_state_dict(torch.load(a.out, map_location="cpu"))
    os.makedirs(os.path.dirname(a.onnx) or ".", exist_ok=True)
    export_classifier(model, a.onnx)
    print(f"exported {a.onnx} ({os.path.getsize(a.onnx)} bytes)")


if __name__ == "__main__":
    main()
