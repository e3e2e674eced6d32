"""The live view's frames: each camera's latest frame with its boxes, labels and track ids drawn, as JPEG.

The publish thread only offers frames (:meth:`LiveView.offer`): nothing happens unless someone watches
that camera, and then at most ``live_fps`` times a second, a reference to the frame (a copy when the frame
lives in a pipeline buffer that is reused) goes into a one-slot mailbox per camera. Drawing and JPEG
encoding run on the live view's own thread (OpenCV releases the interpreter lock), and each new JPEG
replaces the last: a viewer that cannot keep up gets the newest frame when it is ready, never a backlog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.analytics.snapshots import draw_box, scaled_copy
from edge_daemon.threads import thread
from edge_daemon.types import Detections, Frame

log = logging.getLogger(__name__)

# Distinct colours per track (BGR), so one person keeps one colour while tracked.
_PALETTE = [(60, 200, 60), (230, 120, 40), (40, 160, 240), (200, 60, 200), (0, 210, 210), (240, 200, 0)]


def annotate(
    image: npt.NDArray[np.uint8], dets: Detections, names: dict[int, str], max_width: int
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` scaled down to ``max_width`` with every detection drawn: box, label, confidence
    and track id."""
    canvas, scale = scaled_copy(image, max_width)
    thick = max(2, round(canvas.shape[1] / 480))
    font = max(0.45, canvas.shape[1] / 1600)
    tracks = dets.track_id
    for i, ((x1, y1, x2, y2), cls, conf) in enumerate(
        zip(dets.xyxy.tolist(), dets.class_id.tolist(), dets.confidence.tolist(), strict=True)
    ):
        track = int(tracks[i]) if tracks is not None else -1
        colour = _PALETTE[track % len(_PALETTE)] if track >= 0 else _PALETTE[0]
        caption = f"{names.get(cls, str(cls))} {conf:.2f}" + (f" #{track}" if track >= 0 else "")
        draw_box(canvas, (x1 * scale, y1 * scale, x2 * scale, y2 * scale), caption, colour, thick, font)
    return canvas


class LiveView:
    """Per camera: the viewer count, a one-slot mailbox of the latest frame, and its latest JPEG.

    ``on_jpeg(camera, seq, jpeg)`` is called on the encoder thread for every new JPEG (the HTTP server
    hands it to its event loop).
    """

    def __init__(
        self,
        cameras: Iterable[str],
        names: dict[int, str],
        fps: float,
        max_width: int,
        quality: int,
    ) -> None:
        self.names, self.max_width, self.quality = names, max_width, quality
        self.period = 1.0 / fps
        self.viewers = dict.fromkeys(cameras, 0)
        self.jpegs: dict[str, tuple[int, bytes]] = {}
        self.encoded = 0
        self.errors = 0
        self.on_jpeg: Callable[[str, int, bytes], None] | None = None
        self._due = dict.fromkeys(self.viewers, 0.0)
        self._mailbox: dict[str, tuple[npt.NDArray[np.uint8], Detections]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = thread(self._encode_loop, "live-view")
        self._thread.start()

    def offer(self, frame: Frame, dets: Detections) -> None:
        """Publish thread, every published frame: cheap unless the camera is watched and a frame is due."""
        camera = frame.camera
        if not self.viewers.get(camera):
            return
        now = time.monotonic()
        if now < self._due[camera]:
            return
        self._due[camera] = now + self.period
        image = frame.bgr() if frame.buffer is None else frame.bgr().copy()  # ring slots are reused
        with self._lock:
            self._mailbox[camera] = (image, dets)
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _encode_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                work, self._mailbox = self._mailbox, {}
            for camera, (image, dets) in work.items():
                try:
                    canvas = annotate(image, dets, self.names, self.max_width)
                    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                    if not ok:
                        raise ValueError("JPEG encoding failed")
                except Exception:
                    self.errors += 1
                    if self.errors in (1, 10) or self.errors % 1000 == 0:
                        log.exception("live view: cannot draw a frame of camera %s", camera)
                    continue
                seq = self.jpegs.get(camera, (0, b""))[0] + 1
                data = jpeg.tobytes()
                self.jpegs[camera] = (seq, data)
                self.encoded += 1
                if self.on_jpeg is not None:
                    self.on_jpeg(camera, seq, data)
