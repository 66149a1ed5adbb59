"""Write the sample scenes (samples/), the generated held-out fixtures
(tests/fixtures/heldout/) and the real-photo fixtures (tests/fixtures/real/) for the
line models.

    python make_line_fixtures.py

samples/: 3 generated line scenes per line class (normal, dark_spot, scab, dent),
480x360, named <label>_NN.jpg, plus empty_01.jpg (belt, no pear).
tests/fixtures/heldout/: 80 generated scenes (20 per line class) from SEED_HELDOUT,
a seed no training set uses, 480x360 (training rendered 640x480 and 384x288), and
labels.json = {"file.jpg": "label", ...}.
tests/fixtures/real/: the 14 dev photos (Apache-2.0, attribution in its README), plus
empty_belt.jpg cut from one of them (the belt left of the pear), and labels.json.
Deterministic: same code, same bytes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

from PIL import Image

from common import SEED_HELDOUT, SEED_SAMPLES
from line_gen import LINE_CLASSES, make_line_scene
from real import dev_photos, pear_box
from train_line_classifier import NAMES

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SIZE = (480, 360)


def save(img, path, quality):
    img.save(path, "JPEG", quality=quality, optimize=True)


def clear(folder, keep=("README.md",)):
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        if f not in keep and (f.endswith(".jpg") or f == "labels.json"):
            os.remove(os.path.join(folder, f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--heldout", default=os.path.join(ROOT, "tests", "fixtures", "heldout"))
    ap.add_argument("--real", default=os.path.join(ROOT, "tests", "fixtures", "real"))
    ap.add_argument("--per-class", type=int, default=20)
    a = ap.parse_args()

    clear(a.samples)
    idx = 0
    for c in LINE_CLASSES:
        for k in range(1, 4):
            img, _, _ = make_line_scene(SEED_SAMPLES, idx, cls=c, size=SIZE, jpeg=False)
            save(img, os.path.join(a.samples, f"{NAMES[c]}_{k:02d}.jpg"), 85)
            idx += 1
    img, _, _ = make_line_scene(SEED_SAMPLES, 1000, size=SIZE, empty=True, jpeg=False)
    save(img, os.path.join(a.samples, "empty_01.jpg"), 85)

    clear(a.heldout)
    labels = {}
    for i in range(a.per_class * len(LINE_CLASSES)):
        c = LINE_CLASSES[i % len(LINE_CLASSES)]
        img, _, _ = make_line_scene(SEED_HELDOUT, i, cls=c, size=SIZE, jpeg=False)
        f = f"scene_{i:03d}.jpg"
        save(img, os.path.join(a.heldout, f), 85)
        labels[f] = NAMES[c]
    with open(os.path.join(a.heldout, "labels.json"), "w") as fh:
        json.dump(labels, fh, indent=1, sort_keys=True)
        fh.write("\n")

    clear(a.real)
    labels = {}
    photos = dev_photos()
    for p, lab, fruit, cam in photos:
        name = os.path.basename(p)
        shutil.copyfile(p, os.path.join(a.real, name))
        labels[name] = {"class": lab, "fruit": fruit}
    p0 = photos[0][0]
    im = Image.open(p0).convert("RGB")
    b = pear_box(im)
    save(im.crop((0, 0, int(b[0]) - 40, im.size[1])), os.path.join(a.real, "empty_belt.jpg"), 90)
    labels["empty_belt.jpg"] = {"class": None, "fruit": None, "cut_from": os.path.basename(p0)}
    with open(os.path.join(a.real, "labels.json"), "w") as fh:
        json.dump(labels, fh, indent=1, sort_keys=True)
        fh.write("\n")

    for folder in (a.samples, a.heldout, a.real):
        total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"{folder}: {len(os.listdir(folder))} files, {total} bytes")


if __name__ == "__main__":
    main()
