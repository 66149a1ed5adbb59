#!/usr/bin/env python3
"""Seeded random stand-ins for a line's own weights, saved as the original saves them.

- detector: ultralytics YOLOv8n built from its yaml (no download), 2 classes
  defected_pear / normal_pear, random weights (torch seed); the class-score biases are
  set from the photos so that class-0 boxes above the threshold exist on every photo
  and class-1 boxes rank above them on some; saved as an ultralytics checkpoint `.pt`
  (the model under "model", half precision, as ultralytics saves).
- classifier: timm efficientnet_b3, 8 classes, random weights; BatchNorm statistics
  taken from the photos' crops (so activations stay in range, as in a trained net);
  the last layer drawn again (seeded), within the span of the photos' centred
  features, until every class is the answer for at least one photo, keeping the draw
  with the widest top-2 margin; saved pickled
  (`torch.save(model, path)`), as the original's `efficientnetb3_512_version2.pth`.

    python make_weights.py --seed 12 --out work/ photos...
"""
import argparse
import math
import os
from pathlib import Path

# Offline, no auto-install, settings kept inside this folder (nothing fetched or
# written elsewhere).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parent / "work" / "ultralytics"))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from ultralytics.data.augment import LetterBox  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

from original import NUM_CLASSES, Original  # noqa: E402

NAMES = {0: "defected_pear", 1: "normal_pear"}


def letterboxed(img):
    x = LetterBox((640, 640), auto=True, stride=32)(image=img)
    x = torch.from_numpy(np.ascontiguousarray(x[..., ::-1].transpose(2, 0, 1))).float() / 255
    return x[None]


def make_detector(seed, imgs, path):
    torch.manual_seed(seed)
    m = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    m.names = dict(NAMES)
    head = m.model[-1]
    for seq in head.cv3:
        seq[-1].bias.data.zero_()
    m.eval()
    best0, best1 = [], []
    with torch.no_grad():
        for img in imgs:
            s = m(letterboxed(img))[0][0, 4:].clamp(1e-7, 1 - 1e-7)
            logit = torch.log(s / (1 - s))
            best0.append(float(logit[0].max()))
            best1.append(float(logit[1].max()))
    # Every photo's best class-0 anchor at p >= 0.75; class 1 a little weaker.
    b0 = math.log(0.75 / 0.25) - min(best0)
    b1 = b0 + float(np.median(best0) - np.median(best1)) - 0.5
    for seq in head.cv3:
        seq[-1].bias.data[0] = b0
        seq[-1].bias.data[1] = b1
    ckpt = {"model": m.half(), "train_args": {"imgsz": 640, "task": "detect"},
            "date": "2026-01-01T00:00:00", "version": "random-seeded"}
    torch.save(ckpt, path)
    print(f"detector: class biases {b0:.3f} / {b1:.3f} -> {path}")


def make_classifier(seed, crops, path, tries=400):
    torch.manual_seed(seed)
    net = timm.create_model("efficientnet_b3", pretrained=False, num_classes=NUM_CLASSES)
    # BatchNorm statistics of the crops (cumulative average over them).
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    net.train()
    with torch.no_grad():
        for x in crops:
            net(x)
    net.eval()
    with torch.no_grad():
        feats = torch.cat([net.forward_head(net.forward_features(x), pre_logits=True)
                           for x in crops])
    centred = feats - feats.mean(0, keepdim=True)
    # The last layer reads only the directions in which the photos' features differ
    # (the span of the centred features, as a trained head reads discriminative
    # directions): the logits of these photos are those of an unconstrained draw, but
    # a decoder's pixel noise, spread over all 1536 feature dimensions, reaches the
    # logits only through these few.
    _, sv, vt = torch.linalg.svd(centred, full_matrices=False)
    span = vt[sv > sv[0] * 1e-4]
    gen = torch.Generator().manual_seed(seed + 1)
    best = None
    for _ in range(tries):
        w = torch.randn(NUM_CLASSES, feats.shape[1], generator=gen)
        w = (w @ span.T) @ span
        z = centred @ w.T
        w = w * (3.0 / z.std())  # logits of a few units: confident but not saturated
        logits = centred @ w.T
        top = logits.topk(2, dim=1).values
        margin = float((top[:, 0] - top[:, 1]).min())
        classes = set(logits.argmax(1).tolist())
        if len(classes) == NUM_CLASSES and (best is None or margin > best[0]):
            best = (margin, w)
    if best is None:
        raise SystemExit("no draw of the last layer covers every class; more photos or tries")
    margin, w = best
    head = net.get_classifier()
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(-(w @ feats.mean(0)))
    torch.save(net, path)
    print(f"classifier: every class answered, smallest top-2 logit margin {margin:.3f} -> {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    imgs = [cv2.imread(p) for p in a.images]
    pt, pth = out / "pear_yolov8.pt", out / "efficientnetb3_512_version2.pth"
    make_detector(a.seed, imgs, pt)
    # Crops as the original makes them, with a throwaway classifier in place.
    tmp = out / "_bootstrap.pth"
    torch.save(timm.create_model("efficientnet_b3", pretrained=False, num_classes=NUM_CLASSES), tmp)
    orig = Original(pt, tmp, a.threshold)
    crops = []
    for img in imgs:
        box, _ = orig.detect(img)
        if box is None:
            continue
        x1, y1, x2, y2 = box
        from PIL import Image
        crops.append(orig.transform(Image.fromarray(img[y1:y2, x1:x2]).convert("RGB"))[None])
    tmp.unlink()
    print(f"{len(crops)} of {len(imgs)} photos have a class-0 box")
    make_classifier(a.seed, crops, pth)


if __name__ == "__main__":
    main()
