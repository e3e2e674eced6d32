"""The HTTP side: Prometheus metrics, health checks and the live annotated view (aiohttp, on its own
thread). Imported only when ``http.enabled``; the pipeline feeds it through the result hook."""

from edge_daemon.web.live import LiveView
from edge_daemon.web.server import DaemonState, WebServer

__all__ = ["DaemonState", "LiveView", "WebServer"]
