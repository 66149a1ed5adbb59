#!/usr/bin/env bash
# Rebuild everything from nothing: venv, packages, data, both models (ONNX),
# samples, held-out fixtures, and the held-out figures (runs/eval.json).
# Takes about 1.5 hours on 2 shared cores (most of it training). CPU only.
#
#   tools/train/train_all.sh            # full run
#   QUICK=1 tools/train/train_all.sh    # small data, few epochs (smoke test, ~10 min)
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
THREADS=${THREADS:-1}            # torch threads per trainer; the two trainers run side by side
export OMP_NUM_THREADS=$THREADS
SHARDS=${SHARDS:-3}              # x 2000 scenes
CLS_EPOCHS=${CLS_EPOCHS:-8}
DET_EPOCHS=${DET_EPOCHS:-8}
if [ "${QUICK:-0}" = 1 ]; then SHARDS=1; CLS_EPOCHS=2; DET_EPOCHS=3; fi

# bf16 autocast is much faster where the CPU has AMX / AVX512-BF16, slow elsewhere.
BF16=""
if grep -qE 'amx_bf16|avx512_bf16' /proc/cpuinfo 2>/dev/null; then BF16="--bf16"; fi

if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.txt
P=.venv/bin/python
mkdir -p data runs

# 1. data (deterministic: same seeds, same arrays)
[ -f data/val.npz ] || $P make_dataset.py --seed 2000 --start 0 --count 600 --crops 1 --out data/val.npz
TRAIN=()
for k in $(seq 0 $((SHARDS - 1))); do
  f=data/train_$k.npz
  [ -f "$f" ] || $P make_dataset.py --seed 1000 --start $((k * 2000)) --count 2000 --crops 3 --out "$f"
  TRAIN+=("$f")
done

# 2. models, side by side (each trainer exports its ONNX file at the end)
$P train_classifier.py --train "${TRAIN[@]}" --val data/val.npz --epochs "$CLS_EPOCHS" \
  --threads "$THREADS" $BF16 --out runs/classifier.pt --onnx ../../models/pear_classifier.onnx \
  > runs/classifier.log 2>&1 &
CLS_PID=$!
$P train_detector.py --train "${TRAIN[@]}" --val data/val.npz --epochs "$DET_EPOCHS" \
  --threads "$THREADS" $BF16 --out runs/detector.pt --onnx ../../models/pear_detector.onnx \
  > runs/detector.log 2>&1 &
DET_PID=$!
echo "training (logs: tools/train/runs/classifier.log, runs/detector.log) ..."
wait $CLS_PID || { echo "classifier training failed, see runs/classifier.log"; exit 1; }
wait $DET_PID || { echo "detector training failed, see runs/detector.log"; exit 1; }
tail -n 3 runs/classifier.log runs/detector.log

# 3. samples and held-out fixtures, then the held-out figures
$P make_fixtures.py
$P eval.py --json runs/eval.json
sha256sum ../../models/pear_detector.onnx ../../models/pear_classifier.onnx
