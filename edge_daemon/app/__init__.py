"""The application: validated settings in, a running daemon out.

:mod:`.boot` opens the model (the one place where build-time and run-time meet); :mod:`.daemon` wires
cameras, the pipeline stage and the publisher around it and runs until stopped.
"""

from edge_daemon.app.boot import LoadedModel, load_model
from edge_daemon.app.daemon import build_pipeline, run_daemon

__all__ = ["LoadedModel", "build_pipeline", "load_model", "run_daemon"]
