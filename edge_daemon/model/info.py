"""What a model is: its identity (content hash), its metadata (class names, stride, task) and its input size.

Read-only: nothing here writes a file. Exporting ``.pt`` weights is build-time work
(:mod:`edge_daemon.build.export`).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Sequence
from pathlib import Path

from edge_daemon.errors import ModelError
from edge_daemon.model.tasks import TASKS, keypoint_shape, recognise
from edge_daemon.types import ModelInfo

DEFAULT_IMGSZ = (640, 640)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc}") from None
    return digest.hexdigest()


def model_info(
    metadata: dict[str, str],
    input_hw: tuple[int, int],
    source: Path,
    sha256: str,
    output_shapes: Sequence[Sequence[int | None]] | None = None,
) -> ModelInfo:
    """Build ModelInfo from Ultralytics' metadata keys (names, stride, task, end2end), with safe fallbacks.

    With ``output_shapes`` (per image, from the loaded engine, main output first) the head is recognised
    from the metadata and those shapes together, and a model whose outputs match no supported head is a
    ModelError (exit 65)."""
    names = parse_names(metadata.get("names"))
    if not names:
        raise ModelError(
            f"{source}: the model carries no class names (metadata key 'names'); "
            "export it with Ultralytics so that its metadata is kept"
        )
    task = metadata.get("task", "detect")
    if task not in TASKS:
        raise ModelError(f"{source}: task {task!r} is not supported ({', '.join(TASKS)} models are)")
    try:
        stride = int(metadata.get("stride", "32"))
    except ValueError:
        stride = 32
    head = task
    if output_shapes is not None:
        head = recognise(metadata, [tuple(s) for s in output_shapes], len(names), task, source.name)
    return ModelInfo(
        model_id=f"{source.stem}-{sha256[:12]}",
        task=task,
        names=names,
        stride=stride,
        input_hw=input_hw,
        sha256=sha256,
        head=head,
        kpt_shape=keypoint_shape(metadata) if task == "pose" else None,
    )


def parse_names(raw: str | None) -> dict[int, str]:
    if not raw:
        return {}
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return {}
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        return {i: str(v) for i, v in enumerate(value)}
    return {}


def auto_imgsz(frame_hw: tuple[int, int], long_side: int = 640, multiple: int = 32) -> tuple[int, int]:
    """Model input (H, W) for a camera of ``frame_hw``: the long side becomes ``long_side`` and the short
    side keeps the aspect ratio, rounded up to ``multiple``. A 1920x1080 camera gets 384x640, not 640x640:
    40% less work per frame for the same detail."""
    fh, fw = frame_hw
    if fh <= 0 or fw <= 0:
        raise ValueError(f"frame size must be positive, got {frame_hw}")
    scale = long_side / max(fh, fw)

    def side(v: int) -> int:
        return max(multiple, -(-round(v * scale) // multiple) * multiple)

    return side(fh), side(fw)
