#!/usr/bin/env bash
# Makes tools/export/.venv (once) with the pinned packages. Prints the venv's python.
#   tools/export/setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -f .venv/.ready ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >&2
  .venv/bin/pip install -q -r requirements.txt >&2
  # AGPL-3.0: only ever inside this venv.
  .venv/bin/pip install -q --no-deps ultralytics==8.4.190 >&2
  touch .venv/.ready
fi
echo "$PWD/.venv/bin/python"
