"""``edge-daemon quant-report``: how close INT8 stays to FP32 on the device's own frames, and how fast.

No labeled data set exists for a product's cameras, so FP32 detections at conf >= 0.25 are the reference
(pseudo-labels). Each INT8 variant's detections (conf >= 0.001, as for validation) are scored against
them with pycocotools' COCOeval: mAP50, mAP50-95 and per-class AP50-95 ("agreement"). Variants: the
configured mixed-precision INT8 and a naive all-layers INT8 (MinMax), both quantized the same way: by ONNX
Runtime's quantizer (Q/DQ, backend onnxruntime) or NNCF (backend openvino, FP32 run by OpenVINO in fp32).
Speed: the bare engine per precision and, optionally, the daemon's end-to-end throughput.
"""

from __future__ import annotations

import json
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.build.export import resolve_onnx
from edge_daemon.build.quant.agreement import (
    PREDICTION_CONF,
    REFERENCE_CONF,
    by_boxes,
    coco_agreement,
    keypoint_agreement,
    mask_agreement,
    reference_boxes,
)
from edge_daemon.build.quant.cache import QdqRequest, ensure_qdq
from edge_daemon.build.quant.search import targets_from
from edge_daemon.config import FileCamera, OnnxRuntimeEngineConfig, OpenVinoEngineConfig, Settings
from edge_daemon.errors import ConfigError
from edge_daemon.model.info import model_info
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams, decoder, fit
from edge_daemon.runtime import Artifact, InferenceEngine, load_engine
from edge_daemon.types import Detections, LetterboxMeta

log = logging.getLogger(__name__)


@dataclass
class VariantResult:
    name: str
    precision: str
    excluded_nodes: int = 0
    map50: float | None = None
    map50_95: float | None = None
    per_class: dict[str, float] = field(default_factory=dict)
    map50_95_by_boxes: float | None = None  # per-class AP weighted by FP32's boxes (not the class average)
    bare_fps: float = 0.0
    e2e_fps: float | None = None
    detections: int = 0
    mask_map50_95: float | None = None  # segmentation models: mask mAP50-95 vs FP32's masks
    oks_map50_95: float | None = None  # pose models: keypoint (OKS) mAP50-95 vs FP32's keypoints


