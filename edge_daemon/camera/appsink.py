"""Frames from a GStreamer pipeline pulled through PyGObject's ``appsink``: NV12 on the host.

The pipeline (built by :mod:`edge_daemon.camera.gstreamer` from typed config) ends in NV12 in system
memory; each sample is copied once out of GStreamer's buffer (1.5 bytes a pixel, no colour conversion on
the CPU) and handed on as an :class:`~edge_daemon.types.Nv12Picture` with the colour matrix its caps
declare. The CUDA stage copies it into a pinned slot (on a Jetson mapped memory the GPU reads in place)
and converts it in its kernel; the CPU stage converts it with :func:`edge_daemon.colour.nv12_to_bgr`.

No GLib main loop is needed: ``try_pull_sample`` waits on the appsink, and the pipeline's bus is polled
between short waits, so an error (the server refused, the decoder failed) surfaces within a fraction of a
second as a :class:`CameraError`, and a stream that goes silent does so after ``timeout_s``; the camera
reader then closes and reopens with its backoff, as for every other source.

Needs PyGObject (the ``gstreamer`` extra; on a Jetson, Debian/Ubuntu's ``python3-gi``) and GStreamer's
typelibs (``gir1.2-gstreamer-1.0``, ``gir1.2-gst-plugins-base-1.0``).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.camera.base import FrameSource
from edge_daemon.camera.gstreamer import decoder_name, element_names
from edge_daemon.colour import Colour, from_colorimetry
from edge_daemon.errors import CameraError
from edge_daemon.types import Nv12Picture

log = logging.getLogger(__name__)

_SLICE_NS = 100_000_000  # how long one pull waits before the bus is looked at (0.1 s)


@functools.cache
def gst() -> Any:
    """GStreamer's ``Gst`` module through PyGObject, initialised once. Raises ImportError or ValueError
    (no PyGObject, no GStreamer typelib)."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")  # appsink's methods (try_pull_sample)
    from gi.repository import Gst, GstApp  # noqa: F401

    Gst.init(None)
    return Gst


def missing_elements(pipeline: str) -> list[str]:
    """The elements of ``pipeline`` this machine's GStreamer lacks (all of them if PyGObject or GStreamer
    itself is missing: then the first entry says so)."""
    try:
        g = gst()
    except (ImportError, ValueError) as exc:
        return [f"PyGObject with GStreamer ({exc})"]
    return [name for name in element_names(pipeline) if g.ElementFactory.find(name) is None]


class GstSource(FrameSource):
    """A live GStreamer pipeline ending in ``appsink name=sink`` with NV12 caps."""

    def __init__(self, pipeline: str, description: str, timeout_s: float = 5.0) -> None:
        self.pipeline = pipeline
        self.description = description
        self.timeout_s = timeout_s
        self.decoder = f"gstreamer ({decoder_name(pipeline)})"
        self._pipe: Any = None
        self._sink: Any = None
        self._caps: tuple[str, Colour, int, int] | None = None

    def open(self) -> None:
        self.close()
        g = gst()
        try:
            pipe = g.parse_launch(self.pipeline)
        except Exception as exc:  # GLib.Error: an element missing or a property refused
            raise CameraError(f"cannot build the pipeline of {self.description}: {exc}") from exc
        if pipe.set_state(g.State.PLAYING) == g.StateChangeReturn.FAILURE:
            why = _bus_error(g, pipe) or "the pipeline refused to start"
            pipe.set_state(g.State.NULL)
            raise CameraError(f"cannot open {self.description}: {why}")
        self._pipe, self._sink = pipe, pipe.get_by_name("sink")

    def read(self) -> Nv12Picture:
        if self._pipe is None:
            raise CameraError(f"{self.description} is not open")
        g = gst()
        deadline = time.monotonic() + self.timeout_s
        while True:
            sample = self._sink.try_pull_sample(_SLICE_NS)
            if sample is not None:
                return self._picture(sample)
            why = _bus_error(g, self._pipe)
            if why is not None:
                raise CameraError(f"no frame from {self.description}: {why}")
            if self._sink.is_eos():
                raise CameraError(f"no frame from {self.description} (stream ended)")
            if time.monotonic() >= deadline:
                raise CameraError(f"no frame from {self.description} for {self.timeout_s:g} s")

    def _picture(self, sample: Any) -> Nv12Picture:
        caps = sample.get_caps()
        text = caps.to_string()
        if self._caps is None or self._caps[0] != text:  # first frame, or the stream changed
            s = caps.get_structure(0)
            width, height = int(s.get_value("width")), int(s.get_value("height"))
            colour = from_colorimetry(s.get_string("colorimetry"), height)
            self._caps = (text, colour, width, height)
            log.info("%s: %dx%d NV12, %s", self.description, width, height, colour.describe())
        _, colour, width, height = self._caps
        buf = sample.get_buffer()
        data = np.frombuffer(buf.extract_dup(0, buf.get_size()), np.uint8)
        return Nv12Picture(width, height, colour, host=nv12_planes(data, width, height))

    def close(self) -> None:
        if self._pipe is not None:
            g = gst()
            # Flush the source first: after a lost server, rtspsrc's state change and its jitter
            # buffer's thread can deadlock on the way to NULL (GStreamer 1.22); a flush unblocks them.
            src = self._pipe.get_by_name("src")
            if src is not None:
                src.send_event(g.Event.new_flush_start())
            self._pipe.set_state(g.State.NULL)
        self._pipe = self._sink = None


def nv12_planes(data: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """An NV12 buffer as one (H * 3 / 2, W) array: as it is when tightly packed, else from GStreamer's
    default layout (rows padded to a multiple of 4 bytes, the chroma plane after the padded luma rows)."""
    tight = width * height * 3 // 2
    if data.size == tight:
        return data.reshape(height * 3 // 2, width)
    stride = (width + 3) // 4 * 4
    rows = (height + 1) // 2 * 2
    if data.size < stride * rows * 3 // 2:
        raise CameraError(f"unexpected NV12 buffer of {data.size} bytes for {width}x{height}")
    luma = data[: stride * height].reshape(height, stride)[:, :width]
    chroma = data[stride * rows : stride * rows + stride * (height // 2)].reshape(height // 2, stride)
    return np.ascontiguousarray(np.concatenate([luma, chroma[:, :width]]))


def _bus_error(g: Any, pipe: Any) -> str | None:
    """The first error message waiting on the pipeline's bus, if any (without waiting)."""
    bus = pipe.get_bus()
    msg = bus.pop_filtered(g.MessageType.ERROR) if bus is not None else None
    if msg is None:
        return None
    err, debug = msg.parse_error()
    return f"{err.message}" + (f" ({debug.splitlines()[0]})" if debug else "")
