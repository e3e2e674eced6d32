"""The real RTSP server for the tests and the fault suite: the bench's own (edge_daemon/tools/rtsp.py)."""

from edge_daemon.tools.rtsp import RtspServer, available

__all__ = ["RtspServer", "available"]
