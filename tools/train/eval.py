"""Measure the exported ONNX models on held-out generated scenes with onnxruntime.

    python eval.py                       # defaults: ../../models/*.onnx, 800 scenes
    python eval.py --n 400 --json runs/eval.json

The pipeline is the server's: letterbox the scene to the detector's input,
take the top-scoring box (score >= 0.5), map it back to source pixels, crop it
and resize straight to the classifier's input (bilinear), softmax/argmax.

Reports, on scenes from seed SEED_EVAL (never used in training):
  * detector: mean IoU of the best box against the true box (a miss counts 0),
    false alarms on scenes without a pear;
  * classifier: accuracy and normal-vs-defect accuracy through the detector's
    crop (end to end), and on the true box;
  * the same end-to-end figures on tests/fixtures/heldout (labels.json);
  * file sizes, sha256, and latency on one core (intra_op_num_threads = 1).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

from common import CLASSES, SEED_EVAL, box_iou, crop_resize, letterbox, normalize_cls
from pear_gen import make_scene

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def session(path, threads=1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class Pipeline:
    def __init__(self, det_path, cls_path, threads=1, conf=0.5):
        self.det = session(det_path, threads)
        self.cls = session(cls_path, threads)
        meta = self.det.get_modelmeta().custom_metadata_map
        self.S = json.loads(meta["imgsz"])[0]
        cmeta = self.cls.get_modelmeta().custom_metadata_map
        self.H = int(cmeta["input_size"])
        self.conf = conf

    def detect(self, img: Image.Image):
        lb, scale, px, py = letterbox(img, self.S)
        x = np.ascontiguousarray(lb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        out = self.det.run(["output0"], {"images": x})[0][0]  # [5,N]
        j = int(out[4].argmax())
        cx, cy, w, h, s = out[:, j].tolist()
        if s < self.conf:
            return None, s
        W, H = img.size
        box = ((cx - w / 2 - px) / scale, (cy - h / 2 - py) / scale, (cx + w / 2 - px) / scale, (cy + h / 2 - py) / scale)
        box = (max(0.0, box[0]), max(0.0, box[1]), min(float(W), box[2]), min(float(H), box[3]))
        return box, s

    def classify(self, crops_uint8: np.ndarray):
        logits = self.cls.run(["logits"], {"input": normalize_cls(crops_uint8)})[0]
        return logits.argmax(1)

    def run(self, img):
        box, _ = self.detect(img)
        crop_box = box if box is not None else (0, 0, img.size[0], img.size[1])
        return box, int(self.classify(crop_resize(img, crop_box, self.H)[None])[0])


def figures(pred, truth):
    pred, truth = np.array(pred), np.array(truth)
    return float((pred == truth).mean()), float(((pred == 0) == (truth == 0)).mean())


def latency(sess, feed, runs=200):
    for _ in range(10):
        sess.run(None, feed)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000), float(np.percentile(ts, 90) * 1000)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default=os.path.join(ROOT, "models", "pear_detector.onnx"))
    ap.add_argument("--classifier", default=os.path.join(ROOT, "models", "pear_classifier.onnx"))
    ap.add_argument("--n", type=int, default=800, help="generated held-out scenes (every 25th has no pear)")
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures", "heldout"))
    ap.add_argument("--samples", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    p = Pipeline(a.detector, a.classifier)
    res = {}

    ious, e2e_p, e2e_t, gt_p, fa, n_empty, miss = [], [], [], [], 0, 0, 0
    conf = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    for i in range(a.n):
        empty = i % 25 == 24
        img, box, cls = make_scene(SEED_EVAL, i, empty=empty)
        dbox, _ = p.detect(img)
        if empty:
            n_empty += 1
            fa += dbox is not None
            continue
        if dbox is None:
            miss += 1
            ious.append(0.0)
            crop_box = (0, 0, img.size[0], img.size[1])
        else:
            ious.append(box_iou(dbox, box))
            crop_box = dbox
        crops = np.stack([crop_resize(img, crop_box, p.H), crop_resize(img, box, p.H)])
        pr = p.classify(crops)
        e2e_p.append(int(pr[0]))
        gt_p.append(int(pr[1]))
        e2e_t.append(cls)
        conf[cls, pr[0]] += 1
    ious = np.array(ious)
    acc, nvd = figures(e2e_p, e2e_t)
    gacc, gnvd = figures(gt_p, e2e_t)
    res["generated"] = dict(seed=SEED_EVAL, scenes=a.n, with_pear=len(ious), empty=n_empty,
                            mean_iou=float(ious.mean()), median_iou=float(np.median(ious)),
                            iou_ge_0_5=float((ious >= 0.5).mean()), missed=miss, false_alarms=fa,
                            accuracy=acc, normal_vs_defect=nvd, accuracy_true_box=gacc, normal_vs_defect_true_box=gnvd,
                            per_class_recall={CLASSES[c]: float(conf[c, c] / max(1, conf[c].sum())) for c in range(len(CLASSES))},
                            confusion_rows_truth={CLASSES[c]: " ".join(str(v) for v in conf[c]) for c in range(len(CLASSES))})

    for name, folder in (("fixtures", a.fixtures), ("samples", a.samples)):
        lab_path = os.path.join(folder, "labels.json")
        if name == "fixtures" and os.path.exists(lab_path):
            labels = json.load(open(lab_path))
        elif name == "samples" and os.path.isdir(folder):
            labels = {f: f.rsplit("_", 1)[0] for f in sorted(os.listdir(folder)) if f.endswith(".jpg") and not f.startswith("empty")}
        else:
            continue
        pr, tr, wrong = [], [], []
        for f, c in sorted(labels.items()):
            _, k = p.run(Image.open(os.path.join(folder, f)).convert("RGB"))
            pr.append(k)
            tr.append(CLASSES.index(c))
            if CLASSES[k] != c:
                wrong.append(f"{f}: {CLASSES[k]}")
        acc_f, nvd_f = figures(pr, tr)
        res[name] = dict(files=len(pr), accuracy=acc_f, normal_vs_defect=nvd_f, wrong=wrong)

    det1 = session(a.detector, 1)
    cls1 = session(a.classifier, 1)
    x = np.random.default_rng(0).random((1, 3, p.S, p.S), dtype=np.float32)
    dm, d90 = latency(det1, {"images": x})
    xc = np.random.default_rng(0).standard_normal((1, 3, p.H, p.H), dtype=np.float32)
    cm, c90 = latency(cls1, {"input": xc})
    xc8 = np.random.default_rng(0).standard_normal((8, 3, p.H, p.H), dtype=np.float32)
    c8m, _ = latency(cls1, {"input": xc8}, runs=50)
    res["files"] = {
        os.path.basename(a.detector): dict(bytes=os.path.getsize(a.detector), sha256=sha256(a.detector),
                                           ms_one_core_median=dm, ms_one_core_p90=d90),
        os.path.basename(a.classifier): dict(bytes=os.path.getsize(a.classifier), sha256=sha256(a.classifier),
                                             ms_one_core_median=cm, ms_one_core_p90=c90, ms_one_core_batch8=c8m),
    }
    txt = json.dumps(res, indent=1)
    print(txt)
    if a.json:
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        open(a.json, "w").write(txt)


if __name__ == "__main__":
    main()
