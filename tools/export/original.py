#!/usr/bin/env python3
"""The Python original's pipeline, as its code does it (issue 12), quirks included.

- cv2.imread (BGR, uint8);
- YOLO(path).predict(img) with ultralytics' defaults (imgsz 640, conf 0.25, iou 0.7,
  letterbox padded to a multiple of 32 for a .pt), then the config's
  confidence_threshold; boxes come sorted by score and the first box of class 0 is
  kept, its coordinates cast to int; the crop is img[y1:y2, x1:x2] (still BGR);
- PIL.Image.fromarray(crop).convert("RGB") (no channel swap: the classifier sees BGR
  as RGB), transforms.Resize(512), ToTensor(), ImageNet Normalize;
- argmax(softmax(logits)); no class-0 box: result 0.

    python original.py --pt det.pt --pth cls.pth --out ref.json images...

Writes one JSON record per image: class, probabilities, box, score.
"""
import argparse
import json
import os
import time
from pathlib import Path

# Offline, no auto-install, settings kept inside this folder (nothing fetched or
# written elsewhere).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parent / "work" / "ultralytics"))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import cv2  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from ultralytics import YOLO  # noqa: E402

NUM_CLASSES = 8


class Original:
    """Loads both models the way the original server does and runs one image."""

    def __init__(self, pt, pth, confidence_threshold=0.5, img_size=512):
        self.detector = YOLO(str(pt))
        model = torch.load(str(pth), map_location="cpu", weights_only=False)
        self.classifier = timm.create_model("efficientnet_b3", pretrained=False,
                                            num_classes=NUM_CLASSES)
        self.classifier.load_state_dict(model.state_dict())
        self.classifier.eval()
        self.threshold = confidence_threshold
        self.transform = transforms.Compose([
            transforms.Resize(img_size),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def detect(self, img):
        """First class-0 box at or above the threshold: ([x1, y1, x2, y2] ints, score)."""
        results = self.detector.predict(img, verbose=False)
        boxes = results[0].boxes
        for xyxy, conf, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(),
                                   boxes.cls.tolist()):
            if conf < self.threshold:
                continue
            if int(cls) == 0:
                return [int(v) for v in xyxy], float(conf)
        return None, None

    def classify(self, crop):
        pil = Image.fromarray(crop).convert("RGB")
        x = self.transform(pil).unsqueeze(0)
        with torch.no_grad():
            logits = self.classifier(x)
        probs = torch.softmax(logits, dim=1)[0]
        return int(torch.argmax(probs)), probs.tolist()

    def run(self, path):
        img = cv2.imread(str(path))
        box, score = self.detect(img)
        if box is None:
            return {"class": 0, "probabilities": [], "box": None, "score": None}
        x1, y1, x2, y2 = box
        crop = img[y1:y2, x1:x2]
        cls, probs = self.classify(crop)
        return {"class": cls, "probabilities": probs, "box": box, "score": score}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pt", required=True)
    ap.add_argument("--pth", required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", required=True)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    orig = Original(a.pt, a.pth, a.threshold)
    out = {}
    for p in a.images:
        t = time.perf_counter()
        rec = orig.run(p)
        rec["seconds"] = time.perf_counter() - t
        out[Path(p).name] = rec
        print(f"{Path(p).name}: class {rec['class']} box {rec['box']} score {rec['score']}")
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
