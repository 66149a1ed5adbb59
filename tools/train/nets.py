"""The two networks (plain torch) and the ONNX export shared by both trainers."""
from __future__ import annotations

import json

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import CLASSES, CLS_SIZE, DET_SIZE, DET_STRIDES, MEAN, STD


def conv_bn(cin, cout, k=3, s=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2 if k % 2 else 0, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def dw_sep(cin, cout, s=1):
    """Depthwise 3x3 + pointwise 1x1."""
    return nn.Sequential(conv_bn(cin, cin, 3, s, groups=cin), conv_bn(cin, cout, 1))


class DwRes(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c, 3, 1, groups=c), conv_bn(c, c, 1, act=False))

    def forward(self, x):
        return F.relu(x + self.body(x))


# --------------------------------------------------------------------------
# classifier


class PearClassifier(nn.Module):
    """Small plain CNN: 3x3 convs, BN, ReLU, global average + max pooling."""

    def __init__(self, num_classes=len(CLASSES), w=(24, 32, 64, 96, 112)):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, w[0], 3, 2),          # 64
            conv_bn(w[0], w[1], 3, 2),       # 32
            conv_bn(w[1], w[1], 3, 1),
            conv_bn(w[1], w[2], 3, 2),       # 16
            conv_bn(w[2], w[2], 3, 1),
            conv_bn(w[2], w[3], 3, 2),       # 8
            conv_bn(w[3], w[3], 3, 1),
            conv_bn(w[3], w[4], 3, 2),       # 4
            conv_bn(w[4], w[4], 3, 1),
        )
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(2 * w[4], num_classes)

    def forward(self, x):
        f = self.features(x)
        f = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        return self.fc(self.drop(f))


# --------------------------------------------------------------------------
# detector


class PearDetector(nn.Module):
    """Anchor-free single-class detector with a grid head at stride 16 and 32.

    forward() returns raw maps; decode() turns them into the YOLOv8 layout
    [B, 5, N]: cx, cy, w, h in input pixels, then sigmoid score.
    Each grid point predicts distances (l, t, r, b) from its centre to the
    box edges, in units of its stride (softplus), and an objectness logit.
    """

    def __init__(self, size=DET_SIZE, strides=DET_STRIDES):
        super().__init__()
        self.size = size
        self.strides = strides
        self.stem = nn.Sequential(
            conv_bn(3, 24, 4, 4),            # /4 (patchify)
            conv_bn(24, 48, 3, 2),           # /8
        )
        self.s16 = nn.Sequential(conv_bn(48, 64, 3, 2), conv_bn(64, 64), conv_bn(64, 64))      # /16
        self.s32 = nn.Sequential(conv_bn(64, 96, 3, 2), conv_bn(96, 96), conv_bn(96, 96))      # /32
        self.lat = conv_bn(96, 64, 1)
        self.fuse16 = conv_bn(64, 64)
        self.head16 = nn.Sequential(conv_bn(64, 64, 1), nn.Conv2d(64, 5, 1))
        self.head32 = nn.Sequential(conv_bn(96, 64, 1), nn.Conv2d(64, 5, 1))
        for h in (self.head16, self.head32):
            nn.init.constant_(h[-1].bias, 0.0)
            with torch.no_grad():
                h[-1].bias[4] = -4.0
        pts, st = [], []
        for s in strides:
            n = size // s
            ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            pts.append(torch.stack([xs.flatten(), ys.flatten()], 1).float().add(0.5).mul(s))
            st.append(torch.full((n * n,), float(s)))
        self.register_buffer("points", torch.cat(pts), persistent=False)   # [N,2]
        self.register_buffer("pstride", torch.cat(st), persistent=False)   # [N]

    def raw(self, x):
        f8 = self.stem(x)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p16 = self.fuse16(f16 + F.interpolate(self.lat(f32), scale_factor=2.0, mode="nearest"))
        o16 = self.head16(p16).flatten(2)
        o32 = self.head32(f32).flatten(2)
        return torch.cat([o16, o32], 2)  # [B,5,N]

    def ltrb(self, out):
        """Distances to box edges in pixels, [B,N,4], and logits [B,N]."""
        d = F.softplus(out[:, :4]).transpose(1, 2) * self.pstride[None, :, None] * 2.0
        return d, out[:, 4]

    def boxes_xyxy(self, d):
        p = self.points[None]
        return torch.cat([p - d[..., :2], p + d[..., 2:]], -1)

    def forward(self, x):
        out = self.raw(x)
        d, logit = self.ltrb(out)
        p = self.points[None]
        x0y0 = p - d[..., :2]
        x1y1 = p + d[..., 2:]
        cxcy = (x0y0 + x1y1) * 0.5
        wh = x1y1 - x0y0
        score = torch.sigmoid(logit)[..., None]
        return torch.cat([cxcy, wh, score], -1).transpose(1, 2)  # [B,5,N]


# --------------------------------------------------------------------------
# export


def _set_meta(path, props: dict):
    import onnx

    m = onnx.load(path)
    del m.metadata_props[:]
    for k, v in props.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    m.doc_string = ""
    onnx.checker.check_model(m)
    onnx.save(m, path)


def export_classifier(model, path):
    model = model.eval().cpu()
    x = torch.zeros(1, 3, CLS_SIZE, CLS_SIZE)
    torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "B"}, "logits": {0: "B"}}, opset_version=17,
                      do_constant_folding=True, dynamo=False)
    _set_meta(path, {
        "names": json.dumps(CLASSES),
        "input_size": str(CLS_SIZE),
        "mean": json.dumps(list(MEAN)),
        "std": json.dumps(list(STD)),
        "description": (f"pear-server pear defect classifier: {CLS_SIZE}x{CLS_SIZE} RGB crop of the "
                        "detected box (resized straight, bilinear), ImageNet mean/std; "
                        "output 8 logits, class 0 = normal. Trained on generated scenes (tools/train)."),
    })


def export_detector(model, path):
    model = model.eval().cpu()
    x = torch.zeros(1, 3, model.size, model.size)
    torch.onnx.export(model, (x,), path, input_names=["images"], output_names=["output0"],
                      opset_version=17, do_constant_folding=True, dynamo=False)
    _set_meta(path, {
        "names": "{0: 'pear'}",
        "imgsz": f"[{model.size}, {model.size}]",
        "stride": str(max(model.strides)),
        "task": "detect",
        "description": (f"pear-server pear detector: input [1,3,{model.size},{model.size}] RGB 0..1 "
                        "letterboxed (pad 114/255); output0 [1,5,N] = cx,cy,w,h (input pixels), "
                        "sigmoid pear score (YOLOv8 detect layout). Trained on generated scenes (tools/train)."),
    })
