#!/usr/bin/env python3
"""ONNX Runtime intra-op threads for the exported original models: 1 (what pear-server
uses: one thread per session, parallelism from workers) against N, same run; and the
detector run on 4 photos as one batch against 4 runs of one.

Times the exported detector on each photo letterboxed the ultralytics way (640x480 for
the 4:3 line photos) and the classifier on each photo's pear crop resized shorter side
to 512, with the session options pear-server uses (all graph optimisations, no
spinning), alternating the thread counts photo by photo so both see the same load.
Prints the median per stage and the ratio: what giving one request all the cores
would gain at one client (at several clients the workers already use every core).
Then, 1 thread, the detector on 4 consecutive photos as one [4, 3, 480, 640] batch
(all 4:3 photos letterbox to the same shape) against the same 4 one by one,
alternating: what batching the detector across clients would gain per image.

    tools/export/.venv/bin/python tools/export/ort_threads.py \
        --models tools/export/work/models --photos ../shared/real_pears/dev
"""
import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def detector_input(img):
    """Shape-only stand-in of ultralytics' letterbox: long side 640, short side padded
    to a multiple of 32 (timing depends on the shape, not on exact pixels)."""
    h, w = img.shape[:2]
    r = 640 / max(h, w)
    nh, nw = round(h * r), round(w * r)
    ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32
    out = np.full((ph, pw, 3), 114, np.uint8)
    out[:nh, :nw] = cv2.resize(img, (nw, nh))
    return np.ascontiguousarray(out[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255


def classifier_input(img):
    """The central half of the photo (about a pear's box), shorter side to 512."""
    h, w = img.shape[:2]
    crop = img[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
    ch, cw = crop.shape[:2]
    s = 512 / min(ch, cw)
    crop = cv2.resize(crop, (round(cw * s), round(ch * s)), interpolation=cv2.INTER_AREA)
    x = (crop.astype(np.float32) / 255 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=1)
    a = ap.parse_args()
    models = Path(a.models)
    counts = (1, a.threads)
    det = {n: session(models / "pear_detector.onnx", n) for n in counts}
    cls = {n: session(models / "pear_classifier.onnx", n) for n in counts}
    photos = sorted(Path(a.photos).glob("*.jpg")) * a.passes
    times = {(stage, n): [] for stage in ("detector", "classifier") for n in counts}
    for i, p in enumerate(photos):
        img = cv2.imread(str(p))
        inputs = {"detector": detector_input(img), "classifier": classifier_input(img)}
        order = counts if i % 2 == 0 else counts[::-1]
        for n in order:
            for stage, s in (("detector", det[n]), ("classifier", cls[n])):
                x = inputs[stage]
                feed = {s.get_inputs()[0].name: x}
                if i == 0:
                    s.run(None, feed)  # warm
                t = time.perf_counter()
                s.run(None, feed)
                times[(stage, n)].append(time.perf_counter() - t)
    print(f"| stage | intra-op 1 ms | intra-op {a.threads} ms | ratio |")
    print("|---|---|---|---|")
    total = {n: 0.0 for n in counts}
    for stage in ("detector", "classifier"):
        m = {n: statistics.median(times[(stage, n)]) * 1e3 for n in counts}
        for n in counts:
            total[n] += m[n]
        print(f"| {stage} | {m[1]:.0f} | {m[a.threads]:.0f} | {m[1] / m[a.threads]:.2f}x |")
    print(f"| both | {total[1]:.0f} | {total[a.threads]:.0f} | "
          f"{total[1] / total[a.threads]:.2f}x |")

    s = det[1]
    name = s.get_inputs()[0].name
    xs = [detector_input(cv2.imread(str(p))) for p in photos]
    groups = [np.concatenate(xs[i:i + 4]) for i in range(0, len(xs) - 3, 4)]
    one, four = [], []
    for i, g in enumerate(groups):
        for batched in ((False, True) if i % 2 == 0 else (True, False)):
            t = time.perf_counter()
            if batched:
                s.run(None, {name: g})
            else:
                for x in g:
                    s.run(None, {name: x[None]})
            (four if batched else one).append((time.perf_counter() - t) / len(g))
    m1, m4 = statistics.median(one) * 1e3, statistics.median(four) * 1e3
    print(f"detector per image, 1 thread: batch 1 {m1:.0f} ms, batch 4 {m4:.0f} ms, "
          f"{m1 / m4:.2f}x ({len(groups)} groups of 4)")


if __name__ == "__main__":
    main()
