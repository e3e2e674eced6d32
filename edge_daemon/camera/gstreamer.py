"""GStreamer pipelines for Jetson cameras, built from typed, validated config values.

No user-supplied string is ever handed to a shell, and no free-form pipeline text is accepted: every
element and property below comes from validated settings (ints, enums, a URL checked to contain no
spaces, quotes or '!'), so a config value cannot splice extra elements into the pipeline.
The pipelines end in BGR ``appsink`` caps that ``cv2.VideoCapture(..., cv2.CAP_GSTREAMER)`` reads;
that needs an OpenCV build with GStreamer (JetPack's own OpenCV has it; the PyPI wheels do not).
"""

from __future__ import annotations

_APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int, flip_method: int) -> str:
    """Jetson CSI camera through ``nvarguscamerasrc`` (ISP) and ``nvvidconv`` (VIC colour conversion)."""
    for name, value in {
        "sensor_id": sensor_id,
        "width": width,
        "height": height,
        "fps": fps,
        "flip_method": flip_method,
    }.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int")
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip_method} ! video/x-raw,format=BGRx ! {_APPSINK}"
    )


def rtsp_hw_pipeline(url: str, codec: str, latency_ms: int) -> str:
    """RTSP decoded by the Jetson's hardware decoder (``nvv4l2decoder``)."""
    if codec not in {"h264", "h265"}:
        raise ValueError("codec must be h264 or h265")
    if any(c in url for c in " \t\n'\"!`$\\") or "://" not in url:
        raise ValueError("url contains characters that are not allowed in a pipeline")
    depay, parse = ("rtph264depay", "h264parse") if codec == "h264" else ("rtph265depay", "h265parse")
    return (
        f'rtspsrc location="{url}" latency={int(latency_ms)} protocols=tcp ! {depay} ! {parse} ! '
        f"nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! {_APPSINK}"
    )
