"""GStreamer pipelines for Jetson cameras, built from typed, validated config values.

No user-supplied string is ever handed to a shell, and no free-form pipeline text is accepted: every
element and property below comes from validated settings (ints, enums, a URL checked to contain no
spaces, quotes or '!'), so a config value cannot splice extra elements into the pipeline.

Every pipeline starts at an element named ``src`` and ends in NV12 in system memory at an ``appsink``
named ``sink``, which :class:`~edge_daemon.camera.appsink.GstSource` pulls through PyGObject. On a
Jetson, ``nvv4l2decoder`` (or the ISP behind ``nvarguscamerasrc``) decodes into NVMM memory and
``nvvidconv`` (the VIC, not the CPU) writes NV12 out; the CPU never converts colour: the CUDA stage's
kernel reads the NV12 and converts it.

``elements="software"`` builds the same pipeline shape from Debian's GStreamer stand-ins (``avdec_h264``
/ ``avdec_h265`` for ``nvv4l2decoder``, ``videoconvert`` for ``nvvidconv``, a live ``videotestsrc`` for the
sensor): the appsink code is then exercised away from a Jetson (tests, development).
"""

from __future__ import annotations

from typing import Literal

Elements = Literal["nvidia", "software"]

#: The caps every pipeline hands the appsink, and the appsink itself: the newest frames only (a slow
#: reader drops old ones inside GStreamer rather than queueing them), not synchronised to the clock.
NV12_OUT = "video/x-raw,format=NV12"
APPSINK = "appsink name=sink drop=true max-buffers=2 sync=false"

# nvvidconv's flip-method numbers -> videoflip's method numbers (the two elements number them differently).
_VIDEOFLIP = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 7, 6: 5, 7: 6}
_DECODERS = {
    ("nvidia", "h264"): "nvv4l2decoder",
    ("nvidia", "h265"): "nvv4l2decoder",
    ("software", "h264"): "avdec_h264",
    ("software", "h265"): "avdec_h265",
}
_CONVERT = {"nvidia": "nvvidconv", "software": "videoconvert"}


def _check_ints(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int")


def _check_elements(elements: str) -> None:
    if elements not in _CONVERT:
        raise ValueError("elements must be nvidia or software")


def csi_pipeline(
    sensor_id: int, width: int, height: int, fps: int, flip_method: int, elements: Elements = "nvidia"
) -> str:
    """A CSI camera: ``nvarguscamerasrc`` (the ISP) into NVMM, ``nvvidconv`` (flip, and NV12 out of NVMM)."""
    _check_ints(sensor_id=sensor_id, width=width, height=height, fps=fps, flip_method=flip_method)
    _check_elements(elements)
    if flip_method not in _VIDEOFLIP:
        raise ValueError("flip_method must be 0..7")
    size = f"width={width},height={height},framerate={fps}/1"
    if elements == "nvidia":
        return (
            f"nvarguscamerasrc name=src sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM),{size},format=NV12 ! "
            f"nvvidconv flip-method={flip_method} ! {NV12_OUT} ! {APPSINK}"
        )
    return (
        f"videotestsrc name=src is-live=true pattern=ball ! video/x-raw,{size} ! "
        f"videoflip method={_VIDEOFLIP[flip_method]} ! videoconvert ! {NV12_OUT} ! {APPSINK}"
    )


def rtsp_hw_pipeline(url: str, codec: str, latency_ms: int, elements: Elements = "nvidia") -> str:
    """An RTSP stream decoded by the Jetson's hardware decoder (``nvv4l2decoder``), NV12 out of
    ``nvvidconv``."""
    if codec not in {"h264", "h265"}:
        raise ValueError("codec must be h264 or h265")
    _check_elements(elements)
    _check_ints(latency_ms=latency_ms)
    if any(c in url for c in " \t\n'\"!`$\\") or "://" not in url:
        raise ValueError("url contains characters that are not allowed in a pipeline")
    depay, parse = ("rtph264depay", "h264parse") if codec == "h264" else ("rtph265depay", "h265parse")
    return (
        f'rtspsrc name=src location="{url}" latency={latency_ms} protocols=tcp ! {depay} ! {parse} ! '
        f"{_DECODERS[elements, codec]} ! {_CONVERT[elements]} ! {NV12_OUT} ! {APPSINK}"
    )


def element_names(pipeline: str) -> list[str]:
    """The element factories a pipeline built here uses, in order (caps filters left out)."""
    names = []
    for part in pipeline.split(" ! "):  # "factory name=... prop=..." or caps ("video/x-raw,...")
        first = part.strip().split(" ", 1)[0]
        if "/" not in first:
            names.append(first)
    return names


def decoder_name(pipeline: str) -> str:
    """What decodes (or captures) in this pipeline, for ``info``: its source or decoder element."""
    names = element_names(pipeline)
    for name in names:
        if name.startswith(("nvv4l2decoder", "avdec_")):
            return name
    return names[0]
