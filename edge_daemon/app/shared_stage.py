"""The CUDA stage of a worker whose engine is the engine process's (``service.shared_engine``,
:mod:`edge_daemon.app.engine_server`). Imported only where a GPU runs: it needs cuda-python."""

from __future__ import annotations

import time
from typing import Any

from edge_daemon.app.engine_server import RemoteEngine
from edge_daemon.gpu import cuda
from edge_daemon.pipeline.cuda_stage import GpuBatch, GpuStage
from edge_daemon.runtime import Outputs


class SharedEngineStage(GpuStage):
    """The CUDA stage of a worker whose engine is the engine process's: frames are pre-processed here as
    always, the batch is copied into a slot of the shared block (one DMA) and sent; the publish thread
    waits for that slot and reads the outputs where the engine process wrote them (no copy)."""

    engine: RemoteEngine

    def submit(self, items: list[Any]) -> GpuBatch:
        self._in_thread()
        started = time.perf_counter()
        out = self._next_out()
        slot = self._outs.index(out)
        try:
            for i, item in enumerate(items):
                self._launch(item, self.input.ptr + i * self._per_image)
            address = self.engine.block.address + self.engine.layout.input_offset(slot)
            cuda.copy_ptr_async(
                address, self.input.ptr, len(items) * self._per_image, "dtoh", self.stream.handle
            )
            self.stream.synchronize()  # in the block before the engine process reads it (and the frames
            self.engine.send(slot, len(items))  # are free to go back: their pixels are in the batch)
        except BaseException:
            self._free_outs.put(out)
            raise
        return GpuBatch(items, out, started)

    def outputs(self, batch: Any) -> tuple[Outputs, float]:
        slot = self._outs.index(batch.out)
        self.engine.wait(slot)
        ms = (time.perf_counter() - batch.started) * 1000.0
        n, block = len(batch.items), self.engine.block
        return tuple(block.output(slot, i, n) for i in range(len(self.engine.layout.output_shapes))), ms
