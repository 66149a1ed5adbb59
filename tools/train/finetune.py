"""Fine-tune the last EfficientNet-Lite0 stages on generated line scenes only.

    python finetune.py --scenes 4000 --from-block 5 --epochs 4 --out runs/ft_b5.pt

Owns the fine-tuning of the backbone's tail (`lite0.TAIL_PREFIXES`: stages 5-6,
conv_head, bn2) for the classifier: crops of generated line scenes (true box + 10 %
margin, features.SIZE square, as `features.py` crops them; `visible_defects` on), classes 0/1/4/6,
a temporary 4-way linear layer on the avg+max pooled features. The frozen trunk's
activations (stem + stages 0-4) are computed once per scene and cached, so an epoch
runs only the tail. Batch norm keeps its ImageNet statistics (eval mode); its affine
weights train. Writes the tail's state dict, which `features.py --backbone` and
`train_line_classifier.py --backbone` load.

Must never train on a real photo (the dev photos stay held out, so leave-one-fruit-out
with a head fitted per fold stays honest), nor on scenes of seed 9300 (eval_line.py's
reported held-out set) or 9400 (validation, `features.SEED_VAL`; only scored here).
"""
from __future__ import annotations

import argparse
import os
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn.functional as F

from features import SEED_VAL, VAL_SIZE, trunk_acts, views
from lite0 import load_backbone, pooled_tail, tail_state
from line_gen import LINE_CLASSES, make_line_scene

SEED_FT = 7300  # generated scenes for fine-tuning (the head's scenes are 7100, the detector's 7200)


def _train_crop(i):
    img, box, cls = make_line_scene(SEED_FT, i, visible_defects=True)
    _, c = views(img, box, np.random.default_rng([SEED_FT, i, 1]))
    return c, cls


def _val_crop(i, visible):
    img, box, cls = make_line_scene(SEED_VAL, i, size=VAL_SIZE, visible_defects=visible)
    _, c = views(img, box, None)
    return c, cls


def _val_visible(i):
    return _val_crop(i, True)


def _val_plain(i):
    return _val_crop(i, False)


def build_cache(path, scenes, val):
    """Trunk activations of `scenes` training crops and of `val` validation crops (with
    and without visible_defects), with their classes; written to `path` once."""
    key = f"seed{SEED_FT}_n{scenes}_val{val}"
    if os.path.exists(path):
        c = dict(np.load(path))
        if str(c["key"]) == key:
            return c
    model = load_backbone()
    out = {"key": key}
    with Pool(int(os.environ.get("PROCS", "2"))) as pool:
        for name, fn, n in (("train", _train_crop, scenes), ("valv", _val_visible, val), ("valp", _val_plain, val)):
            got = pool.map(fn, range(n), chunksize=8)
            out[f"{name}_a"] = trunk_acts(model, np.stack([g[0] for g in got]))
            out[f"{name}_y"] = np.array([g[1] for g in got])
            print(f"cached {name}: {out[f'{name}_a'].shape}", flush=True)
    np.savez(path, **out)
    return out


def class_index(y):
    return np.searchsorted(LINE_CLASSES, y)


def scores(model, fc, acts, y, start):
    """4-class accuracy and normal-vs-defect of the fine-tuning head on cached activations."""
    pred = []
    with torch.no_grad():
        for k in range(0, len(acts), 128):
            pred.append(fc(pooled_tail(model, torch.from_numpy(acts[k:k + 128]), start)).argmax(1).numpy())
    pred = np.asarray(LINE_CLASSES)[np.concatenate(pred)]
    return float(np.mean(pred == y)), float(np.mean((pred == 0) == (y == 0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=4000)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--from-block", type=int, default=5, help="first trained block (5: stages 5-6; 6: stage 6 only)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--cache", default="runs/ft_cache.npz")
    ap.add_argument("--out", default="runs/ft_b5.pt")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    C = build_cache(a.cache, a.scenes, a.val)
    model = load_backbone()
    for p in model.parameters():
        p.requires_grad_(False)
    start = a.from_block
    acts = {k: C[f"{k}_a"] for k in ("train", "valv", "valp")}
    if start > 5:  # the frozen blocks between the cached trunk and the first trained one, once
        with torch.no_grad():
            acts = {k: np.concatenate([model.blocks[5:start](torch.from_numpy(v[i:i + 128])).numpy()
                                       for i in range(0, len(v), 128)]) for k, v in acts.items()}
    trained = [model.blocks[b] for b in range(start, 7)] + [model.conv_head, model.bn2]
    params = [p for m in trained for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    fc = torch.nn.Linear(2560, len(LINE_CLASSES))
    opt = torch.optim.AdamW([{"params": params, "lr": a.lr}, {"params": fc.parameters(), "lr": 1e-3}], weight_decay=1e-4)
    X, Y = acts["train"], torch.from_numpy(class_index(C["train_y"])).long()
    steps = a.epochs * ((len(X) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[a.lr, 1e-3], total_steps=steps, pct_start=0.1)
    model.eval()  # batch norm keeps the ImageNet statistics
    for ep in range(a.epochs):
        order = rng.permutation(len(X))
        tot = 0.0
        for k in range(0, len(X), a.batch):
            idx = np.sort(order[k:k + a.batch])
            f = pooled_tail(model, torch.from_numpy(X[idx]), start)
            loss = F.cross_entropy(fc(F.dropout(f, 0.2, training=True)), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        va, vn = scores(model, fc, acts["valv"], C["valv_y"], start)
        pa, pn = scores(model, fc, acts["valp"], C["valp_y"], start)
        print(f"epoch {ep + 1}: loss {tot / len(X):.3f} | val 9400 visible: acc {va:.3f} nvd {vn:.3f} | "
              f"plain: acc {pa:.3f} nvd {pn:.3f}", flush=True)
    torch.save(tail_state(model), a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
