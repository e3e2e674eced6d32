"""The daemon's small HTTP server (aiohttp), on its own thread and event loop, never in the pipeline's way.

Routes:

- ``/metrics``: Prometheus text format (:mod:`.metrics`);
- ``/healthz``: liveness, 200 while the daemon is loading or its worker threads run and none is stuck in
  the engine, 503 otherwise; ``/healthz/ready``: readiness, 200 once the pipeline runs, at least one camera
  delivers and MQTT is connected, 503 with the reasons otherwise. Both answer JSON;
- with ``live_view``: ``/`` the status page, ``/api/status`` its JSON, ``/cameras/<name>/stream.mjpeg`` the
  annotated MJPEG stream and ``/cameras/<name>/latest.jpg`` its latest frame.

Each MJPEG client waits for the camera's next JPEG and is sent the newest one; aiohttp's write waits while
the socket's buffer is full, so a slow client skips frames and holds at most one frame and the socket's
buffer, never the pipeline. At most ``max_viewers`` streams are open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from edge_daemon.threads import thread
from edge_daemon.web.live import LiveView
from edge_daemon.web.metrics import CONTENT_TYPE, registry_for, render
from edge_daemon.web.page import status_page

log = logging.getLogger(__name__)

BOUNDARY = "frame"


@dataclass
class DaemonState:
    """What the server shows, set by the daemon as it goes: phase ``loading`` -> ``running`` ->
    ``stopping``; ``cameras``: the configured names; ``live``: the live view once the model is loaded."""

    cameras: list[str] = field(default_factory=list)
    phase: str = "loading"
    pipeline: Any = None
    publisher: Any = None
    live: LiveView | None = None

    def info(self) -> dict[str, Any]:
        """The retained info message (model, backend, precision actually running), once running."""
        publisher = self.pipeline.publisher if self.pipeline is not None else None
        return dict(publisher.info or {}) if publisher is not None else {}


class WebServer:
    def __init__(self, config: Any, state: DaemonState) -> None:
        self.config, self.state = config, state
        self.url = f"http://{config.host}:{config.port}"
        self._registry = registry_for(state)
        self._loop = asyncio.new_event_loop()
        self._thread = thread(self._loop.run_forever, "http")
        self._runner: web.AppRunner | None = None
        self._frames: dict[str, asyncio.Condition] = {}
        self.streams = 0

    def start(self) -> bool:
        """Bind and serve; False (and one error line) when the address is taken: the daemon goes on."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        except OSError as exc:
            log.error(
                "http: cannot serve on %s:%d (%s); running without it",
                self.config.host,
                self.config.port,
                exc,
            )
            self.stop()
            return False
        log.info(
            "http: %s/metrics, /healthz%s", self.url, ", live view at /" if self.config.live_view else ""
        )
        return True

    def attach(self, live: LiveView) -> None:
        """The live view, once the model (its class names) is loaded."""
        live.on_jpeg = self._jpeg_ready
        self.state.live = live

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._live)
        app.router.add_get("/healthz/ready", self._ready)
        if self.config.live_view:
            app.router.add_get("/", self._page)
            app.router.add_get("/api/status", self._status)
            app.router.add_get("/cameras/{name}/stream.mjpeg", self._stream)
            app.router.add_get("/cameras/{name}/latest.jpg", self._latest)
            for camera in self.state.cameras:
                self._frames[camera] = asyncio.Condition()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.host, self.config.port).start()

    # ------------------------------------------------------------------------------------------ routes

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(None, render, self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def liveness(self) -> tuple[bool, list[str]]:
        pipeline = self.state.pipeline
        if pipeline is None:
            return True, []
        problem = pipeline.liveness()
        return problem is None, [problem] if problem else []

    def readiness(self) -> tuple[bool, list[str]]:
        reasons = []
        if self.state.phase != "running":
            reasons.append(f"daemon is {self.state.phase}")
        pipeline, publisher = self.state.pipeline, self.state.publisher
        if pipeline is not None and not any(c["connected"] for c in pipeline.health()["cameras"].values()):
            reasons.append("no camera delivers frames")
        if publisher is not None and not getattr(publisher, "connected", True):
            reasons.append("not connected to the MQTT broker")
        alive, problems = self.liveness()
        return alive and not reasons, reasons + problems

    async def _live(self, request: web.Request) -> web.Response:
        ok, reasons = self.liveness()
        return web.json_response(
            {"live": ok, "phase": self.state.phase, "reasons": reasons}, status=200 if ok else 503
        )

    async def _ready(self, request: web.Request) -> web.Response:
        ok, reasons = self.readiness()
        return web.json_response(
            {"ready": ok, "phase": self.state.phase, "reasons": reasons}, status=200 if ok else 503
        )

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=status_page(self.state.cameras), content_type="text/html")

    async def _status(self, request: web.Request) -> web.Response:
        pipeline = self.state.pipeline
        health = pipeline.health() if pipeline is not None else {}
        live = self.state.live
        body = {
            "phase": self.state.phase,
            "info": self.state.info(),
            "health": health,
            "viewers": dict(live.viewers) if live is not None else {},
        }
        return web.json_response(body, dumps=functools.partial(json.dumps, default=str))

    async def _latest(self, request: web.Request) -> web.Response:
        """A frame drawn now: the camera is watched until its next JPEG (at most 5 s); the last one drawn
        if none comes, 503 if there was never one."""
        camera, live = self._camera(request)
        after = live.jpegs.get(camera, (0, b""))[0]
        live.viewers[camera] += 1
        try:
            jpeg = (await self._next_frame(camera, after, timeout=5.0))[1]
        except TimeoutError:
            if camera not in live.jpegs:
                raise web.HTTPServiceUnavailable(text=f"camera {camera}: no frame yet") from None
            jpeg = live.jpegs[camera][1]
        finally:
            live.viewers[camera] -= 1
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        camera, live = self._camera(request)
        if self.streams >= self.config.max_viewers:
            raise web.HTTPServiceUnavailable(text=f"{self.config.max_viewers} live streams open already")
        self.streams += 1
        live.viewers[camera] += 1
        seq = 0
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-cache, no-store",
            }
        )
        try:
            await response.prepare(request)
            while request.transport is not None and not request.transport.is_closing():
                try:  # wake up now and then: a viewer who left while no frame came is noticed
                    seq, jpeg = await self._next_frame(camera, seq, timeout=2.0)
                except TimeoutError:
                    continue
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                await response.write(head.encode() + jpeg + b"\r\n")
        except ConnectionError:
            pass
        finally:
            live.viewers[camera] -= 1
            self.streams -= 1
        return response

    def _camera(self, request: web.Request) -> tuple[str, LiveView]:
        camera = request.match_info["name"]
        if camera not in self.state.cameras:
            raise web.HTTPNotFound(text=f"no camera named {camera!r}")
        if self.state.live is None:
            raise web.HTTPServiceUnavailable(text=f"the daemon is {self.state.phase}")
        return camera, self.state.live

    async def _next_frame(self, camera: str, after: int, timeout: float | None) -> tuple[int, bytes]:
        """The camera's newest JPEG once it is newer than ``after``."""
        assert self.state.live is not None
        jpegs = self.state.live.jpegs
        cond = self._frames[camera]
        async with cond:
            await asyncio.wait_for(cond.wait_for(lambda: jpegs.get(camera, (0, b""))[0] > after), timeout)
        return jpegs[camera]

    def _jpeg_ready(self, camera: str, seq: int, jpeg: bytes) -> None:
        """Encoder thread: wake the camera's streams on the event loop."""

        async def notify() -> None:
            cond = self._frames[camera]
            async with cond:
                cond.notify_all()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(notify(), self._loop)
