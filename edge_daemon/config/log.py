"""The ``log`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_daemon.config.base import Strict


class LogConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="How often throughput is logged.")
