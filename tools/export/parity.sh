#!/usr/bin/env bash
# Parity of pear-server with the Python original on the same (seeded random) weights.
# One command on a fresh machine: makes tools/export/.venv, builds the release server,
# runs parity.py (see its doc). Exit 0 only when the issue-12 targets hold; the last
# line is the one-line summary.
#   tools/export/parity.sh [--seed N]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PHOTOS=${PHOTOS:-$ROOT/../shared/real_pears/dev}
PY=$("$HERE/setup.sh")
(cd "$ROOT" && cargo build --release -j"${JOBS:-1}" --bin pear-server >&2)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/pear-server
cd "$HERE"
exec "$PY" parity.py --photos "$PHOTOS" --server "$BIN" "$@"
