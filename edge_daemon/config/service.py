"""The ``service`` section: how the daemon judges its own health for systemd, and how long it drains."""

from __future__ import annotations

from pydantic import Field

from edge_daemon.config.base import Strict


class ServiceConfig(Strict):
    workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Camera groups in this many worker processes (cameras dealt round-robin), each running "
        "the whole pipeline with its own copy of the engine on the same device, so that one interpreter "
        "lock is not the limit; this process keeps MQTT, HTTP and the watchdog. Each worker costs a CUDA "
        "context and an engine in GPU memory: keep 1 on a Jetson unless `edge-daemon bench --cameras` "
        "says otherwise. Not with http.live_view (the frames stay in the workers).",
    )
    shared_engine: bool = Field(
        False,
        description="With workers > 1: one engine, in a process of its own, runs every worker's frames "
        "(one batch across all cameras, one copy of the model in GPU memory) instead of an engine per "
        "worker; the frames go to it through shared memory (edge_daemon/app/engine_server.py).",
    )
    stuck_batch_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A batch inside the engine for longer than this means inference is hung: the systemd "
        "watchdog pings stop, so systemd (WatchdogSec=) restarts the service. Cameras that are down never "
        "stop the pings: they are reported in STATUS and the health topic.",
    )
    drain_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="At shutdown, how long frames already captured may take to be inferred and published. "
        "Keep it below the unit's TimeoutStopSec.",
    )
