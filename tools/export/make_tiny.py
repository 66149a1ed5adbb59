#!/usr/bin/env python3
"""Tiny models with the exported models' contract, for `cargo test` without torch.

Writes tests/fixtures/export/: tiny_detector.onnx (dynamic H/W, YOLOv8 layout
[1, 4+2, N], the metadata export.py writes: pipeline ultralytics_pt, imgsz, stride,
nms_conf, nms_iou, crop_class, crop_box truncate), tiny_classifier.onnx (dynamic
H/W, 8 classes, resize shorter_side, channel_order bgr), three small PNG photos and
reference.json: what the original's code path answers with these two models (cv2
read, ultralytics LetterBox + non_max_suppression + scale_boxes, first class-0 box at
or above the threshold cast to int, crop, PIL, torchvision Resize/ToTensor/Normalize;
ONNX Runtime in place of torch for the networks).

    .venv/bin/python make_tiny.py   # from tools/export
"""
import json
import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parent / "work" / "ultralytics"))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from ultralytics.data.augment import LetterBox  # noqa: E402
from ultralytics.utils import nms, ops  # noqa: E402

import export  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parent.parent / "tests" / "fixtures" / "export"
PHOTOS = HERE.parent.parent / "tests" / "fixtures" / "real"
IMGSZ, STRIDE, CLS_SIZE, THRESHOLD = 160, 32, 48, 0.5


class TinyDetector(torch.nn.Module):
    """Stride-32 grid head in the YOLOv8 output layout: cx, cy, w, h, 2 class scores."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 4, 1), torch.nn.SiLU(),
            torch.nn.Conv2d(8, 16, 3, 4, 1), torch.nn.SiLU(),
            torch.nn.Conv2d(16, 16, 3, 2, 1), torch.nn.SiLU())
        self.head = torch.nn.Conv2d(16, 6, 1)

    def forward(self, x):
        y = self.head(self.body(x))
        b, _, h, w = y.shape
        gy = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(1, h, w)
        gx = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand(1, h, w)
        cx = (gx + torch.sigmoid(y[:, 0])) * STRIDE
        cy = (gy + torch.sigmoid(y[:, 1])) * STRIDE
        bw = torch.sigmoid(y[:, 2]) * 4 * STRIDE
        bh = torch.sigmoid(y[:, 3]) * 4 * STRIDE
        out = torch.stack([cx, cy, bw, bh, torch.sigmoid(y[:, 4]), torch.sigmoid(y[:, 5])], 1)
        return out.reshape(b, 6, h * w)


class TinyClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 8))

    def forward(self, x):
        return self.body(x) * 20.0


def photos():
    """Three small PNGs: two line photos scaled down, one portrait cut."""
    names = sorted(PHOTOS.glob("class*.jpg"))[:1] + sorted(PHOTOS.glob("normal*.jpg"))[:1]
    out = []
    for i, p in enumerate(names):
        img = cv2.resize(cv2.imread(str(p)), (256, 192), interpolation=cv2.INTER_AREA)
        out.append((f"photo_{i}.png", img))
    out.append(("portrait.png", np.ascontiguousarray(out[0][1][10:180, 60:170])))
    return out


def original(det, cls, img):
    """The original's code path with ONNX Runtime for the networks."""
    lb = LetterBox((IMGSZ, IMGSZ), auto=True, stride=STRIDE)(image=img)
    x = np.ascontiguousarray(lb[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255
    pred = torch.from_numpy(det.run(None, {"images": x})[0])
    boxes = nms.non_max_suppression(pred, 0.25, 0.7)[0]
    boxes[:, :4] = ops.scale_boxes(x.shape[2:], boxes[:, :4], img.shape)
    for row in boxes.tolist():
        if row[4] >= THRESHOLD and int(row[5]) == 0:
            x1, y1, x2, y2 = (int(v) for v in row[:4])
            crop = img[y1:y2, x1:x2]
            t = transforms.Compose([transforms.Resize(CLS_SIZE), transforms.ToTensor(),
                                    transforms.Normalize(export.MEAN, export.STD)])
            inp = t(Image.fromarray(crop).convert("RGB"))[None].numpy()
            logits = torch.from_numpy(cls.run(None, {"input": inp})[0])
            p = torch.softmax(logits, 1)[0]
            return {"class": int(p.argmax()), "probabilities": p.tolist(),
                    "box": [x1, y1, x2, y2], "score": row[4], "input": list(inp.shape[2:])}
    return {"class": 0, "probabilities": [], "box": None, "score": None}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(int(os.environ.get("TINY_SEED", "1")))
    det, cls = TinyDetector().eval(), TinyClassifier().eval()
    with torch.no_grad():
        # Content-dependent scores and boxes, class-0 boxes above the threshold.
        det.head.weight.mul_(6.0)
        det.head.bias[4] = 1.5
        cls.body[-1].weight.mul_(3.0)
    d_path, c_path = OUT / "tiny_detector.onnx", OUT / "tiny_classifier.onnx"
    x = torch.zeros(1, 3, IMGSZ, IMGSZ * 3 // 4)
    torch.onnx.export(det, (x,), str(d_path), input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                    "output0": {0: "batch", 2: "anchors"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)
    export.set_metadata(d_path, {
        "names": "{0: 'defected_pear', 1: 'normal_pear'}", "imgsz": f"[{IMGSZ}, {IMGSZ}]",
        "stride": str(STRIDE), "task": "detect", "pipeline": "ultralytics_pt",
        "nms_conf": "0.25", "nms_iou": "0.7", "crop_class": "0", "crop_box": "truncate",
    }, keep=False)
    torch.onnx.export(cls, (torch.zeros(1, 3, CLS_SIZE, CLS_SIZE),), str(c_path),
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "B", 2: "H", 3: "W"}, "logits": {0: "B"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)
    export.set_metadata(c_path, {
        "names": json.dumps(export.CLASSES), "input_size": str(CLS_SIZE),
        "mean": json.dumps(export.MEAN), "std": json.dumps(export.STD),
        "resize": "shorter_side", "channel_order": "bgr",
    }, keep=False)
    d_sess, c_sess = ort.InferenceSession(str(d_path)), ort.InferenceSession(str(c_path))
    ref = {}
    for name, img in photos():
        cv2.imwrite(str(OUT / name), img)
        ref[name] = original(d_sess, c_sess, cv2.imread(str(OUT / name)))
        print(name, ref[name]["class"], ref[name]["box"], ref[name].get("input"))
    (OUT / "reference.json").write_text(json.dumps({
        "confidence_threshold": THRESHOLD, "files": ref}, indent=1) + "\n")


if __name__ == "__main__":
    main()
