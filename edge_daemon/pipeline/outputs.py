"""The publish thread's work after decoding: each camera's analytics, then its messages to the publisher.

Per batch: the camera's confidence threshold (:mod:`edge_daemon.controls`), the analytics of every frame
(tracking, zones, events, snapshots), the detections messages that ``publish.detections`` lets out and the
events, handed to the publisher together (one outbox transaction), then the retained state that changed
(occupancy, snapshots). Once a second, live cameras
that are away have their timers run without frames; at the end of the stream every object ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from edge_daemon.analytics import CameraAnalyzer, Outcome
from edge_daemon.controls import Controls
from edge_daemon.errors import EdgeError
from edge_daemon.pipeline.health import PipelineStats
from edge_daemon.pipeline.messages import Message, Messages
from edge_daemon.publish.base import Publisher
from edge_daemon.types import Detections, Frame

log = logging.getLogger(__name__)


class Outputs:
    """``clock(frame)``: the frame's time on its camera's clock (see ``Pipeline.clock``)."""

    def __init__(
        self,
        publisher: Publisher,
        messages: Messages,
        analyzers: dict[str, CameraAnalyzer],
        stats: PipelineStats,
        clock: Callable[[Frame], float],
        controls: Controls | None = None,
    ) -> None:
        self.publisher, self.messages, self.analyzers = publisher, messages, analyzers
        self.stats, self.clock, self.controls = stats, clock, controls
        self._next_idle = 0.0

    def publish(
        self, results: list[tuple[Frame, Detections]], inference_ms: float
    ) -> list[tuple[Frame, Detections]]:
        """One batch; returns each frame with its detections as published (track ids included)."""
        now, messages, states = time.monotonic(), [], []
        done: list[tuple[Frame, Detections]] = []
        for frame, decoded in results:
            dets = decoded
            if self.controls is not None:  # the camera's threshold, set over MQTT (detect.conf until then)
                dets = decoded.above(self.controls.cameras[frame.camera].threshold)
            self.stats.mark(frame.camera, now)
            out = self._analyze(frame, dets)
            if out.publish_detections:
                e2e_ms = (now - frame.captured_mono) * 1000.0
                messages.append(self.messages.detections(frame, out, inference_ms, e2e_ms))
            else:
                self.stats.suppressed += 1
            messages += self.messages.events(frame.camera, out, (frame.width, frame.height))
            states += self.messages.states(frame.camera, out)
            done.append((frame, out.detections))
        self._send(messages, states)
        self.stats.events = self.messages.events_sent
        return done

    def _analyze(self, frame: Frame, dets: Detections) -> Outcome:
        """The camera's analytics on one frame. A configuration error found only now (a zone off the first
        frame) stops the daemon; any other failure is logged, counted, and the frame published untracked."""
        analyzer = self.analyzers.get(frame.camera)
        if analyzer is None:
            return Outcome(dets, True)
        try:
            return analyzer.process(frame, dets, self.clock(frame))
        except EdgeError:
            raise
        except Exception:
            self.stats.analytics_errors += 1
            if self.stats.analytics_errors in (1, 10) or self.stats.analytics_errors % 1000 == 0:
                log.exception("camera %s: analytics failed on frame %d", frame.camera, frame.seq)
            return Outcome(dets, True)

    def idle(self, readers: Sequence[Any], sources: dict[str, Any]) -> None:
        """Once a second: live cameras that are away, or whose detection is switched off, get their timers
        run without frames, so their objects end after ``lost_s`` and their zones empty (files keep their
        own timeline)."""
        now = time.monotonic()
        if now < self._next_idle:
            return
        self._next_idle = now + 1.0
        for reader in readers:
            analyzer = self.analyzers.get(reader.name)
            detecting = self.controls is None or self.controls.cameras[reader.name].detect
            if analyzer is None or (reader.stats.connected and detecting) or sources[reader.name].media_fps:
                continue
            try:
                out = analyzer.idle(now, time.time())
                self._send(
                    self.messages.events(reader.name, out, analyzer.frame_wh or (1, 1)),
                    self.messages.states(reader.name, out),
                )
            except Exception:
                log.exception("camera %s: analytics failed while it is away", reader.name)
        self.stats.events = self.messages.events_sent

    def finish(self) -> None:
        """At the end of the stream: every tracked object ends, zones empty; published before closing."""
        for camera, analyzer in self.analyzers.items():
            try:
                out = analyzer.finish()
                events = self.messages.events(camera, out, analyzer.frame_wh or (1, 1))
                self._send(events, self.messages.states(camera, out))
            except Exception:
                log.exception("camera %s: cannot publish the end of its tracked objects", camera)
        for analyzer in self.analyzers.values():
            analyzer.close()
        self.stats.events = self.messages.events_sent

    def _send(self, messages: list[Message], states: list[Message]) -> None:
        if messages:
            self.publisher.publish_many(messages)
        for path, payload in states:
            self.publisher.publish_state(path, payload)
