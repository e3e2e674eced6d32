"""Start and kill the real RTSP server (tests/helpers/rtsp_server.py) from the tests and the fault suite."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter that has Debian's PyGObject (python3-gi)
SCRIPT = Path(__file__).with_name("rtsp_server.py")


def available() -> str | None:
    """None if the server can run here, else why not (what to install)."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}"
    if done.returncode != 0:
        return "install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good (setup-system.sh)"
    return None


class RtspServer:
    """One server process on ``port``; ``kill()`` is a crash (SIGKILL), ``start()`` brings it back."""

    def __init__(self, port: int, clip: tuple[str, Path] | None = None) -> None:
        self.port = port
        self.clip = clip  # (codec, MP4 file): serve that stream instead of the MJPEG test pattern
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                str(SCRIPT),
                str(self.port),
                *([self.clip[0], str(self.clip[1])] if self.clip else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == "ready":
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"RTSP server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
