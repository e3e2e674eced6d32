"""The ``model`` section: which YOLO file, its input size, and where artifacts are cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, FilePath, field_validator

from edge_daemon.config.base import Strict


class ModelConfig(Strict):
    """The YOLO model: ``.onnx`` is used as is, ``.pt`` exported to ONNX once (needs the ``export`` extra);
    ``.xml``: Ultralytics' OpenVINO export, for the openvino backend."""

    path: FilePath
    imgsz: tuple[int, int] | None = Field(
        None,
        description="Model input (height, width) for .pt export and for dynamic ONNX models. "
        "Ignored for static ONNX models, whose own input size wins. Unset with a .pt model and the "
        "tensorrt backend: chosen from the first camera's aspect ratio at first boot (640 on the long side).",
    )
    cache_dir: Path = Path(".cache/edge-daemon")

    @field_validator("path")
    @classmethod
    def _suffix(cls, v: Path) -> Path:
        if v.suffix.lower() not in {".onnx", ".pt", ".torchscript", ".xml"}:
            raise ValueError(
                "model must be a .onnx, .pt, .torchscript or OpenVINO .xml file, "
                f"got {v.suffix or 'no suffix'!r}"
            )
        return v

    @field_validator("imgsz", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) else v

    @field_validator("imgsz")
    @classmethod
    def _stride(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and any(s < 32 or s > 4096 or s % 32 for s in v):
            raise ValueError("each side must be a multiple of 32 between 32 and 4096")
        return v
