"""Cached Lite0 features for the classifier experiments and training.

    python features.py --out runs/feats.npz [--synthetic 800] [--views 16] [--painted 12]
    python features.py ... --trunk-cache runs/trunk.npz --backbone runs/ft_b5.pt

Writes, for each input mode (`whole` frame, `crop` = detector box with 10 % margin):
the pooled Lite0 features of augmented views of each dev photo (`real_*`), of
painted-defect versions of each dev photo (`paint_*`, source photo index kept so a
fold never trains on a painted copy of its held-out photo), and of generated line
scenes (`syn_*`), plus the plain (unaugmented) view of each dev photo (`test_*`).

`--backbone` embeds with a fine-tuned Lite0 tail (`finetune.py`) instead of the ImageNet
one; `--trunk-cache` keeps the frozen trunk's activations of every view (same options,
same views) so that each further backbone only runs the tail.
"""
from __future__ import annotations

import argparse
import os
from multiprocessing import Pool

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance

from lite0 import MEAN, STD, load_backbone, pooled_tail, trunk
from line_gen import make_line_scene
from real import dev_photos, paint_defect, pear_box, pear_mask

SIZE = int(os.environ.get("CLS_SIZE", "192"))  # classifier input; CLS_SIZE=224 repeats the runs before session 6
MARGIN = 0.1
SEED_SYN = 7100        # generated training scenes for the classifier
SEED_VAL = 9400        # generated validation scenes (choosing the head's setting; never trained on)
VAL_SIZE = (512, 384)  # the size eval_line.py's held-out scenes use (training renders 640x480)


def crop_margin(img, box, margin=MARGIN, rng=None):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if rng is not None:
        x1, x2 = x1 + rng.uniform(-0.06, 0.06) * w, x2 + rng.uniform(-0.06, 0.06) * w
        y1, y2 = y1 + rng.uniform(-0.06, 0.06) * h, y2 + rng.uniform(-0.06, 0.06) * h
    W, H = img.size
    return img.crop((max(0, int(x1 - margin * w)), max(0, int(y1 - margin * h)),
                     min(W, int(x2 + margin * w)), min(H, int(y2 + margin * h))))


def augment(img, rng):
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    img = img.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.75, 1.25))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.85, 1.15))
    return img


def views(img, box, rng):
    """(whole, crop) of one image, both SIZE x SIZE uint8."""
    whole = img.resize((SIZE, SIZE), Image.BILINEAR)
    crop = crop_margin(img, box, rng=rng).resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(whole), np.asarray(crop)


VISIBLE = os.environ.get("VISIBLE_DEFECTS", "0") == "1"   # line_gen's visible_defects (an experiment)


def _syn(i):
    img, box, cls = make_line_scene(SEED_SYN, i, visible_defects=VISIBLE)
    rng = np.random.default_rng([SEED_SYN, i, 1])
    w, c = views(img, box, rng)
    return w, c, cls


def _val(i):
    img, box, cls = make_line_scene(SEED_VAL, i, size=VAL_SIZE, visible_defects=VISIBLE)
    _, c = views(img, box, None)
    return c, cls


def to_input(arr):
    """NHWC uint8 views -> NCHW float tensor, ImageNet mean/std."""
    x = (arr.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2)).float()


def trunk_acts(model, arr):
    out = []
    for k in range(0, len(arr), 32):
        with torch.no_grad():
            out.append(trunk(model, to_input(arr[k:k + 32])).numpy())
    return np.concatenate(out)


def tail_feats(model, acts):
    out = []
    for k in range(0, len(acts), 64):
        with torch.no_grad():
            out.append(pooled_tail(model, torch.from_numpy(acts[k:k + 64])).numpy())
    return np.concatenate(out)


IMAGE_KEYS = ("real_w", "real_c", "paint_w", "paint_c", "test_w", "test_c", "bg_w", "bgtest_w", "syn_w", "syn_c", "val_c")


