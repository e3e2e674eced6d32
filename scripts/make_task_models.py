"""Build the task models of tests/helpers/synthetic.py (YAML-built, random weights) into
.cache/edge-daemon/synthetic/: ONNX and TorchScript for every head, and the .pt checkpoints of the
segmentation models (for the GPU benchmark's Ultralytics side). Needs the export extra.

    .venv/bin/python scripts/make_task_models.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.synthetic import MODELS, task_model  # noqa: E402

if __name__ == "__main__":
    for name in MODELS:
        for fmt in ("onnx", "torchscript", *(("pt",) if name.startswith("segment") else ())):
            print(f"{name:12s} {task_model(name, fmt).relative_to(ROOT)}")
