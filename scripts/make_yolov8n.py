#!/usr/bin/env python3
"""Export the exact yolov8n architecture with random weights (offline, no download) to a static ONNX.

Good for shape and speed measurements only: random weights make no meaningful detections.
Usage: python3 scripts/make_yolov8n.py [--imgsz 480 640] [--out .cache/yolov8n-480x640.onnx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(f".cache/yolov8n-{args.imgsz[0]}x{args.imgsz[1]}.onnx")
    if out.is_file():
        print(f"ok      {out} (exists)")
        return 0
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = YOLO("yolov8n.yaml")
        ckpt = Path(tmp) / "yolov8n-random.pt"
        model.save(str(ckpt))
        exported = YOLO(str(ckpt)).export(format="onnx", imgsz=args.imgsz, dynamic=False)
        shutil.move(str(exported), out)
    print(f"ok      {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
