"""Frame sources backed by ``cv2.VideoCapture``: files, V4L2 devices, RTSP/HTTP URLs, GStreamer pipelines."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.camera.base import FrameSource
from edge_daemon.camera.pacing import Pacer
from edge_daemon.errors import CameraError


class OpenCVSource(FrameSource):
    """A ``cv2.VideoCapture`` opened from ``target`` with backend ``api`` and open/read ``params``.

    ``loop``: rewind a finite source at its end instead of finishing. ``realtime``: pace reads at the
    stream's native FPS (a file then behaves like a camera). ``description`` is what logs show.
    """

    def __init__(
        self,
        target: str | int,
        api: int,
        description: str,
        params: list[int] | None = None,
        finite: bool = False,
        loop: bool = False,
        realtime: bool = False,
        props: dict[int, float] | None = None,
    ) -> None:
        self.target = target
        self.api = api
        self.description = description
        self.params = params or []
        self.file = finite  # a file (looped or not), as opposed to a live device or stream
        self.finite = finite and not loop
        self.loop = loop
        self.realtime = realtime
        self.props = props or {}
        self._cap: Any = None
        self.pacer = Pacer()

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.target, self.api, self.params)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open {self.description}")
        for prop, value in self.props.items():
            cap.set(prop, value)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.pacer.start(fps if self.realtime else None)
        self.media_fps = fps if self.file and not self.realtime and fps and 0 < fps < 1000 else None
        self._cap = cap

    def read(self) -> npt.NDArray[np.uint8] | None:
        return self._read(None)

    def read_into(self, out: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8] | None:
        """OpenCV decodes straight into ``out`` when it fits (no new array, no extra copy)."""
        return self._read(out)

    def _read(self, out: npt.NDArray[np.uint8] | None) -> npt.NDArray[np.uint8] | None:
        if self._cap is None:
            raise CameraError(f"{self.description} is not open")
        ok, image = self._cap.read(out) if out is not None else self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read(out) if out is not None else self._cap.read()
        if not ok or image is None:
            if self.finite:
                return None
            raise CameraError(f"no frame from {self.description} (read failed or timed out)")
        self.pacer.wait()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def ffmpeg_timeouts(timeout_s: float) -> list[int]:
    """VideoCapture params that bound how long opening and each read may block (FFmpeg backend)."""
    ms = int(timeout_s * 1000)
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """Insert credentials into ``url`` (percent-encoded) when they are configured separately."""
    if username is None:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo = quote(username, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))
