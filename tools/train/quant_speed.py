"""Speed of the shipped models with static int8 quantisation (ONNX Runtime QDQ and
QOperator, u8 activations, s8 per-channel weights), against fp32, one core each.

    .venv/bin/python quant_speed.py [--out DIR]

Calibration: the 14 dev photos, whole frame resized to the model's input (enough to
measure speed; NOT a recipe whose figures were checked: the quantised models' verdicts
on the dev photos and the generated held-out set have not been measured). Writes the
quantised files to DIR (default /tmp/pear-int8), prints fp32 and int8 median ms.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from lite0 import MEAN, STD

DEV = os.path.join(os.path.dirname(__file__), "../../../shared/real_pears/dev")
MODELS = os.path.join(os.path.dirname(__file__), "../../models")


class Photos(CalibrationDataReader):
    def __init__(self, name, xs):
        self.it = iter([{name: x[None]} for x in xs])

    def get_next(self):
        return next(self.it, None)


def photos(size, normalise):
    out = []
    for f in sorted(glob.glob(os.path.join(DEV, "*.jpg"))):
        x = np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) / 255.0
        if normalise:
            x = (x - MEAN) / STD
        out.append(x.transpose(2, 0, 1).astype(np.float32))
    return out


def median_ms(path, size, runs=30):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    x = np.random.rand(1, 3, size, size).astype(np.float32)
    for _ in range(5):
        s.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {name: x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/pear-int8")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    # The classifier takes ImageNet-normalised input; the detector normalises inside.
    det_size = json.loads(ort.InferenceSession(os.path.join(MODELS, "pear_detector.onnx"))
                          .get_modelmeta().custom_metadata_map["imgsz"])[0]
    for name, size, normalise in (("pear_classifier.onnx", 224, True), ("pear_detector.onnx", det_size, False)):
        src = os.path.join(MODELS, name)
        pre = os.path.join(a.out, "pre_" + name)
        quant_pre_process(src, pre)
        inp = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name
        xs = photos(size, normalise)
        for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
            out = os.path.join(a.out, f"{fmt.name}_{name}")
            quantize_static(pre, out, Photos(inp, xs), quant_format=fmt, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True)
            print(f"{name} {fmt.name}: fp32 {median_ms(src, size):.2f} ms, int8 {median_ms(out, size):.2f} ms, "
                  f"{os.path.getsize(out):,} bytes", flush=True)


if __name__ == "__main__":
    main()