def build_views(a):
    """Every view as uint8 arrays (keys IMAGE_KEYS) and the labels, deterministic."""
    photos = dev_photos()
    rng = np.random.default_rng(11)
    small, boxes, masks = [], [], []
    for p, *_ in photos:
        im = Image.open(p).convert("RGB")
        b = pear_box(im)
        s = 768 / im.size[0]
        small.append(im.resize((768, 576), Image.BILINEAR))
        boxes.append([v * s for v in b])
        masks.append(pear_mask(im))
    data = {k: [] for k in ("real_w", "real_c", "real_i", "paint_w", "paint_c", "paint_i", "paint_y", "test_w", "test_c",
                            "bg_w", "bgtest_w")}
    for i, (im, b, m) in enumerate(zip(small, boxes, masks)):
        w, c = views(im, b, None)
        data["test_w"].append(w); data["test_c"].append(c)
        for _ in range(a.views):
            w, c = views(augment(im, rng), b, rng)
            data["real_w"].append(w); data["real_c"].append(c); data["real_i"].append(i)
        # background only: the pear's box (and a little more) blacked out (shortcut check)
        bg = im.copy()
        ImageDraw.Draw(bg).rectangle([b[0] - 16, b[1] - 16, b[2] + 16, b[3] + 16], fill=(0, 0, 0))
        data["bgtest_w"].append(np.asarray(bg.resize((SIZE, SIZE), Image.BILINEAR)))
        for _ in range(a.views):
            data["bg_w"].append(np.asarray(augment(bg, rng).resize((SIZE, SIZE), Image.BILINEAR)))
        for k in range(a.painted):
            cls = (1, 4, 6)[k % 3]
            w, c = views(augment(paint_defect(im, m, cls, rng), rng), b, rng)
            data["paint_w"].append(w); data["paint_c"].append(c); data["paint_i"].append(i); data["paint_y"].append(cls)
    with Pool(int(os.environ.get('PROCS', '2'))) as pool:
        syn = pool.map(_syn, range(a.synthetic), chunksize=8)
        val = pool.map(_val, range(a.val), chunksize=8)
    out = {"labels": np.array([p[1] for p in photos]), "fruits": np.array([p[2] for p in photos]),
           "cameras": np.array([p[3] for p in photos]), "names": np.array([os.path.basename(p[0]) for p in photos])}
    for k in ("real_i", "paint_i", "paint_y"):
        out[k] = np.array(data[k])
    imgs = {k: np.stack(data[k]) for k in IMAGE_KEYS[:8]}
    imgs["syn_w"] = np.stack([s[0] for s in syn])
    imgs["syn_c"] = np.stack([s[1] for s in syn])
    out["syn_y"] = np.array([s[2] for s in syn])
    if val:
        imgs["val_c"] = np.stack([v[0] for v in val])
        out["val_y"] = np.array([v[1] for v in val])
    return out, imgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/feats.npz")
    ap.add_argument("--synthetic", type=int, default=800)
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--painted", type=int, default=12)
    ap.add_argument("--val", type=int, default=0, help="generated validation scenes (seed SEED_VAL)")
    ap.add_argument("--backbone", default=None, help="fine-tuned tail (finetune.py); default the ImageNet one")
    ap.add_argument("--trunk-cache", default=None, help="npz of the trunk's activations, written once, then reused")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    model = load_backbone(a.backbone)
    key = f"syn{a.synthetic}_views{a.views}_painted{a.painted}_val{a.val}_visible{int(VISIBLE)}"
    if a.trunk_cache and os.path.exists(a.trunk_cache):
        cache = dict(np.load(a.trunk_cache))
        if str(cache.pop("key")) != key:
            raise SystemExit(f"{a.trunk_cache} was made with other options than {key}")
        out = {k: v for k, v in cache.items() if not k.startswith("act_")}
        acts = {k[4:]: v for k, v in cache.items() if k.startswith("act_")}
    else:
        out, imgs = build_views(a)
        acts = {k: trunk_acts(model, v) for k, v in imgs.items()}
        if a.trunk_cache:
            np.savez(a.trunk_cache, key=key, **out, **{f"act_{k}": v for k, v in acts.items()})
    for k, v in acts.items():
        out[k] = tail_feats(model, v)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    np.savez_compressed(a.out, **out)
    print("wrote", a.out, {k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
