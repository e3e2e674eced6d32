"""One engine for every worker process (``service.shared_engine``): one batch across all cameras.

With ``service.workers`` > 1 each worker otherwise loads its own copy of the engine, which batches only its
own cameras, and the copies share the GPU by time slices between their CUDA contexts. Measured on the lent
H100 (docs/benchmarks.md): 8 engines at batch 8 ran 2,329 images/s together where one engine at batch 64
ran 3,404, and at batch 4, 1,851 against 3,106 at batch 32. Here one process (:func:`serve`) loads the
engine once and runs it for every worker: whatever the workers have sent while the last batch ran goes
into the next one, so the batch grows with the load.

A worker keeps its whole pipeline (decode, the CUDA stage's pre-processing, post-processing, analytics)
and runs a :class:`RemoteEngine` in place of the engine. It makes a block of shared memory
(:mod:`edge_daemon.app.shared_memory`) with a slot for each batch it may have in flight. On a GPU the
block is page-locked in both processes (``cudaHostRegister``) and every copy is DMA on a CUDA stream:
the worker's stage
(:mod:`edge_daemon.app.shared_stage`) copies its pre-processed batch into a slot, the engine process copies
every waiting worker's slot into one batch, runs it and copies each worker's outputs into its slot, and
the worker's publish thread reads them there. On the CPU (ONNX Runtime, OpenVINO) the same block is read
and written as arrays, one batch at a time (:meth:`RemoteEngine.run`).

Messages on each worker's pipe (pickled tuples): engine process -> worker ``("engine", Bundle)`` once
loaded, then ``("done", slot, ms)`` or ``("error", slot, text)`` per batch; worker -> engine process
``("attach", batch, slots)`` followed by the block's descriptor, then ``("run", slot, n)`` per batch. To
the main process: ``("model", about)`` once loaded, ``("end", error, None)`` last (as a worker ends,
without a report). The engine process ends when every worker has gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.app.shared_memory import Block, Layout
from edge_daemon.config import Settings
from edge_daemon.errors import EngineError
from edge_daemon.publish.payload import ModelTag
from edge_daemon.runtime import Artifact, DeviceIO, EngineInfo, InferenceEngine, Outputs
from edge_daemon.threads import set_os_name
from edge_daemon.types import ModelInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    """What a worker needs to stand in for the engine: the engine's own description and the model's."""

    info: EngineInfo
    io: DeviceIO | None
    model: ModelInfo
    tag: ModelTag
    model_path: Path
    artifact: Artifact
    fallback: str | None
    device_index: int | None


class RemoteEngine(InferenceEngine):
    """The engine of the engine process, as a worker's pipeline sees it: at most ``batch`` images a call
    (the worker's cameras). :meth:`run` (host arrays, the CPU stage) waits for its batch; on a GPU the
    :class:`~edge_daemon.app.shared_stage.SharedEngineStage` sends a batch from slot ``k`` of the block
    (:meth:`send`) and its publish thread waits for it (:meth:`wait`), so up to ``slots`` batches of the
    worker are in flight."""

    def __init__(self, conn: Connection, bundle: Bundle, batch: int, slots: int = 2) -> None:
        self._conn = conn
        self.bundle = bundle
        self.layout = Layout.of(bundle.info, bundle.io, max(1, min(batch, bundle.info.max_batch)), slots)
        self.info = replace(bundle.info, max_batch=self.layout.batch)
        self._io = None
        if bundle.io is not None:
            shapes = tuple((self.layout.batch, *s[1:]) for s in bundle.io.output_shapes)
            self._io = DeviceIO(bundle.io.input_dtype, shapes)
        self.block = Block.create(self.layout)
        self._replies: dict[int, tuple[Any, ...]] = {}
        self._closed = False
        try:
            if self._io is not None:
                self.block.pin()
            conn.send(("attach", self.layout.batch, slots))
            send_handle(conn, self.block.fd, os.getpid())  # (the pid matters on Windows only)
        except BaseException:
            self.block.close()
            raise

    def device_io(self) -> DeviceIO | None:
        return self._io

    def send(self, slot: int, n: int) -> None:
        """Run the ``n`` images in ``slot``'s input (the inference thread)."""
        try:
            self._conn.send(("run", slot, n))
        except (OSError, ValueError) as exc:
            raise EngineError(f"the engine process has gone ({type(exc).__name__})") from None

    def wait(self, slot: int) -> float:
        """Until ``slot``'s outputs are in the block (the publish thread); the engine process's
        milliseconds on the batch it went in."""
        while slot not in self._replies:
            try:
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise EngineError(f"the engine process has gone ({type(exc).__name__})") from None
            if reply[0] == "error" and len(reply) == 2:  # the engine process itself failed
                raise EngineError(f"the engine process failed: {reply[1]}")
            self._replies[reply[1]] = reply
        reply = self._replies.pop(slot)
        if reply[0] != "done":
            raise EngineError(f"the engine process: {reply[2]}")
        return float(reply[2])

    def run(self, batch: npt.NDArray[np.float32]) -> Outputs:
        self.check_input(batch)
        n = batch.shape[0]
        np.copyto(self.block.input(0, n), batch.reshape(-1), casting="same_kind")
        self.send(0, n)
        self.wait(0)
        return tuple(self.block.output(0, i, n).copy() for i in range(len(self.layout.output_shapes)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            self._conn.close()
        self.block.close()


def serve(settings: Settings, main: Connection, workers: list[Connection], level: str) -> None:
    """The engine process: load the engine once, answer every worker until all have gone."""
    from edge_daemon.app.boot import load_model
    from edge_daemon.logs import setup_logging

    set_os_name("edge-engine")
    os.environ.pop("NOTIFY_SOCKET", None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops the workers; they stop this one
    setup_logging(level)
    error: BaseException | None = None
    engine: InferenceEngine | None = None
    try:
        model = load_model(settings)
        engine = model.engine
        device = getattr(settings.engine, "device_index", None) if engine.device_io() is not None else None
        bundle = Bundle(engine.info, engine.device_io(), model.info, model.tag, model.onnx_path,
                        replace(model.artifact, memory=None), model.fallback, device)  # fmt: skip
        main.send(("model", {"names": model.info.names, "tag": model.tag, "fallback": model.fallback}))
        for conn in workers:
            conn.send(("engine", bundle))
        _Server(engine, bundle, workers).loop()
    except BaseException as exc:
        log.exception("the engine process failed")
        error = exc
        for conn in workers:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        from edge_daemon.app.relay import portable

        with contextlib.suppress(OSError, ValueError):
            main.send(("end", portable(error), None))
        if engine is not None:
            engine.close()


class _Server:
    """The engine process's loop: collect the workers' batches, run them as one, answer each."""

    def __init__(self, engine: InferenceEngine, bundle: Bundle, conns: list[Connection]) -> None:
        self.engine, self.bundle = engine, bundle
        self.blocks: dict[Connection, Block] = {}
        self.live = list(conns)
        self.io = engine.device_io()
        self.one = Layout.of(bundle.info, self.io, 1)  # the sizes of one image
        if self.io is not None:
            from edge_daemon.gpu import cuda

            cuda.init_context(bundle.device_index or 0)
            self.stream = cuda.Stream()
            self.input = cuda.DeviceBuffer(bundle.info.max_batch * self.one.input_bytes)
            self.outputs = [cuda.DeviceBuffer(bundle.info.max_batch * b) for b in self.one.output_bytes]
            engine.prepare_device(self.input.ptr, [[o.ptr for o in self.outputs]], self.stream.handle)

    def loop(self) -> None:
        try:
            while self.live:
                pending: list[tuple[Connection, int, int]] = []  # (worker, slot, images)
                for conn in wait(self.live, timeout=1.0):
                    assert isinstance(conn, Connection)
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        self._drop(conn)
                        continue
                    if message[0] == "attach":
                        self._attach(conn, message[1], message[2])
                    elif message[0] == "run":
                        pending.append((conn, int(message[1]), int(message[2])))
                while pending:  # as many of the waiting batches as fit in one (a worker's always fits)
                    take = [pending.pop(0)]
                    total = take[0][2]
                    while pending and total + pending[0][2] <= self.bundle.info.max_batch:
                        total += pending[0][2]
                        take.append(pending.pop(0))
                    self._run(take, total)
        finally:
            for conn in list(self.blocks):
                self._drop(conn)
            if self.io is not None:
                for buf in (self.input, *self.outputs):
                    buf.close()
                self.stream.close()

    def _attach(self, conn: Connection, batch: int, slots: int) -> None:
        """A worker's block, from the descriptor that follows its message; one that cannot be opened (the
        worker died meanwhile, no memory to page-lock) ends that worker alone."""
        block: Block | None = None
        try:
            block = Block(recv_handle(conn), Layout.of(self.bundle.info, self.bundle.io, batch, slots))
            if self.io is not None:
                block.pin()
        except Exception as exc:
            log.error("a worker's shared block cannot be opened: %s", exc)
            if block is not None:
                block.close()
            with contextlib.suppress(OSError, ValueError):
                conn.send(("error", f"its shared block: {type(exc).__name__}: {exc}"))
            self._drop(conn)
            return
        self.blocks[conn] = block

    def _drop(self, conn: Connection) -> None:
        if conn in self.live:
            self.live.remove(conn)
        block = self.blocks.pop(conn, None)
        if block is not None:
            block.close()

    def _run(self, take: list[tuple[Connection, int, int]], total: int) -> None:
        t0 = time.perf_counter()
        try:
            if self.io is not None:
                self._run_device(take, total)
            else:
                self._run_host(take, total)
        except Exception as exc:
            log.exception("batch of %d failed in the engine", total)
            if self.io is not None:  # copies already queued must not still touch a slot the worker reuses
                with contextlib.suppress(Exception):
                    self.stream.synchronize()
            for conn, slot, _ in take:
                with contextlib.suppress(OSError, ValueError):
                    conn.send(("error", slot, f"{type(exc).__name__}: {exc}"))
            return
        ms = (time.perf_counter() - t0) * 1000.0
        for conn, slot, _ in take:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("done", slot, ms))

    def _run_device(self, take: list[tuple[Connection, int, int]], total: int) -> None:
        from edge_daemon.gpu import cuda

        one = self.one
        handle, offset = self.stream.handle, 0
        for conn, slot, n in take:
            block = self.blocks[conn]
            dst = self.input.ptr + offset * one.input_bytes
            src = block.address + block.layout.input_offset(slot)
            cuda.copy_ptr_async(dst, src, n * one.input_bytes, "htod", handle)
            offset += n
        self.engine.enqueue(self.input.ptr, [o.ptr for o in self.outputs], total, handle)
        offset = 0
        for conn, slot, n in take:
            block = self.blocks[conn]
            for i, size in enumerate(one.output_bytes):
                dst = block.address + block.layout.output_offset(slot, i)
                cuda.copy_ptr_async(dst, self.outputs[i].ptr + offset * size, n * size, "dtoh", handle)
            offset += n
        self.stream.synchronize()

    def _run_host(self, take: list[tuple[Connection, int, int]], total: int) -> None:
        h, w = self.bundle.info.input_hw
        inputs = [self.blocks[c].input(slot, n).reshape(n, 3, h, w) for c, slot, n in take]
        outputs = self.engine.run(np.concatenate(inputs).astype(np.float32, copy=False))
        offset = 0
        for conn, slot, n in take:
            for i, out in enumerate(outputs):
                self.blocks[conn].output(slot, i, n)[...] = out[offset : offset + n]
            offset += n


def remote_model(settings: Settings, conn: Connection) -> Any:
    """A worker's :class:`~edge_daemon.app.boot.LoadedModel` whose engine is the engine process's: waits
    until that process has loaded it (or failed)."""
    from edge_daemon.app.boot import LoadedModel

    message = conn.recv()
    if message[0] != "engine":
        raise EngineError(f"the engine process failed: {message[-1]}")
    bundle: Bundle = message[1]
    if bundle.device_index is not None:
        from edge_daemon.gpu import cuda

        cuda.init_context(bundle.device_index)
        with contextlib.suppress(cuda.CudaError):  # as load_model does: an optimisation, not fatal
            cuda.set_wait(bundle.device_index, settings.gpu.wait)
    engine = RemoteEngine(conn, bundle, len(settings.cameras), settings.gpu.in_flight)
    return LoadedModel(engine, bundle.model, bundle.tag, bundle.model_path, bundle.artifact, bundle.fallback)
