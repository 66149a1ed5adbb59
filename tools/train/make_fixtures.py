"""Write the sample scenes (samples/) and the held-out fixtures (tests/fixtures/heldout/).

    python make_fixtures.py

samples/: 3 scenes per class, 480x360, named <class>_NN.jpg, plus empty_01.jpg.
tests/fixtures/heldout/: 80 scenes (10 per class) from SEED_HELDOUT, a seed
no training set uses, and labels.json = {"file.jpg": "class_name", ...}.
Both are deterministic: same code, same bytes.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from common import CLASSES, SEED_HELDOUT, SEED_SAMPLES
from pear_gen import make_scene

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def save(img, path, quality):
    img.save(path, "JPEG", quality=quality, optimize=True)


def clear_jpegs(folder):
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        if f.endswith(".jpg") or f == "labels.json":
            os.remove(os.path.join(folder, f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--heldout", default=os.path.join(ROOT, "tests", "fixtures", "heldout"))
    ap.add_argument("--per-class", type=int, default=10)
    a = ap.parse_args()

    clear_jpegs(a.samples)
    idx = 0
    for c, name in enumerate(CLASSES):
        for k in range(1, 4):
            img, _, _ = make_scene(SEED_SAMPLES, idx, cls=c, size=(480, 360), jpeg=False)
            save(img, os.path.join(a.samples, f"{name}_{k:02d}.jpg"), 85)
            idx += 1
    img, _, _ = make_scene(SEED_SAMPLES, 1000, size=(480, 360), empty=True, jpeg=False)
    save(img, os.path.join(a.samples, "empty_01.jpg"), 85)

    clear_jpegs(a.heldout)
    labels = {}
    sizes = [(400, 300), (300, 400), (384, 288), (360, 360)]
    for i in range(a.per_class * len(CLASSES)):
        c = i % len(CLASSES)
        rng = np.random.default_rng([SEED_HELDOUT, i, 99])
        size = sizes[int(rng.integers(len(sizes)))]
        img, _, _ = make_scene(SEED_HELDOUT, i, cls=c, size=size, jpeg=False)
        f = f"scene_{i:03d}.jpg"
        save(img, os.path.join(a.heldout, f), 80)
        labels[f] = CLASSES[c]
    with open(os.path.join(a.heldout, "labels.json"), "w") as fh:
        json.dump(labels, fh, indent=1, sort_keys=True)
        fh.write("\n")

    for folder in (a.samples, a.heldout):
        total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"{folder}: {len(os.listdir(folder))} files, {total} bytes")


if __name__ == "__main__":
    main()
