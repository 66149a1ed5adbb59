#!/usr/bin/env python3
"""Turns the Python original's weights into the two ONNX files pear-server loads.

    python export.py --pth efficientnetb3_512_version2.pth --pt best.pt --out models/

- classifier: the `.pth` is loaded as the original loads it
  (`torch.load(..., weights_only=False).state_dict()` into
  `timm.create_model('efficientnet_b3', num_classes=8)`), exported with dynamic batch,
  H and W (the original's `Resize(512)` keeps the aspect ratio), metadata:
  `names`, `input_size` 512, `mean`/`std` (ImageNet), `resize` = `shorter_side`,
  `channel_order` = `bgr` (the original hands OpenCV's BGR crop to PIL as RGB).
- detector: the ultralytics `.pt` through ultralytics' own ONNX export (dynamic H and
  W: a `.pt` is letterboxed only to a multiple of 32), ultralytics' metadata kept and
  `pipeline` = `ultralytics_pt`, `nms_conf` 0.25, `nms_iou` 0.7 (predict's defaults),
  `crop_class` 0, `crop_box` = `truncate` (the original's `int()`) added.

- `--int8`: also writes `int8/` copies quantised by ONNX Runtime's dynamic
  quantisation (weights uint8, activations quantised per call; ConvInteger/MatInteger
  on the CPU), metadata copied, `quantization` = `int8_dynamic` added. Its agreement
  with fp32 is measured by speed.py, not assumed.

Nothing is downloaded: ultralytics runs offline, without auto-install.
"""
import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

# Offline, no auto-install, settings kept inside this folder (nothing fetched or
# written elsewhere).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parent / "work" / "ultralytics"))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import onnx  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

CLASSES = ["normal", "dark_spot", "bruise", "cut", "scab", "insect_hole", "dent", "mold"]
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def set_metadata(path, props, keep=True):
    m = onnx.load(str(path))
    old = {p.key: p.value for p in m.metadata_props} if keep else {}
    old.update(props)
    del m.metadata_props[:]
    for k, v in old.items():
        e = m.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_classifier(pth, out, classes, size=512):
    model = torch.load(str(pth), map_location="cpu", weights_only=False)
    net = timm.create_model("efficientnet_b3", pretrained=False, num_classes=len(classes))
    net.load_state_dict(model.state_dict())
    net.eval()
    x = torch.zeros(1, 3, size, size * 4 // 3)
    torch.onnx.export(net, (x,), str(out), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "B", 2: "H", 3: "W"}, "logits": {0: "B"}},
                      opset_version=17, do_constant_folding=True, dynamo=False)
    set_metadata(out, {
        "names": json.dumps(classes),
        "input_size": str(size),
        "mean": json.dumps(MEAN),
        "std": json.dumps(STD),
        "resize": "shorter_side",
        "channel_order": "bgr",
        "description": ("timm efficientnet_b3 exported by tools/export from the Python "
                        f"original's .pth: crop (BGR as RGB) resized shorter side to {size}, "
                        "ImageNet mean/std, logits [B, K]"),
    }, keep=False)
    print(f"classifier -> {out}")


def export_detector(pt, out, imgsz=640):
    from ultralytics import YOLO
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / Path(pt).name
        shutil.copy(pt, src)
        made = YOLO(str(src)).export(format="onnx", imgsz=imgsz, dynamic=True,
                                     simplify=False, opset=17, verbose=False)
        shutil.move(str(made), str(out))
    set_metadata(out, {
        "pipeline": "ultralytics_pt",
        "nms_conf": "0.25",
        "nms_iou": "0.7",
        "crop_class": "0",
        "crop_box": "truncate",
    })
    print(f"detector -> {out}")


def quantize_int8(src, out):
    """ONNX Runtime dynamic int8 quantisation of `src` into `out`, metadata kept."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(src), str(out), weight_type=QuantType.QUInt8)
    props = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    props["quantization"] = "int8_dynamic"
    set_metadata(out, props, keep=False)
    print(f"int8 -> {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pth", help="the original's classifier (pickled timm efficientnet_b3)")
    ap.add_argument("--pt", help="the original's ultralytics YOLOv8 detector")
    ap.add_argument("--out", default=".", help="folder for the .onnx files")
    ap.add_argument("--classes", default=",".join(CLASSES),
                    help="comma-separated class names, index = class")
    ap.add_argument("--size", type=int, default=512, help="the original's Resize(N)")
    ap.add_argument("--int8", action="store_true",
                    help="also write int8 (ONNX Runtime dynamic quantisation) copies to OUT/int8/")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.pth:
        export_classifier(a.pth, out / "pear_classifier.onnx", a.classes.split(","), a.size)
    if a.pt:
        export_detector(a.pt, out / "pear_detector.onnx")
    if not (a.pth or a.pt):
        ap.error("give --pth and/or --pt")
    if a.int8:
        (out / "int8").mkdir(exist_ok=True)
        made = [n for n, given in (("pear_classifier.onnx", a.pth), ("pear_detector.onnx", a.pt))
                if given]
        for name in made:
            quantize_int8(out / name, out / "int8" / name)


if __name__ == "__main__":
    main()
