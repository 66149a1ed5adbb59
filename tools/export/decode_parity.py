#!/usr/bin/env python3
"""Pixels of pear-server's original-model JPEG decode against the original's cv2.imread.

Runs the `decode_like_opencv` example (libjpeg-turbo with OpenCV's settings, the path
that models exported by export.py get) on every .jpg in --photos, reads its lossless
PNGs and compares them with cv2.imread of the same files (BGR turned to RGB). Prints
one line per photo and a summary; exit 0 only when every pixel is identical.
--orientations also writes copies of the first two photos carrying an EXIF orientation
tag (each of 2-8: mirrored, turned 180/90/270, transposed), which cv2.imread turns and
so must pear-server.

  cargo build --release --example decode_like_opencv
  tools/export/.venv/bin/python tools/export/decode_parity.py \
      --decoder target/release/examples/decode_like_opencv --photos ../shared/real_pears/dev \
      [--orientations]
"""
import argparse
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def with_orientation(jpeg: bytes, value: int) -> bytes:
    """`jpeg` with an APP1 EXIF segment (big-endian TIFF, one IFD entry: orientation
    `value`) right after the start-of-image marker."""
    tiff = (b"Exif\0\0MM\0\x2a" + struct.pack(">IH", 8, 1)
            + struct.pack(">HHIH", 0x0112, 3, 1, value) + b"\0\0" + struct.pack(">I", 0))
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(tiff) + 2) + tiff + jpeg[2:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decoder", required=True, help="the decode_like_opencv example binary")
    ap.add_argument("--photos", required=True)
    ap.add_argument("--orientations", action="store_true",
                    help="also EXIF-tagged copies (orientations 2-8) of the first two photos")
    a = ap.parse_args()
    jpgs = sorted(Path(a.photos).glob("*.jpg"))
    if not jpgs:
        raise SystemExit(f"no .jpg in {a.photos}")
    worst, differing = 0, 0
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as tagged:
        if a.orientations:
            for j in jpgs[:2]:
                for value in range(2, 9):
                    t = Path(tagged) / f"{j.stem}__exif{value}.jpg"
                    t.write_bytes(with_orientation(j.read_bytes(), value))
                    jpgs.append(t)
        subprocess.run([a.decoder, out] + [str(j) for j in jpgs], check=True,
                       stdout=subprocess.DEVNULL)
        for j in jpgs:
            ref = cv2.cvtColor(cv2.imread(str(j), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            ours = cv2.cvtColor(cv2.imread(str(Path(out) / (j.stem + ".png")),
                                           cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            if ours.shape != ref.shape:
                print(f"{j.name}: shape {ours.shape} vs OpenCV {ref.shape}")
                worst, differing = 255, differing + 1
                continue
            d = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
            n = int(np.count_nonzero(d))
            worst = max(worst, int(d.max()))
            differing += n > 0
            print(f"{j.name}: {ref.shape[1]}x{ref.shape[0]} max |diff| {int(d.max())}, "
                  f"{n} values differ")
    verdict = "PASS" if worst == 0 else "FAIL"
    print(f"decode parity {verdict}: {len(jpgs) - differing}/{len(jpgs)} photos identical "
          f"to cv2.imread (OpenCV {cv2.__version__}); max |diff| {worst}")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
