"""The line classifier: ImageNet EfficientNet-Lite0 (frozen) + a linear head over its
average- and max-pooled features, fitted on cached features (`features.py`) of the
dev photos (augmented), painted-defect copies of them, and generated line scenes.

    python train_line_classifier.py --feats runs/feats.npz --onnx ../../models/pear_classifier.onnx

The recipe (`RECIPE`) is the one `cv.py` judges by leave-one-fruit-out; this script
fits it once on everything and exports it. Output: 8 logits, class 0 normal; the line
has photos of classes 1, 4 and 6 only, so classes 2, 3, 5, 7 get a fixed -30 logit
(never answered). Input: the detector's box widened by 10 % on each side
(`crop_margin` metadata), resized straight to 224x224, ImageNet mean/std.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn as nn

from cv import fit, training_set
from features import MARGIN, SIZE
from lite0 import MEAN, STD, load_lite0
from nets import _set_meta

NAMES = ["normal", "dark_spot", "bruise", "cut", "scab", "insect_hole", "dent", "mold"]
RECIPE = dict(mode="c", feats="avgmax", use_paint=True, use_syn=True, C=0.05)


class LineClassifier(nn.Module):
    def __init__(self, clf, mu, sd):
        super().__init__()
        lite = load_lite0()
        lite.reset_classifier(0)
        self.backbone = lite
        W = np.zeros((8, len(mu)), np.float32)
        b = np.full(8, -30.0, np.float32)
        coef, icpt = clf.coef_, clf.intercept_
        for row, c in enumerate(clf.classes_):
            # standardisation folded into the linear layer
            W[c] = coef[row] / sd
            b[c] = icpt[row] - float(np.sum(coef[row] * mu / sd))
        self.fc = nn.Linear(len(mu), 8)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(W))
            self.fc.bias.copy_(torch.from_numpy(b))

    def forward(self, x):
        f = self.backbone.forward_features(x)
        return self.fc(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default="runs/feats.npz")
    ap.add_argument("--onnx", default="../../models/pear_classifier.onnx")
    a = ap.parse_args()
    F = dict(np.load(a.feats))
    X, Y, Wt = training_set(F, exclude=[], **{k: v for k, v in RECIPE.items() if k != "C"})
    clf, mu, sd = fit(X, Y, RECIPE["C"], Wt)
    model = LineClassifier(clf, mu, sd).eval()
    # the exported network must reproduce the fitted head on the cached features
    with torch.no_grad():
        z = model.fc(torch.from_numpy(F["test_c"]).float()).softmax(1).numpy()
    ref = clf.predict_proba((F["test_c"] - mu) / sd)
    err = float(np.abs(z[:, clf.classes_] - ref).max())
    print("head check: max |p - p_sklearn| =", err)
    assert err < 1e-4, err
    x = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(model, (x,), a.onnx, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "B"}, "logits": {0: "B"}}, opset_version=17,
                      do_constant_folding=True, dynamo=False)
    _set_meta(a.onnx, {
        "names": json.dumps(NAMES),
        "input_size": str(SIZE),
        "mean": json.dumps(list(MEAN)),
        "std": json.dumps(list(STD)),
        "crop_margin": str(MARGIN),
        "description": ("pear-server line defect classifier: EfficientNet-Lite0 (ImageNet weights, frozen) + "
                        "linear head on avg+max pooled features; input the detector box widened 10 % per side, "
                        f"resized straight to {SIZE}x{SIZE}, RGB, ImageNet mean/std; 8 logits, class 0 normal; "
                        "classes 2,3,5,7 unused (-30). tools/train/train_line_classifier.py."),
    })
    print("wrote", a.onnx)


if __name__ == "__main__":
    main()
