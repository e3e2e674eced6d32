"""The ``detect`` section: confidence, NMS and class filters applied to the model's output."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge_daemon.config.base import Strict


class DetectConfig(Strict):
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Minimum class confidence.")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="IoU above which NMS suppresses a box (per class).")
    classes: list[Annotated[int, Field(ge=0)]] | None = Field(None, description="Keep only these class ids.")
    max_det: int = Field(300, ge=1, le=10000)
