"""Constants and the image paths shared by the generator, the trainers and eval.

The two preprocessing functions here mirror what the Rust server does:
  * `letterbox`      - detector input (keep aspect, pad with 114, RGB 0..1)
  * `crop_resize`    - classifier input (crop the box in source pixels, resize
                       straight to HxW with bilinear, no aspect keep)
"""
from __future__ import annotations

import numpy as np
from PIL import Image

CLASSES = ["normal", "black_spot", "bruise", "cut", "rot", "insect_hole", "scab", "mold"]
NUM_CLASSES = len(CLASSES)

DET_SIZE = 256          # detector input S (square)
DET_STRIDES = (16, 32)  # grid head strides
CLS_SIZE = 128          # classifier input H = W
PAD_VALUE = 114
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# Seeds. Training and validation draw scenes from their own streams; the
# held-out fixtures and the samples use seeds that training never touches.
SEED_TRAIN = 1000
SEED_VAL = 2000
SEED_HELDOUT = 90210     # tests/fixtures/heldout (never used in training)
SEED_SAMPLES = 31337     # samples/
SEED_EVAL = 55555        # eval.py's larger held-out set (never used in training)


def letterbox(img: Image.Image, size: int = DET_SIZE):
    """Resize keeping aspect so the long side is `size`, centre, pad with 114.

    Returns (uint8 HxWx3 array, scale, pad_x, pad_y); a source point p maps to
    p * scale + pad.
    """
    w, h = img.size
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = img.convert("RGB").resize((nw, nh), Image.BILINEAR)
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = np.asarray(resized)
    return canvas, scale, px, py


def crop_resize(img: Image.Image, box, size: int = CLS_SIZE) -> np.ndarray:
    """Crop box (x0, y0, x1, y1) in source pixels (clamped to the image) and
    resize straight to size x size with bilinear filtering. uint8 HxWx3."""
    w, h = img.size
    x0, y0, x1, y1 = box
    x0 = int(np.clip(np.floor(x0), 0, w - 1))
    y0 = int(np.clip(np.floor(y0), 0, h - 1))
    x1 = int(np.clip(np.ceil(x1), x0 + 1, w))
    y1 = int(np.clip(np.ceil(y1), y0 + 1, h))
    return np.asarray(img.convert("RGB").crop((x0, y0, x1, y1)).resize((size, size), Image.BILINEAR))


def normalize_cls(batch_uint8: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> NCHW float32, ImageNet mean/std."""
    x = batch_uint8.astype(np.float32) / 255.0
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def box_iou(a, b) -> float:
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0
