"""Ultralytics architectures built offline from their YAMLs with random weights, for shapes, speed and decode
parity (never accuracy). Needs ultralytics and torch (the ``export`` extra); imported by the conftest and by
the self-contained GPU tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODEL_CACHE = ROOT / ".cache" / "edge-daemon"
HW = (480, 640)  # the clip's 4:3 at 640
# name -> (YAML, input size, export args, task, head): a model of every head the daemon decodes
MODELS: dict[str, tuple[str, tuple[int, int], dict[str, Any], str, str]] = {
    "segment": ("yolo11n-seg.yaml", HW, {}, "segment", "segment"),
    "segment-e2e": ("yolo26n-seg.yaml", HW, {"nms": False}, "segment", "segment-e2e"),
    "obb": ("yolov8n-obb.yaml", HW, {}, "obb", "obb"),
    "obb-e2e": ("yolo26n-obb.yaml", HW, {"nms": False}, "obb", "obb-e2e"),
    "pose-e2e": (
        "yolo26n-pose.yaml",
        HW,
        {"nms": False, "cls_gain": 0.002, "branch_gain": 0.0005},
        "pose",
        "pose-e2e",
    ),
    "detect-v10": ("yolov10n.yaml", HW, {"nms": False}, "detect", "detect-e2e"),
    "classify": ("yolov8n-cls.yaml", (224, 224), {}, "classify", "classify"),
}


def synthetic_model(
    yaml_name: str,
    imgsz: tuple[int, int],
    cls_gain: float = 1.0,
    fmt: str = "onnx",
    branch_gain: float = 1.0,
    **export: Any,
) -> Path:
    """An Ultralytics architecture built offline from its YAML, exported to ONNX (cached per recipe).

    Weights are random (good for shapes and decode parity, not accuracy). Freshly initialised YOLO heads
    score almost nothing and their features fade through the untrained network, so the convolutions get
    Kaiming-normal weights and the class biases of the (end-to-end) head are raised for three classes:
    then there are boxes to compare, with distinct confidences. A classifier's logits are
    scaled up until its top classes change from frame to frame.
    ``cls_gain`` scales the class convolutions' weights, for heads whose scores would saturate at 1;
    ``branch_gain`` the last box and keypoint convolutions', for heads whose boxes and keypoints would be
    thrown off the frame (YOLO26's pose head).
    ``fmt``: the export format (``onnx``, ``torchscript``), or ``pt`` for the checkpoint itself.
    """
    tag = "-".join(f"{k}{v}" for k, v in sorted(export.items()))
    tag += f"-cls{cls_gain}" if cls_gain != 1.0 else ""
    tag += f"-branch{branch_gain}" if branch_gain != 1.0 else ""
    stem = f"{Path(yaml_name).stem}-{imgsz[0]}x{imgsz[1]}-{tag}-seed0"
    path = MODEL_CACHE / "synthetic" / f"{stem}.{fmt}"
    if path.is_file():
        return path
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import tempfile
    import warnings

    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(yaml_name)
    for module in model.model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    head = model.model.model[-1]
    for branch in ("one2one_cv3", "cv3"):
        for seq in getattr(head, branch, None) or []:
            seq[-1].bias.data[:] = -3.0
            seq[-1].bias.data[:3] = 0.0
            seq[-1].weight.data *= cls_gain
    for branch in ("one2one_cv2", "cv2", "one2one_cv4_kpts", "cv4_kpts"):
        for seq in getattr(head, branch, None) or []:
            last = seq[-1] if isinstance(seq, torch.nn.Sequential) else seq
            if isinstance(last, torch.nn.Conv2d):
                last.weight.data *= branch_gain
    if isinstance(getattr(head, "linear", None), torch.nn.Linear):  # Classify: logits that tell frames apart
        head.linear.weight.data *= 300.0
        head.linear.bias.data[:] = 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = Path(tmp) / f"{Path(yaml_name).stem}.pt"
        model.save(str(weights))
        if fmt == "pt":
            os.replace(weights, path)
            return path
        out = YOLO(str(weights)).export(format=fmt, imgsz=list(imgsz), verbose=False, **export)
        os.replace(out, path)
    return path


def task_model(name: str, fmt: str = "onnx") -> Path:
    """The model of :data:`MODELS` ``name`` in ``fmt``."""
    yaml, hw, export, _, _ = MODELS[name]
    return synthetic_model(yaml, hw, fmt=fmt, **export)
