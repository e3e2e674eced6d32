"""Inference backends behind one interface, imported only when chosen.

``BACKENDS`` maps the config's ``engine.backend`` value to a ``"module:Class"`` string; the module is
imported by :func:`load_engine`, so ``import tensorrt`` (or onnxruntime) happens only for the backend in use.
Each backend class provides ``from_config(config, request: EngineRequest) -> InferenceEngine``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edge_daemon.engine.base import DeviceIO, EngineInfo, EngineRequest, InferenceEngine
from edge_daemon.errors import EngineError

BACKENDS: dict[str, str] = {
    "onnxruntime": "edge_daemon.engine.onnxruntime:OnnxRuntimeEngine",
    "tensorrt": "edge_daemon.engine.tensorrt.runtime:TensorRTEngine",
    "torch": "edge_daemon.engine.torchscript:TorchEngine",
}

__all__ = [
    "BACKENDS",
    "DeviceIO",
    "EngineInfo",
    "EngineRequest",
    "InferenceEngine",
    "backend_class",
    "load_engine",
]


def backend_class(name: str) -> Any:
    """Import and return the class registered for backend ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise EngineError(f"unknown engine backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"engine backend {name!r} is not installed here: {exc}") from None
    return getattr(module, attr)


def load_engine(config: Any, request: EngineRequest | Path) -> InferenceEngine:
    """Build the engine that ``config`` (an engine settings model with a ``backend`` field) selects.

    ``request`` may be a bare ONNX path for backends that need nothing else (tests, tools).
    """
    if isinstance(request, Path):
        request = EngineRequest(request, "", request.stem, None, Path(".cache/edge-daemon"))
    engine: InferenceEngine = backend_class(config.backend).from_config(config, request)
    return engine