@dataclass
class QuantReport:
    model: str
    frames: int
    input_hw: tuple[int, int]
    reference_detections: int
    variants: list[VariantResult]
    reference_boxes: dict[str, int] = field(default_factory=dict)  # FP32 boxes per class

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "frames": self.frames,
            "input_hw": list(self.input_hw),
            "reference": f"FP32 detections at conf >= {REFERENCE_CONF} (pseudo-labels)",
            "reference_detections": self.reference_detections,
            "reference_boxes": self.reference_boxes,
            "variants": [v.__dict__ for v in self.variants],
        }

    def table(self) -> str:
        fp32 = next(v for v in self.variants if v.precision == "fp32")
        lines = [
            f"model {self.model}, {self.frames} frames at {self.input_hw[0]}x{self.input_hw[1]}, "
            f"reference: {self.reference_detections} FP32 detections (conf >= {REFERENCE_CONF})",
            "",
            f"{'variant':<40}{'mAP50':>8}{'mAP50-95':>10}{'by boxes':>10}{'bare FPS':>10}{'x FP32':>8}"
            f"{'e2e FPS':>9}{'x FP32':>8}"
            + (f"{'mask mAP':>10}" if fp32.mask_map50_95 is not None else "")
            + (f"{'OKS mAP':>10}" if fp32.oks_map50_95 is not None else ""),
        ]
        for v in self.variants:

            def f(x: float | None, fmt: str = "{:.3f}") -> str:
                return "-" if x is None else fmt.format(x)

            e2e_ratio = v.e2e_fps / fp32.e2e_fps if v.e2e_fps and fp32.e2e_fps else None
            lines.append(
                f"{v.name:<40}{f(v.map50):>8}{f(v.map50_95):>10}{f(v.map50_95_by_boxes):>10}{v.bare_fps:>10.1f}"
                f"{v.bare_fps / fp32.bare_fps:>8.2f}{f(v.e2e_fps, '{:.1f}'):>9}{f(e2e_ratio, '{:.2f}'):>8}"
                + (f"{f(v.mask_map50_95):>10}" if fp32.mask_map50_95 is not None else "")
                + (f"{f(v.oks_map50_95):>10}" if fp32.oks_map50_95 is not None else "")
            )
        mixed = self.variants[1] if len(self.variants) > 1 else None
        if mixed is not None and mixed.per_class:
            lines += ["", f"per-class agreement (AP50-95 vs FP32), {mixed.name}, and FP32's boxes:"]
            for label, ap in sorted(mixed.per_class.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {label:<20}{ap:.3f}{self.reference_boxes.get(label, 0):>8}")
            lines.append(
                "mAP50-95 is the class average (the target's measure): a class of one FP32 box counts as "
                "much as one of thousands; 'by boxes' weighs each class by its FP32 boxes."
            )
        return "\n".join(lines)


def _frames(settings: Settings, count: int) -> list[npt.NDArray[np.uint8]]:
    cam = settings.cameras[0]
    if not isinstance(cam, FileCamera):
        raise ConfigError("quant-report: cameras[0] must be a file camera (the clip to evaluate on)")
    cap = cv2.VideoCapture(str(cam.path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    stride = max(1, total // count) if total else 1
    out: list[npt.NDArray[np.uint8]] = []
    index = 0
    while len(out) < count:
        ok, image = cap.read()
        if not ok:
            break
        if index % stride == 0:
            out.append(np.ascontiguousarray(image, np.uint8))
        index += 1
    cap.release()
    if len(out) < min(count, 10):
        raise ConfigError(f"quant-report: only {len(out)} frames could be read from {cam.path}")
    return out


def _predict(
    engine: InferenceEngine,
    inputs: list[tuple[npt.NDArray[np.float32], LetterboxMeta]],
    head: str,
    params: DecodeParams,
) -> tuple[list[Detections], float]:
    decode = decoder(head, params)
    outs, times = [], []
    for tensor, meta in inputs:
        t0 = time.perf_counter()
        raw = engine.run(tensor)
        times.append(time.perf_counter() - t0)
        outs.append(decode(tuple(o[0] for o in raw), meta))
    return outs, 1.0 / statistics.median(times)


def _task_scores(
    result: VariantResult, task: str, reference: list[Detections], preds: list[Detections], sizes: Any
) -> None:
    """Masks and keypoints scored beside the boxes, for the tasks that have them."""
    if task == "segment":
        result.mask_map50_95 = mask_agreement(reference, preds, sizes)
    elif task == "pose":
        result.oks_map50_95 = keypoint_agreement(reference, preds)


def run_report(
    settings: Settings, frames: int = 300, naive: bool = True, end_to_end: bool = True
) -> QuantReport:
    """Build/load FP32 and INT8 variants, evaluate them on ``frames`` frames of the first camera."""
    cfg = settings.engine
    if not isinstance(cfg, (OnnxRuntimeEngineConfig, OpenVinoEngineConfig)):
        raise ConfigError("quant-report runs the CPU backends; set engine.backend: onnxruntime or openvino")
    fp32_path, sha = resolve_onnx(settings.model.path, settings.model.imgsz, settings.model.cache_dir)
    base = cfg.model_copy(update={"precision": "fp32"})
    fp32 = load_engine(base, fp32_path)
    info = model_info(
        fp32.info.metadata, fp32.info.input_hw, settings.model.path, sha, fp32.info.output_shapes
    )
    if info.task == "classify":
        raise ConfigError("quant-report scores detections; a classifier has none (task classify)")
    images = _frames(settings, frames)
    sizes = [(int(img.shape[0]), int(img.shape[1])) for img in images]
    inputs = [preprocess(img, fp32.info.input_hw, fit(info.task)) for img in images]
    kpts = info.kpt_shape
    ref_params = DecodeParams(info.num_classes, conf=REFERENCE_CONF, iou=settings.detect.iou, keypoints=kpts)
    pred_params = DecodeParams(
        info.num_classes, conf=PREDICTION_CONF, iou=settings.detect.iou, keypoints=kpts
    )
    reference, fp32_fps = _predict(fp32, inputs, info.head, ref_params)
    fp32.close()
    boxes = reference_boxes(reference, info.names)
    variants = [
        VariantResult(
            "FP32 (reference)",
            "fp32",
            bare_fps=fp32_fps,
            map50=1.0,
            map50_95=1.0,
            map50_95_by_boxes=1.0,
            detections=sum(len(d) for d in reference),
        )
    ]
    _task_scores(variants[0], info.task, reference, reference, sizes)
    for name, artifact, manifest in _int8_variants(settings, fp32_path, sha, naive):
        engine = load_engine(cfg.model_copy(update={"precision": "int8"}), artifact)
        preds, fps = _predict(engine, inputs, info.head, pred_params)
        engine.close()
        m50, m5095, per_class = coco_agreement(reference, preds, info.names)
        result = VariantResult(
            name,
            "int8",
            len(manifest.get("excluded_nodes", [])),
            m50,
            m5095,
            per_class,
            by_boxes(per_class, boxes),
            fps,
            detections=sum(len(d) for d in preds),
        )
        _task_scores(result, info.task, reference, preds, sizes)
        variants.append(result)
    if end_to_end:
        variants[0].e2e_fps = _end_to_end(settings, "fp32", len(images))
        variants[1].e2e_fps = _end_to_end(settings, "int8", len(images))
    return QuantReport(
        info.model_id, len(images), fp32.info.input_hw, variants[0].detections, variants, boxes
    )


def _int8_variants(
    settings: Settings, fp32_path: Path, sha: str, naive: bool
) -> list[tuple[str, Artifact, dict[str, Any]]]:
    """(name, artifact, manifest) of each INT8 variant: the configured one, the fixed default set beside it
    (ONNX Runtime) and the naive all-layers one, quantized by the backend's own route."""
    cfg = settings.engine
    stem, cache, camera = settings.model.path.stem, settings.model.cache_dir, settings.cameras[0]
    out = []
    if isinstance(cfg, OpenVinoEngineConfig):
        from edge_daemon.build.quant.openvino import OvInt8Request, ensure_ov_int8

        sets: list[tuple[str, Any]] = [(f"INT8 NNCF ({_tag(cfg.quantize.exclude)})", cfg.quantize.exclude)]
        if naive:
            sets.append(("INT8 NNCF naive (all layers)", "none"))
        for name, exclude in sets:
            req = OvInt8Request(fp32_path, sha, stem, cache, cfg.calibration, camera, exclude)
            out.append((name, *ensure_ov_int8(req)))
        return out
    assert isinstance(cfg, OnnxRuntimeEngineConfig)
    plans: list[tuple[str, Any, Any]] = [
        (
            f"INT8 mixed ({_tag(cfg.quantize.exclude)}, {cfg.quantize.method})",
            cfg.quantize.exclude,
            cfg.quantize.method,
        )
    ]
    if cfg.quantize.exclude != "head-final+attn":  # the fixed set beside what the config chose
        plans.append(("INT8 mixed (head-final+attn, entropy)", "head-final+attn", "entropy"))
    if naive:
        plans.append(("INT8 naive (all layers, minmax)", "none", "minmax"))
    for name, exclude, method in plans:
        path, manifest = ensure_qdq(
            QdqRequest(
                fp32_path,
                sha,
                stem,
                cache,
                cfg.calibration,
                camera,
                "cpu",
                method,
                exclude,
                targets_from(cfg.quantize.search),
            )
        )
        out.append((name, Artifact(path, precision="int8"), manifest))
    return out


def _tag(exclude: Any) -> str:
    return exclude if isinstance(exclude, str) else "custom"


def _end_to_end(settings: Settings, precision: str, frames: int) -> float:
    """The daemon's pipeline throughput (no MQTT) over ``frames`` frames of the clip at ``precision``."""
    from edge_daemon.app import build_pipeline, load_model
    from edge_daemon.publish.base import NullPublisher

    cam = settings.cameras[0].model_copy(
        update={"drop_policy": "block", "realtime": False, "loop": True, "max_frames": frames}
    )
    engine = settings.engine.model_copy(update={"precision": precision})
    s = settings.model_copy(update={"cameras": [cam], "engine": engine})
    model = load_model(s)
    try:
        pipeline = build_pipeline(s, model, publisher=NullPublisher())
        return pipeline.run(threading.Event()).fps()
    finally:
        model.engine.close()


def write_png(report: QuantReport, path: Path) -> None:
    """Per-class agreement of each INT8 variant, and speed per precision, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    int8 = [v for v in report.variants if v.precision == "int8"]
    labels = sorted({c for v in int8 for c in v.per_class}, key=lambda c: -(int8[0].per_class.get(c, 0.0)))[
        :12
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(1, len(int8))
    x = np.arange(len(labels))
    for i, v in enumerate(int8):
        ax1.bar(
            x + i * width,
            [v.per_class.get(c, 0.0) for c in labels],
            width,
            label=f"{v.name}: mAP50-95 {v.map50_95 or 0.0:.3f}",
        )
    ax1.set_xticks(x + width * (len(int8) - 1) / 2, labels, rotation=30, ha="right")
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("AP50-95 vs FP32")
    ax1.set_title(f"Per-class agreement with FP32, {report.frames} frames")
    ax1.legend(loc="lower left", fontsize=8)
    names = [
        v.name.split(" (")[0]
        if v.precision == "fp32"
        else v.name.split(" (")[0] + "\n" + v.name.split(" (")[1].rstrip(")")
        for v in report.variants
    ]
    ax2.bar(
        range(len(report.variants)),
        [v.bare_fps for v in report.variants],
        color=["grey", "C0", "C1"][: len(report.variants)],
    )
    ax2.set_xticks(range(len(report.variants)), names, fontsize=7)
    ax2.set_ylabel("engine FPS (median)")
    ax2.set_title("Speed")
    fig.suptitle(report.model)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(report: QuantReport, path: Path) -> None:
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
