"""First check of static int8 (QDQ) line models: quantise both shipped models with
crop-calibrated inputs (the dev photos and 60 generated training-seed scenes, through
the fp32 detector's boxes, the server's preprocessing), then compare with fp32 on the
dev photos (verdicts, p(normal), box; the classifier trained on these photos, so this
is agreement, not a score) and on the generated held-out set (seed 9300, eval_line.py's
heldout()). Writes the int8 files to /tmp/q8e. Measurement only: nothing is shipped.

    .venv/bin/python quant_check.py [--keep-fp32] [--classifier-only]

--keep-fp32 leaves the first and last convolutions, every depthwise convolution and
any Gemm/MatMul in float (ONNX Runtime `nodes_to_exclude`), the layers int8 hurts most
in MobileNet-like networks. --classifier-only keeps the fp32 detector (its boxes move
most under int8). Also prints each int8 file's one-core time.
"""
import glob
import json
import os
import sys
import time

import numpy as np
import onnx
from PIL import Image
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType
from onnxruntime.quantization.shape_inference import quant_pre_process
import eval_line as E
from quant_speed import median_ms
from line_gen import make_line_scene
HERE = os.path.dirname(os.path.abspath(__file__))
M = os.path.join(HERE, '../../models/')
det32, cls32 = E.session(M + 'pear_detector.onnx'), E.session(M + 'pear_classifier.onnx')
dev = sorted(glob.glob(os.path.join(HERE, '../../../shared/real_pears/dev/*.jpg')))
# calibration inputs: dev photos + 60 generated training-seed scenes
cal_imgs = [Image.open(f).convert('RGB') for f in dev] + [make_line_scene(7100, i)[0] for i in range(60)]
det_in, cls_in = [], []
S = json.loads(E.meta(det32)['imgsz'])[0]
for img in cal_imgs:
    arr, s, px, py = E.letterbox(img, S)
    det_in.append((arr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
    b, _ = E.detect(det32, img)
    if b is None: continue
    m = E.meta(cls32); CS, mg = int(m['input_size']), float(m.get('crop_margin', 0))
    mean, std = np.array(json.loads(m['mean']), np.float32), np.array(json.loads(m['std']), np.float32)
    W, H = img.size; x1, y1, x2, y2 = b; w, h = x2 - x1, y2 - y1
    c = img.crop((max(0, int(x1 - mg * w)), max(0, int(y1 - mg * h)), min(W, int(x2 + mg * w)), min(H, int(y2 + mg * h))))
    x = (np.asarray(c.resize((CS, CS), Image.BILINEAR), np.float32) / 255.0 - mean) / std
    cls_in.append(x.transpose(2, 0, 1)[None].astype(np.float32))
class R(CalibrationDataReader):
    def __init__(s, name, xs): s.it = iter([{name: x} for x in xs])
    def get_next(s): return next(s.it, None)
KEEP = '--keep-fp32' in sys.argv[1:]
CLASSIFIER_ONLY = '--classifier-only' in sys.argv[1:]


def fp32_nodes(path):
    """Names of the nodes --keep-fp32 leaves in float."""
    g = onnx.load(path).graph
    convs = [n for n in g.node if n.op_type == 'Conv']
    keep = [n.name for n in convs if next((a.i for a in n.attribute if a.name == 'group'), 1) > 1]
    keep += [convs[0].name, convs[-1].name] if convs else []
    return keep + [n.name for n in g.node if n.op_type in ('Gemm', 'MatMul')]


os.makedirs('/tmp/q8e', exist_ok=True)
for name, inp, xs in (('pear_detector.onnx', 'images', det_in), ('pear_classifier.onnx', 'input', cls_in)):
    quant_pre_process(M + name, '/tmp/q8e/pre_' + name)
    exclude = fp32_nodes('/tmp/q8e/pre_' + name) if KEEP else []
    quantize_static('/tmp/q8e/pre_' + name, '/tmp/q8e/' + name, R(inp, xs), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    nodes_to_exclude=exclude)
    side = S if inp == 'images' else int(E.meta(cls32)['input_size'])
    print(f'{name}: {len(exclude)} nodes kept in float; one core fp32 {median_ms(M + name, side):.2f} ms, '
          f'int8 {median_ms("/tmp/q8e/" + name, side):.2f} ms', flush=True)
det8 = det32 if CLASSIFIER_ONLY else E.session('/tmp/q8e/pear_detector.onnx')
cls8 = E.session('/tmp/q8e/pear_classifier.onnx')
print('calibration: %d detector, %d classifier inputs' % (len(det_in), len(cls_in)))
same, maxdp = 0, 0
for f in dev:
    img = Image.open(f).convert('RGB')
    b32, s32 = E.detect(det32, img); b8, s8 = E.detect(det8, img)
    p32 = E.classify(cls32, img, b32); p8 = E.classify(cls8, img, b8)
    v32, v8 = E.decide(p32, E.NORMAL_THRESHOLD), E.decide(p8, E.NORMAL_THRESHOLD)
    same += v32 == v8; maxdp = max(maxdp, abs(p32[0] - p8[0]))
    print(os.path.basename(f)[:14], 'fp32', v32, round(float(p32[0]), 3), 'int8', v8, round(float(p8[0]), 3),
          'box diff', round(max(abs(a - c) for a, c in zip(b32, b8)), 1))
print('dev photos (trained on; agreement only): same verdict %d/14, max |dp(normal)| %.3f' % (same, maxdp))
t = time.time()
print('held-out fp32:', E.heldout(det32, cls32, 200, visible=False))
print('held-out int8:', E.heldout(det8, cls8, 200, visible=False), 'in %.0f s' % (time.time() - t))
