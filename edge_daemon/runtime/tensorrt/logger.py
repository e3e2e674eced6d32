"""TensorRT's log, mapped onto Python logging; used when building and when loading plans."""

from __future__ import annotations

import logging

import tensorrt as trt


class TrtLogger(trt.ILogger):
    """TensorRT's log, mapped onto Python logging (errors stay errors, verbose becomes debug)."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self._log = logging.getLogger("edge_daemon.tensorrt")

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
            self._log.error("%s", msg)
        elif severity == trt.ILogger.Severity.WARNING:
            self._log.warning("%s", msg)
        elif severity == trt.ILogger.Severity.INFO:
            self._log.info("%s", msg)
        else:
            self._log.debug("%s", msg)
