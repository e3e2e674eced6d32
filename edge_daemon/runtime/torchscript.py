"""PyTorch executor: an Ultralytics TorchScript export run on a CUDA GPU (FP32 or FP16), or on the CPU.

For x86 NVIDIA GPUs without TensorRT. On the GPU it runs on the pipeline's own device buffers and CUDA
stream (:meth:`TorchEngine.enqueue`): the input and output addresses are wrapped as tensors through the
CUDA array interface (no copy) and the model is called under ``torch.cuda.ExternalStream``, so the
upload, the letterbox kernel, the model and the download are ordered on one stream with no host wait.
``torch`` is imported only when this backend is chosen.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.errors import EngineError, ModelError
from edge_daemon.runtime.base import Artifact, DeviceIO, EngineInfo, InferenceEngine, Outputs

log = logging.getLogger(__name__)


class _DeviceArray:
    """A device address seen through the CUDA array interface (v3), for ``torch.as_tensor``."""

    def __init__(self, ptr: int, shape: tuple[int, ...], typestr: str) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (ptr, False),
            "version": 3,
            "strides": None,
            "stream": None,  # ordering is the caller's: everything runs on one stream
        }


class TorchEngine(InferenceEngine):
    """A loaded TorchScript module. Build with :meth:`from_config` or :meth:`load`."""

    def __init__(
        self,
        torch: Any,
        module: Any,
        device: Any,
        half: bool,
        info: EngineInfo,
        cuda_graphs: bool = False,
    ):
        self.info = info
        self._torch = torch
        self._module = module
        self._device = device
        self._half = half
        self._views: dict[tuple[int, tuple[int, ...], str], Any] = {}
        self._streams: dict[int, Any] = {}
        self._graphs: dict[tuple[int, ...], Any] = {}
        self._use_graphs = cuda_graphs and device.type == "cuda"
        self._buckets = batch_buckets(info.max_batch)
        self._closed = False

    @classmethod
    def from_config(cls, config: Any, artifact: Artifact) -> TorchEngine:
        return cls.load(
            artifact.path,
            config.device_index,
            config.precision == "fp16",
            config.max_batch,
            cuda_graphs=config.cuda_graphs,
        )

    @classmethod
    def load(
        cls, path: Any, device_index: int | None, half: bool, max_batch: int = 1, cuda_graphs: bool = False
    ) -> TorchEngine:
        """Load ``path`` (a ``.torchscript`` file) onto ``cuda:<device_index>`` (None: the CPU).

        Runs the model once at ``max_batch`` (warm-up, output shape, and proof that the batch size works).
        ``cuda_graphs``: :meth:`enqueue` records the model once per (buffers, batch) as a CUDA graph and
        replays it: one launch instead of hundreds of small ones (the Python executor is launch-bound).
        fp32 means fp32: TensorFloat-32 convolutions and matmuls are switched off for it.
        """
        try:
            import torch
        except ImportError:
            raise EngineError("the torch backend needs PyTorch: pip install 'edge-daemon[export]'") from None
        if device_index is not None and not torch.cuda.is_available():
            raise EngineError("the torch backend asks for a CUDA device, but PyTorch sees none")
        if half and device_index is None:
            raise EngineError("torch backend: fp16 needs a CUDA device (set engine.device_index)")
        device = torch.device("cpu" if device_index is None else f"cuda:{device_index}")
        if device.type == "cuda" and not half:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        extra = {"config.txt": ""}
        try:
            with warnings.catch_warnings():  # deprecated in torch 2.10+, still the loader for TorchScript
                warnings.filterwarnings("ignore", message=r".*torch\.jit", category=FutureWarning)
                module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"{path}: not a loadable TorchScript file: {str(exc).splitlines()[0]}") from None
        module = module.half() if half else module.float()
        module.eval()
        metadata = _metadata(extra["config.txt"])
        imgsz = metadata.get("imgsz")
        try:
            h, w = (int(v) for v in json.loads(imgsz)) if imgsz else (640, 640)
        except (ValueError, TypeError):
            raise ModelError(f"{path}: metadata imgsz {imgsz!r} is not [height, width]") from None
        dtype = torch.float16 if half else torch.float32
        with torch.inference_mode():
            try:
                ys = _outputs(module(torch.zeros((max_batch, 3, h, w), dtype=dtype, device=device)))
            except RuntimeError as exc:
                raise EngineError(
                    f"{path}: the model does not run at batch {max_batch}, {h}x{w}: "
                    f"{str(exc).splitlines()[0]}"
                ) from None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if not ys or ys[0].ndim not in (2, 3) or any(y.shape[0] != max_batch for y in ys):
            raise EngineError(
                f"{path}: expected (batch, ...) outputs, the first (batch, channels, anchors) or "
                f"(batch, classes); got {[tuple(y.shape) for y in ys]}"
            )
        info = EngineInfo(
            backend="torch",
            precision="fp16" if half else "fp32",
            input_name="images",
            input_hw=(h, w),
            max_batch=max_batch,
            providers=(f"torch {torch.__version__} {device}",),
            metadata=metadata,
            output_names=tuple(f"output{i}" for i in range(len(ys))),
            output_shapes=tuple(tuple(int(v) for v in y.shape[1:]) for y in ys),
        )
        log.info("torch engine on %s, %s, input %dx%d, batch <= %d", device, info.precision, h, w, max_batch)
        return cls(torch, module, device, half, info, cuda_graphs)

    # --------------------------------------------------------------------------------- host memory

    def run(self, batch: npt.NDArray[np.float32]) -> Outputs:
        if self._closed:
            raise EngineError("engine is closed")
        self.check_input(batch)
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._device)
        with torch.inference_mode():
            ys = _outputs(self._module(x.half() if self._half else x))
            return tuple(np.asarray(y.float().cpu().numpy(), np.float32) for y in ys)

    # ------------------------------------------------------------------------------- device memory

    def device_io(self) -> DeviceIO | None:
        if self._device.type != "cuda":
            return None
        shapes = tuple((self.info.max_batch, *(int(d or 0) for d in s)) for s in self.info.output_shapes)
        return DeviceIO("float16" if self._half else "float32", shapes)

    def enqueue(self, input_ptr: int, output_ptrs: Sequence[int], batch: int, stream_handle: int) -> None:
        if self._closed:
            raise EngineError("engine is closed")
        self.check_batch(batch)
        torch = self._torch
        stream = self._stream(stream_handle)
        if self._use_graphs:
            graph = self._graph(input_ptr, output_ptrs, batch, stream_handle, stream)
            with torch.cuda.stream(stream):
                graph.replay()
            return
        x, outs = self._tensors(input_ptr, output_ptrs, batch)
        with torch.cuda.stream(stream), torch.inference_mode():
            self._forward(x, outs)

    def prepare_device(
        self, input_ptr: int, output_ptr_sets: Sequence[Sequence[int]], stream_handle: int
    ) -> None:
        """Record every batch bucket's CUDA graph for these buffers now: capturing later, while cameras
        and the publish thread run, stalls the pipeline (a capture takes a few runs of the model) and can
        fail (a capture is invalidated by another thread's CUDA work)."""
        if not self._use_graphs:
            return
        stream = self._stream(stream_handle)
        started = time.perf_counter()
        for outputs in output_ptr_sets:
            for bucket in self._buckets:
                self._graph(input_ptr, outputs, bucket, stream_handle, stream)
        log.info(
            "torch engine: %d CUDA graphs recorded (batches %s) in %.1fs",
            len(self._graphs),
            ", ".join(map(str, self._buckets)),
            time.perf_counter() - started,
        )

    def _graph(self, input_ptr: int, output_ptrs: Sequence[int], batch: int, handle: int, stream: Any) -> Any:
        """The graph that runs ``batch`` images: the one of the smallest bucket that holds them (the rows
        past ``batch`` are computed on whatever the buffers hold and never read)."""
        bucket = next(b for b in self._buckets if b >= batch)
        key = (input_ptr, *output_ptrs, bucket, handle)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._capture(*self._tensors(input_ptr, output_ptrs, bucket), stream)
        return graph

    def _stream(self, handle: int) -> Any:
        """torch's wrapper of the caller's CUDA stream, made once per handle."""
        stream = self._streams.get(handle)
        if stream is None:
            stream = self._streams[handle] = self._torch.cuda.ExternalStream(handle, device=self._device)
        return stream

    def _tensors(self, input_ptr: int, output_ptrs: Sequence[int], batch: int) -> tuple[Any, list[Any]]:
        """The input and output tensors of ``batch`` images over the caller's device buffers."""
        h, w = self.info.input_hw
        x = self._view(input_ptr, (batch, 3, h, w), "<f2" if self._half else "<f4")
        outs = [
            self._view(ptr, (batch, *(int(d or 0) for d in shape)), "<f4")
            for ptr, shape in zip(output_ptrs, self.info.output_shapes, strict=True)
        ]
        return x, outs

    def _forward(self, x: Any, outs: list[Any]) -> None:
        for out, y in zip(outs, _outputs(self._module(x)), strict=True):
            out.copy_(y)

    def _capture(self, x: Any, outs: list[Any], stream: Any) -> Any:
        """Record model + output copies on ``stream`` as a CUDA graph (once per buffers and batch size)."""
        torch = self._torch
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # warm-up on this stream (TorchScript profiles the first runs): not captured
                self._forward(x, outs)
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: the camera and publish threads keep making CUDA calls while this thread captures
        with (
            torch.inference_mode(),
            torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"),
        ):
            self._forward(x, outs)
        log.info("torch engine: CUDA graph recorded for batch %d", x.shape[0])
        return graph

    def _view(self, ptr: int, shape: tuple[int, ...], typestr: str) -> Any:
        """A tensor over device memory the caller owns; made once per (address, shape) and reused."""
        key = (ptr, shape, typestr)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self._torch.as_tensor(
                _DeviceArray(ptr, shape, typestr), device=self._device
            )
        return view

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._graphs.clear()
        self._views.clear()
        self._streams.clear()
        self._module = None


def _outputs(y: Any) -> list[Any]:
    """The model's output tensors: Ultralytics exports return the head tensor, or a tuple with it first
    (segmentation: then the mask prototypes); nested lists (feature maps of older heads) are not outputs."""
    if isinstance(y, list | tuple):
        return [t for t in y if not isinstance(t, list | tuple | dict)]
    return [y]


def _metadata(raw: Any) -> dict[str, str]:
    """Ultralytics stores its metadata as JSON in the ``config.txt`` extra file; values become strings
    in the form the ONNX metadata has (``names`` as a Python dict literal)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in data.items():
        if key == "names" and isinstance(value, dict):
            out[key] = repr({int(k): str(v) for k, v in value.items()})
        elif isinstance(value, list | dict):
            out[key] = json.dumps(value)
        else:
            out[key] = str(value)
    return out


def batch_buckets(max_batch: int) -> list[int]:
    """The batch sizes that get a CUDA graph: 1, 2, 3, 4, 6, 8, 12, 16... (powers of two and the halfway
    steps between them, so a batch pads by at most a third) up to ``max_batch``, which is always one."""
    sizes = {max_batch}
    p = 1
    while p < max_batch:
        sizes.update(s for s in (p, p + p // 2) if s < max_batch)
        p *= 2
    return sorted(sizes)
