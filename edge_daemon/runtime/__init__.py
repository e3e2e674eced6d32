"""Run-time: inference backends behind one interface, imported only when chosen.

Engines load a ready artifact and run it; building artifacts is :mod:`edge_daemon.build`'s job.
``BACKENDS`` maps the config's ``engine.backend`` value to a ``"module:Class"`` string; the module is
imported by :func:`load_engine`, so ``import tensorrt`` (or onnxruntime) happens only for the backend in use.
Each backend class provides ``from_config(config, artifact: Artifact) -> InferenceEngine``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edge_daemon.errors import EngineError
from edge_daemon.runtime.base import Artifact, DeviceIO, EngineInfo, InferenceEngine, Outputs

BACKENDS: dict[str, str] = {
    "onnxruntime": "edge_daemon.runtime.onnxruntime:OnnxRuntimeEngine",
    "openvino": "edge_daemon.runtime.openvino:OpenVinoEngine",
    "tensorrt": "edge_daemon.runtime.tensorrt.engine:TensorRTEngine",
    "torch": "edge_daemon.runtime.torchscript:TorchEngine",
}

__all__ = [
    "BACKENDS",
    "Artifact",
    "DeviceIO",
    "EngineInfo",
    "InferenceEngine",
    "Outputs",
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


def load_engine(config: Any, artifact: Artifact | Path) -> InferenceEngine:
    """Open the engine that ``config`` (an engine settings model with a ``backend`` field) selects on a
    ready ``artifact`` (or a bare model path)."""
    if isinstance(artifact, Path):
        artifact = Artifact(artifact)
    engine: InferenceEngine = backend_class(config.backend).from_config(config, artifact)
    return engine
