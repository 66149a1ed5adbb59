"""The real line photos (`../shared/real_pears/dev/`, Apache-2.0, AISeedHub/LinuxIT-TCP-IP):
labels and fruit groups from the file names, and a pear box from colour segmentation
(used as the detector's target on real photos and to judge the detector)."""
from __future__ import annotations

import glob
import os

import numpy as np
from PIL import Image
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
DEV = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "real_pears", "dev"))
# original class index of each file-name label
LABELS = {"normal0": 0, "class1": 1, "class4": 4, "class6": 6}


def dev_photos(folder: str = DEV):
    """[(path, label, fruit, camera)] sorted by name."""
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "*.jpg"))):
        name = os.path.basename(p)
        tag, rest = name.split("__", 1)
        fruit = rest.split("_", 1)[0]
        camera = rest.split("_", 1)[1][:16]
        out.append((p, LABELS[tag], fruit, camera))
    return out


def pear_mask(img: Image.Image, work: int = 256) -> np.ndarray:
    """Boolean mask of the pear at `work` px wide: yellow, bright, saturated, the
    largest blob, holes filled."""
    w, h = img.size
    small = img.convert("RGB").resize((work, round(work * h / w)), Image.BILINEAR)
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32)
    rgb = np.asarray(small, dtype=np.float32)
    hue, sat, val = hsv[..., 0] * 360 / 255, hsv[..., 1] / 255, hsv[..., 2] / 255
    m = (hue > 25) & (hue < 65) & (sat > 0.35) & (val > 0.35) & (rgb[..., 0] > rgb[..., 2] + 40)
    m = ndimage.binary_opening(m, iterations=2)
    lab, n = ndimage.label(m)
    if n == 0:
        return np.zeros_like(m)
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    big = lab == (1 + int(np.argmax(sizes)))
    big = ndimage.binary_closing(big, iterations=6)
    return ndimage.binary_fill_holes(big)


def pear_box(img: Image.Image, work: int = 256):
    """[x1, y1, x2, y2] of the pear in source pixels (from `pear_mask`), or None."""
    m = pear_mask(img, work)
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    s = img.size[0] / m.shape[1]
    return [float(xs.min() * s), float(ys.min() * s), float((xs.max() + 1) * s), float((ys.max() + 1) * s)]


def paint_defect(img: Image.Image, mask: np.ndarray, cls: int, rng) -> Image.Image:
    """Paints a generated defect of line class `cls` (1 spots/streaks, 4 scab, 6 dents and
    bruises) onto the pear of a real photo; `mask` is `pear_mask` at any width. Used only
    for training data; never on a photo that is being evaluated."""
    from line_gen import _dents, _scab, _spots

    W, H = img.size
    m = Image.fromarray((mask * 255).astype(np.uint8)).resize((W, H), Image.BILINEAR)
    inside = ndimage.binary_erosion(np.asarray(m) > 127, iterations=max(2, W // 40)).astype(np.float32)
    if inside.sum() < 100:
        return img
    ys, xs = np.nonzero(inside)
    r = float(0.5 * max(xs.max() - xs.min(), ys.max() - ys.min()))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    alb = np.asarray(img.convert("RGB"), np.float32) / 255.0
    if cls == 1:
        alb = _spots(rng, alb, inside, inside, xx, yy, r, streaks=rng.random() < 0.5)
    elif cls == 4:
        alb = _scab(rng, alb, inside, inside, xx, yy, r)
    else:
        hgt = np.zeros((H, W), np.float32)
        alb, hgt = _dents(rng, alb, hgt, inside, inside, xx, yy, r)
        gy, gx = np.gradient(hgt)
        # top light: a slope facing down darkens, facing up brightens
        shade = np.clip(1 + 3.0 * gy * inside + 1.0 * gx * inside * rng.normal(0, 0.5), 0.45, 1.3)
        alb = alb * shade[..., None]
    return Image.fromarray((np.clip(alb, 0, 1) * 255).astype(np.uint8), "RGB")
