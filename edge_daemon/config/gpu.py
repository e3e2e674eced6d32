"""The ``gpu`` section: the CUDA pipeline for engines that run on device memory."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_daemon.config.base import Strict


class GpuConfig(Strict):
    """The CUDA pipeline (pinned frame ring, GPU letterbox, engine on the same stream) for GPU engines."""

    preprocess: Literal["auto", "gpu", "cpu"] = Field(
        "auto",
        description="gpu: frames go through pinned memory and the GPU letterbox kernel straight into the "
        "engine's device input; cpu: OpenCV letterbox on the camera threads; auto: gpu when the engine "
        "runs on device memory.",
    )
    mapped_frames: Literal["auto", "on", "off"] = Field(
        "auto", description="Zero-copy mapped pinned frame slots; auto: on integrated GPUs (Jetson)."
    )
    wait: Literal["block", "spin", "yield", "auto"] = Field(
        "block",
        description="How a host thread waits for the GPU (CUDA's device scheduling flag, set once per "
        "process before the engine loads, and the pipeline's events made blocking to match): block sleeps "
        "until the work is done and frees the core (measured: 0.25 instead of 0.60 host cores per stream; "
        "best with many cameras, worker processes, or a Jetson's few cores); spin keeps a core busy polling "
        "(a few microseconds sooner at one camera); yield polls and yields; auto is CUDA's heuristic "
        "(spin while there are fewer CUDA contexts than cores).",
    )
    in_flight: int = Field(2, ge=1, le=8, description="Batches queued on the GPU at once (output slots).")
    cpu_fallback: bool = Field(
        True,
        description="With no usable GPU (no driver, no cuda-python / TensorRT / torch), run the CPU engine "
        "(ONNX Runtime, fp32) instead of exiting; said once in the log and in the MQTT info topic.",
    )
