"""TensorRT inference engine: a deserialized plan run with the named-tensor API on one CUDA stream.

Per call: the batch is copied into a pinned host buffer, uploaded asynchronously, ``execute_async_v3``
runs on the stream, every output is downloaded into pinned memory, and the stream is synchronized.
Buffers are allocated once for the profile's max batch; tensor addresses are bound once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorrt as trt

from edge_daemon.errors import EngineError
from edge_daemon.gpu.memory import DeviceView, HostView, Memory
from edge_daemon.runtime.base import Artifact, DeviceIO, EngineInfo, InferenceEngine, Outputs
from edge_daemon.runtime.tensorrt.compat import dims
from edge_daemon.runtime.tensorrt.logger import TrtLogger
from edge_daemon.runtime.tensorrt.planfile import read_plan

log = logging.getLogger(__name__)


class TensorRTEngine(InferenceEngine):
    """Stores ready parts; open one with :meth:`from_config` (a plan file) or :meth:`from_plan` (bytes)."""

    def __init__(
        self,
        engine: Any,
        context: Any,
        memory: Memory,
        info: EngineInfo,
        buffers: tuple[HostView, DeviceView, list[tuple[HostView, DeviceView]]],
        runtime: Any = None,
    ) -> None:
        self.info = info
        self._engine = engine
        self._context = context
        self._runtime = runtime  # keeps the runtime alive as long as the engine
        self._memory = memory
        self._host_in, self._dev_in, self._outs = buffers
        self._out_shapes_max = tuple(tuple(int(v) for v in host.array.shape) for host, _ in self._outs)
        self._min_batch = 1  # a fixed-batch engine (static batch, DLA) runs smaller batches padded
        self._closed = False

    @classmethod
    def from_config(cls, config: Any, artifact: Artifact) -> TensorRTEngine:
        """Load the plan at ``artifact.path`` (built before by :mod:`edge_daemon.build.tensorrt`, or the
        user's own plan or Ultralytics ``.engine``). Raises EngineError if the file is damaged or TensorRT
        refuses it; the caller decides whether to rebuild. ``artifact.memory`` (None: CUDA on
        ``config.device_index``) becomes the engine's once it loads."""
        memory: Memory | None = artifact.memory
        owned = memory is None
        if memory is None:
            from edge_daemon.gpu.memory import CudaMemory

            memory = CudaMemory(config.device_index)
        try:
            started = time.monotonic()
            file = read_plan(artifact.path, artifact.metadata, artifact.precision)
            engine = cls.from_plan(file.plan, memory, TrtLogger(), file.precision, file.metadata)
        except BaseException:
            if owned:
                memory.close()
            raise
        log.info(
            "loaded TensorRT %s engine %s in %.2fs",
            file.precision,
            artifact.path.name,
            time.monotonic() - started,
        )
        return engine

    @classmethod
    def from_plan(
        cls,
        plan: bytes,
        memory: Memory,
        logger: trt.ILogger,
        precision: str,
        metadata: dict[str, str],
    ) -> TensorRTEngine:
        """Deserialize ``plan`` (plain TensorRT plan bytes). Raises EngineError if TensorRT refuses it."""
        memory.activate()  # TensorRT binds the engine to the device current now
        trt.init_libnvinfer_plugins(logger, "")  # a plan with plugin layers needs their creators to load
        runtime = trt.Runtime(logger)
        engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(plan)  # None when refused
        if engine is None:
            raise EngineError(
                "TensorRT could not deserialize the plan (other TensorRT version or GPU, or corrupt)"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise EngineError(
                f"plan must have one input and an output, has inputs {inputs}, outputs {outputs}"
            )
        in_name = inputs[0]
        if any(engine.get_tensor_dtype(n) != trt.DataType.FLOAT for n in [in_name, *outputs]):
            raise EngineError("plan input and outputs must be float32 tensors")
        in_shape = dims(engine.get_tensor_shape(in_name))
        profile = [dims(s) for s in engine.get_tensor_profile_shape(in_name, 0)] if -1 in in_shape else None
        max_batch = profile[2][0] if profile else in_shape[0]
        min_batch = profile[0][0] if profile else in_shape[0]  # = max for static and DLA engines
        h, w = run_hw(in_shape, profile, metadata)
        context: trt.IExecutionContext | None = engine.create_execution_context()
        if context is None:
            raise EngineError("TensorRT could not create an execution context (out of GPU memory?)")
        context.set_input_shape(in_name, (max_batch, 3, h, w))
        out_shapes = [dims(context.get_tensor_shape(n)) for n in outputs]
        host_in = memory.host((max_batch, 3, h, w), np.float32)
        dev_in = memory.device(host_in.array.nbytes)
        outs = []
        for shape in out_shapes:
            host_out = memory.host(shape, np.float32)
            outs.append((host_out, memory.device(host_out.array.nbytes)))
        info = EngineInfo(
            backend="tensorrt",
            precision=precision,
            input_name=in_name,
            input_hw=(h, w),
            max_batch=max_batch,
            providers=(f"TensorRT {trt.__version__}",),
            metadata=metadata,
            output_names=tuple(outputs),
            output_shapes=tuple(tuple(shape[1:]) for shape in out_shapes),
        )
        made = cls(engine, context, memory, info, (host_in, dev_in, outs), runtime)
        made._min_batch = min_batch
        made._bind(dev_in.ptr, [dev.ptr for _, dev in outs])
        return made

    def run(self, batch: npt.NDArray[np.float32]) -> Outputs:
        if self._closed:
            raise EngineError("engine is closed")
        self.check_input(batch)
        self._memory.activate()
        b = batch.shape[0]
        run = (max(b, self._min_batch), *batch.shape[1:])
        if not self._context.set_input_shape(self.info.input_name, run):
            raise EngineError(f"TensorRT refused input shape {run}")
        self._bind(self._dev_in.ptr, [dev.ptr for _, dev in self._outs])  # enqueue() may have bound others
        if b == self.info.max_batch:
            self._host_in.write(batch)
        else:
            self._host_in.array[:b] = batch
        self._memory.upload(self._dev_in, self._host_in)
        if not self._context.execute_async_v3(self._memory.stream_handle):
            raise EngineError("TensorRT execute_async_v3 failed; see the TensorRT log")
        for host, dev in self._outs:
            self._memory.download(host, dev)
        self._memory.synchronize()
        results = []
        for name, (host, _) in zip(self.info.output_names, self._outs, strict=True):
            shape = dims(self._context.get_tensor_shape(name))
            out = host.array.reshape(-1)[: int(np.prod(shape))].reshape(shape)
            results.append(np.array(out[:b]))
        return tuple(results)

    def device_io(self) -> DeviceIO | None:
        from edge_daemon.gpu.memory import CudaMemory

        if not isinstance(self._memory, CudaMemory):  # the test double's host memory
            return None
        return DeviceIO("float32", self._out_shapes_max)

    def enqueue(self, input_ptr: int, output_ptrs: Sequence[int], batch: int, stream_handle: int) -> None:
        """Run on the caller's device buffers and stream (the CUDA pipeline); returns without waiting."""
        if self._closed:
            raise EngineError("engine is closed")
        self.check_batch(batch)
        self._memory.activate()
        h, w = self.info.input_hw
        run = (max(batch, self._min_batch), 3, h, w)  # the caller's buffers hold max_batch
        if not self._context.set_input_shape(self.info.input_name, run):
            raise EngineError(f"TensorRT refused input shape {run}")
        self._bind(input_ptr, output_ptrs)
        if not self._context.execute_async_v3(stream_handle):
            raise EngineError("TensorRT execute_async_v3 failed; see the TensorRT log")

    def _bind(self, input_ptr: int, output_ptrs: Sequence[int]) -> None:
        if len(output_ptrs) != len(self.info.output_names):
            raise ValueError(f"{len(self.info.output_names)} output buffers needed, got {len(output_ptrs)}")
        pairs = [(self.info.input_name, input_ptr), *zip(self.info.output_names, output_ptrs, strict=True)]
        if not all(self._context.set_tensor_address(name, ptr) for name, ptr in pairs):
            raise EngineError("TensorRT refused a tensor address")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for buf in (self._host_in, self._dev_in, *(b for pair in self._outs for b in pair)):
            buf.close()
        self._context = None
        self._engine = None
        self._memory.close()


def run_hw(
    in_shape: tuple[int, ...], profile: list[tuple[int, ...]] | None, metadata: dict[str, str]
) -> tuple[int, int]:
    """The input size to run at. Static: the plan's. Dynamic (TensorRT reports -1): the size the model
    was exported for (Ultralytics' ``imgsz``, or the manifest's), else the profile's opt, never its max
    (an Ultralytics ``dynamic=True`` engine allows up to twice the export size)."""
    if in_shape[2] > 0 and in_shape[3] > 0:
        return in_shape[2], in_shape[3]
    assert profile is not None
    lo, opt, hi = profile
    try:
        size = json.loads(metadata.get("imgsz", "null"))
    except ValueError:
        size = None
    if isinstance(size, int):
        size = [size, size]
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size):
        h, w = size
        if lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]:
            return h, w
        log.warning(
            "the engine's imgsz %s is outside its profile %s..%s; using the profile's opt", size, lo, hi
        )
    return opt[2], opt[3]
