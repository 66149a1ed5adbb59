#!/usr/bin/env python3
"""Builds tiny ONNX models with the same inputs, outputs and metadata as the shipped
ones, for tests that must not depend on the trained models (metadata fallbacks, the
service tests, a stand-in until the real models exist).

    python tools/ort/make_tiny_models.py tests/fixtures/parity

Needs `onnx` and `numpy` (e.g. a venv: python -m venv /tmp/v && /tmp/v/bin/pip install onnx numpy).
The weights are fixed (seeded), so the files are reproducible.

Written files:
- tiny_detector.onnx     YOLOv8 layout, input `images` [B,3,320,320] (dynamic batch),
                         output `output0` [B,5,1600], metadata names="{0: 'pear'}", imgsz=[320, 320]
- tiny_detector_b1.onnx  the same with a fixed batch of 1 (as ultralytics exports by default)
- tiny_classifier.onnx   input `input` [B,3,96,96], output `logits` [B,8], metadata names/input_size/mean/std
- tiny_classifier_nometa.onnx  the same graph, no metadata at all (a bare timm export)
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
LABELS = ["normal", "bruise", "rot", "scab", "crack", "insect", "deform", "spot"]


def detector(batch):
    s, stride = 320, 8
    g = s // stride  # 40 x 40 grid -> 1600 candidate boxes
    n = g * g
    rng = np.random.default_rng(1)
    # Box offsets and the score come from a 1x1 conv over 8x8-averaged colours.
    w = rng.normal(0, 0.5, (5, 3, 1, 1)).astype(np.float32)
    # Score: greenish-yellow (high R and G, low B) cells score high.
    w[4, :, 0, 0] = [6.0, 6.0, -10.0]
    b = np.zeros(5, np.float32)
    b[4] = -4.0
    ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    grid = np.zeros((1, 4, n), np.float32)
    grid[0, 0] = (xs.reshape(-1) + 0.5) * stride
    grid[0, 1] = (ys.reshape(-1) + 0.5) * stride
    grid[0, 2] = 96.0
    grid[0, 3] = 128.0
    scale = np.array([4.0, 4.0, 16.0, 16.0], np.float32).reshape(1, 4, 1)
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]),
        helper.make_node("Conv", ["pooled", "w", "b"], ["feat"]),
        helper.make_node("Reshape", ["feat", "shape"], ["flat"]),
        helper.make_node("Split", ["flat", "split"], ["box_raw", "score_raw"], axis=1),
        helper.make_node("Tanh", ["box_raw"], ["box_t"]),
        helper.make_node("Mul", ["box_t", "scale"], ["box_s"]),
        helper.make_node("Add", ["box_s", "grid"], ["boxes"]),
        helper.make_node("Sigmoid", ["score_raw"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(np.array([0, 5, n], np.int64), "shape"),
        numpy_helper.from_array(np.array([4, 1], np.int64), "split"),
        numpy_helper.from_array(scale, "scale"),
        numpy_helper.from_array(grid, "grid"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, s, s])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 5, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'pear'}", "imgsz": "[320, 320]", "stride": "32", "task": "detect"})
    onnx.checker.check_model(model)
    return model


def classifier(with_meta):
    size = 96
    rng = np.random.default_rng(2)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.8, (8, 8)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 8).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[4, 4], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]]
    graph = helper.make_graph(
        nodes,
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    if with_meta:
        helper.set_model_props(
            model,
            {
                "names": json.dumps(LABELS),
                "input_size": json.dumps([3, size, size]),
                "mean": json.dumps([0.485, 0.456, 0.406]),
                "std": json.dumps([0.229, 0.224, 0.225]),
            },
        )
    onnx.checker.check_model(model)
    return model


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity")
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(detector("batch"), out / "tiny_detector.onnx")
    onnx.save(detector(1), out / "tiny_detector_b1.onnx")
    onnx.save(classifier(True), out / "tiny_classifier.onnx")
    onnx.save(classifier(False), out / "tiny_classifier_nometa.onnx")
    print("wrote tiny models to", out)


if __name__ == "__main__":
    main()
