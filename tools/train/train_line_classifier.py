"""The line classifier: ImageNet EfficientNet-Lite0 (frozen) + a linear head over its
average- and max-pooled features, fitted on cached features (`features.py`) of the
dev photos (augmented), painted-defect copies of them, and generated line scenes.

    python train_line_classifier.py --feats runs/feats.npz --onnx ../../models/pear_classifier.onnx [--backbone runs/ft.pt]

The recipe (`RECIPE`) is the one `cv.py` judges by leave-one-fruit-out; this script
fits it once on everything and exports it. Output: 8 logits, class 0 normal; the line
has photos of classes 1, 4 and 6 only, so classes 2, 3, 5, 7 get a fixed -30 logit
(never answered). Input: the detector's box widened by 10 % on each side
(`crop_margin` metadata), resized straight to features.SIZE (192; 224 before session 6), ImageNet mean/std.
With `--backbone` the Lite0 tail is the fine-tuned one of `finetune.py` (the features in
`--feats` must have been computed with the same tail: `features.py --backbone`); its
weights are part of the exported graph like the rest of the backbone.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn as nn

from cv import fit, training_set
from features import MARGIN, SIZE
from lite0 import MEAN, STD, load_backbone
from nets import _set_meta

NAMES = ["normal", "dark_spot", "bruise", "cut", "scab", "insect_hole", "dent", "mold"]
RECIPE = dict(mode="c", feats="avgmax", use_paint=True, use_syn=True, C=0.05, kind="linear")


def _linear(W, b):
    fc = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(np.asarray(W, np.float32)))
        fc.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
    return fc


def head_module(clf, mu, sd):
    """The fitted head as torch layers over the raw pooled features: the standardisation
    is folded into the first linear layer; the fitted classes land on their rows of the
    8-output layout, the others get a fixed -30."""
    if hasattr(clf, "net"):  # cv.MlpHead: Dropout, Linear, ReLU, Dropout, Linear
        l1, l2 = clf.net[1], clf.net[4]
        W1 = l1.weight.detach().numpy() / sd
        b1 = l1.bias.detach().numpy() - (l1.weight.detach().numpy() * (mu / sd)).sum(1)
        W2, b2 = l2.weight.detach().numpy(), l2.bias.detach().numpy()
    else:
        W1 = b1 = None
        W2 = clf.coef_ / sd
        b2 = clf.intercept_ - (clf.coef_ * (mu / sd)).sum(1)
    W = np.zeros((8, W2.shape[1]), np.float32)
    b = np.full(8, -30.0, np.float32)
    for row, c in enumerate(clf.classes_):
        W[c], b[c] = W2[row], b2[row]
    last = _linear(W, b)
    return last if W1 is None else nn.Sequential(_linear(W1, b1), nn.ReLU(), last)


class LineClassifier(nn.Module):
    def __init__(self, clf, mu, sd, backbone=None):
        super().__init__()
        lite = load_backbone(backbone)
        lite.reset_classifier(0)
        self.backbone = lite
        self.fc = head_module(clf, mu, sd)

    def forward(self, x):
        f = self.backbone.forward_features(x)
        return self.fc(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default="runs/feats.npz")
    ap.add_argument("--onnx", default="../../models/pear_classifier.onnx")
    ap.add_argument("--backbone", default=None, help="fine-tuned Lite0 tail (finetune.py) the features were made with")
    a = ap.parse_args()
    F = dict(np.load(a.feats))
    X, Y, Wt = training_set(F, exclude=[], **{k: v for k, v in RECIPE.items() if k not in ("C", "kind")})
    clf, mu, sd = fit(X, Y, RECIPE["C"], Wt, RECIPE["kind"])
    model = LineClassifier(clf, mu, sd, a.backbone).eval()
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
        "description": ("pear-server line defect classifier: EfficientNet-Lite0 (ImageNet weights, "
                        + ("last stages fine-tuned on generated line scenes" if a.backbone else "frozen") + ") + "
                        "linear head on avg+max pooled features; input the detector box widened 10 % per side, "
                        f"resized straight to {SIZE}x{SIZE}, RGB, ImageNet mean/std; 8 logits, class 0 normal; "
                        "classes 2,3,5,7 unused (-30). tools/train/train_line_classifier.py."),
    })
    print("wrote", a.onnx)


if __name__ == "__main__":
    main()
