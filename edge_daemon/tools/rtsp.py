"""Start and stop the real RTSP server (:mod:`edge_daemon.tools.rtsp_server`, GStreamer's
gst-rtsp-server in the system Python) for ``edge-daemon bench --source rtsp`` and the RTSP tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from edge_daemon.errors import ConfigError

SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter that has Debian's (or JetPack's) PyGObject
SCRIPT = Path(__file__).with_name("rtsp_server.py")
INSTALL = "install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"


def available() -> str | None:
    """None if the server can run here, else why not (what to install)."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}; {INSTALL}"
    if done.returncode != 0:
        return INSTALL
    return None


class RtspServer:
    """One server process on ``port``; ``kill()`` is a crash (SIGKILL), ``start()`` brings it back.
    ``clip`` (codec, MP4 file) serves that stream instead of the MJPEG test pattern; ``per_client`` gives
    every client its own media from the clip's start (the default shares one)."""

    def __init__(self, port: int, clip: tuple[str, Path] | None = None, per_client: bool = False) -> None:
        self.port = port
        self.clip = clip
        self.per_client = per_client
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> None:
        args = [SYSTEM_PYTHON, str(SCRIPT), str(self.port)]
        if self.clip:
            args += ["--clip", self.clip[0], str(self.clip[1])]
        if self.per_client:
            args.append("--per-client")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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


def serve_clip(clip: Path, codec: str) -> RtspServer:
    """An RTSP server for ``bench --source rtsp``, started: ``clip`` (the bench's, already long enough to
    outlast a trial) to every camera, a media per camera from the start, as separate cameras send."""
    why = available()
    if why is not None:
        raise ConfigError(f"bench --source rtsp: GStreamer's RTSP server cannot run here: {why}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = RtspServer(port, (codec, clip), per_client=True)
    server.start()
    return server
