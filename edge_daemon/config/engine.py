"""The ``engine`` section: one model per backend, picked by ``backend``, and INT8 calibration/quantization."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, FilePath, model_validator

from edge_daemon.config.base import Strict


class CalibrationConfig(Strict):
    """INT8 calibration data: frames from the first camera at first boot (default), or images."""

    source: Literal["camera", "images"] = "camera"
    images: str | None = Field(None, description="A directory or glob of images, for source: images.")
    frames: int = Field(500, ge=8, le=20000, description="How many frames or images to calibrate on.")
    interval_s: float = Field(
        0.2, ge=0, le=3600, description="Live cameras: seconds between captured frames (spread over time)."
    )
    algorithm: Literal["entropy", "minmax"] = "entropy"

    @model_validator(mode="after")
    def _images_given(self) -> CalibrationConfig:
        if self.source == "images" and not self.images:
            raise ValueError("calibration.images is required when calibration.source is images")
        return self


FloatSet = Literal["auto", "head-final+attn", "head-final", "head", "none"] | list[str]


class SearchConfig(Strict):
    """The mixed-precision search (float set ``auto``): what it aims for, on the calibration frames."""

    agreement: float = Field(0.92, gt=0, le=1, description="Target mAP50-95 of INT8 against FP32.")
    min_speedup: float = Field(
        1.5,
        ge=0,
        le=10,
        description="Speed floor: the search stops before INT8 gets slower than this x FP32.",
    )
    frames: int = Field(100, ge=4, le=1000, description="Calibration frames the search evaluates on.")
    start: Literal["head-final+attn", "head-final", "head", "none"] = Field(
        "head-final",
        description="The named float set the search starts from (none: the all-INT8 model).",
    )
    min_gain: float = Field(
        0.002,
        ge=0,
        le=1,
        description="A group stays in float only if it raises the agreement by at least this much.",
    )


class QuantizeConfig(Strict):
    """How the INT8 Q/DQ model is made from the FP32 one (ONNX Runtime precision: int8)."""

    method: Literal["entropy", "minmax", "percentile", "mse"] = Field(
        "entropy",
        description="Activation ranges. From ONNX Runtime's calibrators: entropy, its KL-divergence "
        "calibrator, which with its default 128-bin histogram has one candidate threshold and so keeps each "
        "tensor's symmetric range -max|x|..max|x| (no clipping); minmax, each tensor's observed min..max; "
        "percentile, 99.999th percentile of |x|, symmetric. mse: the range with the least squared "
        "quantization error on 2048-bin histograms (clips outliers). Compared in docs/benchmarks.md.",
    )
    exclude: FloatSet = Field(
        "head-final+attn",
        description="Nodes kept in float: auto (a mixed-precision search on the calibration frames), a "
        "named set (measured: docs/benchmarks.md) or node-name prefixes.",
    )
    search: SearchConfig = Field(default_factory=SearchConfig)


class OnnxRuntimeEngineConfig(Strict):
    """ONNX Runtime: the embedded CPU default; CUDA / TensorRT execution providers when installed."""

    backend: Literal["onnxruntime"] = "onnxruntime"
    providers: list[Literal["cpu", "cuda", "tensorrt"]] = Field(default=["cpu"], min_length=1)
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="int8: a Q/DQ model quantized on first boot from the camera's frames (cached)."
    )
    calibration: CalibrationConfig = Field(default_factory=lambda: CalibrationConfig(frames=100))
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    intra_op_threads: int | None = Field(None, ge=1, le=256, description="None: one per usable core.")
    spin_wait: bool = Field(
        True,
        description="Let ONNX Runtime's worker threads busy-wait between operators (ORT's default). Measured "
        "faster end to end on 2 cores once OpenCV runs single-threaded; turn off to save power when idle.",
    )


class OpenVinoQuantizeConfig(Strict):
    """How NNCF quantizes the model for OpenVINO (precision: int8)."""

    exclude: Literal["head-final+attn", "head-final", "head", "none"] | list[str] = Field(
        "head-final",
        description="Nodes kept in float (NNCF's ignored scope): a named set or node-name prefixes. "
        "head-final measured best here (docs/benchmarks.md, OpenVINO INT8).",
    )


class OpenVinoEngineConfig(Strict):
    """OpenVINO: Intel CPUs without an NVIDIA GPU (and Intel GPUs). Needs the ``openvino`` extra.
    When to pick it over ONNX Runtime: README, "Which CPU backend"; figures in docs/benchmarks.md."""

    backend: Literal["openvino"]
    precision: Literal["auto", "bf16", "fp32", "int8"] = Field(
        "auto",
        description="auto: the CPU plugin's choice (bf16 on CPUs with AVX512_BF16 or AMX, else fp32); the "
        "precision actually running is what the daemon reports. int8: the model quantized by NNCF on first "
        "boot from the camera's frames (cached; the float set's layers run in fp32).",
    )
    calibration: CalibrationConfig = Field(default_factory=lambda: CalibrationConfig(frames=100))
    quantize: OpenVinoQuantizeConfig = Field(default_factory=OpenVinoQuantizeConfig)
    device: Literal["CPU", "GPU", "AUTO"] = Field("CPU", description="OpenVINO device name.")
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "THROUGHPUT",
        description="THROUGHPUT: OpenVINO's streams, several frames in flight at once (measured on 2 cores: "
        "1.2x the frames per second of LATENCY, about 2x the capture-to-publish delay; docs/benchmarks.md). "
        "LATENCY: one frame at a time on every core, the shortest delay per frame.",
    )
    threads: int | None = Field(None, ge=1, le=256, description="None: OpenVINO's choice (physical cores).")
    cache: bool = Field(True, description="Cache compiled blobs under model.cache_dir/openvino.")


class TensorRTEngineConfig(Strict):
    """TensorRT (8.6 / 10.x): built for this device on first boot, loaded from the cache after."""

    backend: Literal["tensorrt"]
    precision: Literal["fp32", "fp16", "int8"] = "int8"
    allow_fp16_fallback: bool = Field(
        False, description="On a GPU without fast INT8, build FP16 (loudly) instead of failing."
    )
    workspace_gib: float = Field(1.0, gt=0, le=256)
    max_batch: int = Field(1, ge=1, le=64)
    opt_batch: int | None = Field(
        None, ge=1, le=64, description="Batch the profile optimizes for (default max)."
    )
    dla_core: int | None = Field(
        None,
        ge=0,
        le=3,
        description="Run on this DLA core (Xavier/Orin), GPU fallback on: fp16 or implicit int8 (entropy), "
        "a fixed batch (max_batch; smaller batches are padded).",
    )
    device_index: int = Field(0, ge=0, le=16)
    plan: FilePath | None = Field(
        None, description="Load this prebuilt plan (or Ultralytics .engine) instead of building one."
    )
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    int8_mode: Literal["auto", "implicit", "explicit"] = Field(
        "auto",
        description="implicit: calibrator + INT8 builder flag (TensorRT 8.6/10); explicit: strongly typed "
        "network from a Q/DQ ONNX made on first boot (the only INT8 route on TensorRT 11); "
        "auto: explicit on 11+, implicit before.",
    )
    quantize_exclude: FloatSet = Field(
        "head-final+attn",
        description="INT8: the layers kept in float, by both routes (implicit: pinned to FP16 under "
        "OBEY_PRECISION_CONSTRAINTS; explicit: left out of the Q/DQ model); auto: measured by the "
        "mixed-precision search on the CPU (quantize_search).",
    )
    quantize_search: SearchConfig = Field(default_factory=SearchConfig)
    build_lock_timeout_s: float = Field(
        3600, gt=0, description="How long to wait for another process's build."
    )

    @model_validator(mode="after")
    def _batches(self) -> TensorRTEngineConfig:
        if self.opt_batch is not None and self.opt_batch > self.max_batch:
            raise ValueError("opt_batch must be <= max_batch")
        if self.dla_core is not None:  # TensorRT developer guide, "Working with DLA"
            if self.precision == "fp32":
                raise ValueError("dla_core: DLA runs FP16 and INT8 networks only; set precision fp16 or int8")
            if self.precision == "int8" and self.calibration.algorithm != "entropy":
                raise ValueError(
                    "dla_core: DLA needs the entropy calibrator (calibration.algorithm: entropy)"
                )
            if self.precision == "int8" and self.int8_mode == "explicit":
                raise ValueError("dla_core: DLA supports implicit INT8 only (int8_mode: implicit or auto)")
        return self


class TorchEngineConfig(Strict):
    """PyTorch on a CUDA GPU: a TorchScript file (Ultralytics ``export(format="torchscript")``; ``.pt``
    weights are exported once and cached). For NVIDIA GPUs without TensorRT; needs the torch extra."""

    backend: Literal["torch"]
    precision: Literal["fp32", "fp16"] = Field("fp16", description="fp16 needs a CUDA device.")
    device_index: int | None = Field(0, ge=0, le=16, description="CUDA device; None runs on the CPU.")
    max_batch: int = Field(1, ge=1, le=64, description="Largest batch (several cameras in one call).")
    cuda_graphs: bool = Field(
        True,
        description="In the CUDA pipeline, replay the model as a CUDA graph (one launch per batch instead of "
        "hundreds; measured in docs/benchmarks.md).",
    )


EngineConfig = Annotated[
    OnnxRuntimeEngineConfig | OpenVinoEngineConfig | TensorRTEngineConfig | TorchEngineConfig,
    Field(discriminator="backend"),
]
