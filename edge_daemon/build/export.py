"""Export ``.pt`` weights to ONNX (or TorchScript) once, cached; ``.onnx`` and ``.torchscript`` files are
used as they are.

Cache layout: ``<cache_dir>/onnx/<stem>-<sha256[:16]>-<H>x<W>.onnx``. The key is the weights' content hash
and the input size, so replacing the weights or changing ``model.imgsz`` exports again, and nothing else
does. Exports are written to a temporary directory and renamed into place, so an interrupted export never
leaves a half-written ONNX file under the final name. Needs the ``export`` extra (Ultralytics, torch).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from edge_daemon.errors import ModelError
from edge_daemon.model.info import DEFAULT_IMGSZ, sha256_file

log = logging.getLogger(__name__)


def exported_onnx_path(
    pt_path: Path, sha256: str, imgsz: tuple[int, int], cache_dir: Path, dynamic_batch: bool = False
) -> Path:
    batch = "-bdyn" if dynamic_batch else ""
    return cache_dir / "onnx" / f"{pt_path.stem}-{sha256[:16]}-{imgsz[0]}x{imgsz[1]}{batch}.onnx"


def resolve_onnx(
    model_path: Path, imgsz: tuple[int, int] | None, cache_dir: Path, dynamic_batch: bool = False
) -> tuple[Path, str]:
    """Return (ONNX path to load, sha256 of the file the user configured).

    ``.onnx`` files are used as they are. ``.pt`` files are exported through Ultralytics on first use and
    then served from the cache.
    """
    if model_path.suffix.lower() == ".xml":  # OpenVINO IR: its weights are the .bin beside it
        weights = model_path.with_suffix(".bin")
        return model_path, sha256_file(weights if weights.is_file() else model_path)
    sha = sha256_file(model_path)
    if model_path.suffix.lower() == ".onnx":
        return model_path, sha
    if model_path.suffix.lower() == ".torchscript":
        raise ModelError(f"{model_path}: a TorchScript file runs only with engine.backend 'torch'")
    size = imgsz or DEFAULT_IMGSZ
    target = exported_onnx_path(model_path, sha, size, cache_dir, dynamic_batch)
    if target.is_file():
        log.info("using cached ONNX export %s", target)
        return target, sha
    export_pt(model_path, size, target, dynamic_batch)
    return target, sha


def resolve_torchscript(model_path: Path, imgsz: tuple[int, int] | None, cache_dir: Path) -> tuple[Path, str]:
    """Return (TorchScript path to load, sha256 of the configured file), exporting ``.pt`` once (cached
    under ``<cache_dir>/torchscript/``, keyed like the ONNX exports). ``.torchscript`` files are used as
    they are."""
    sha = sha256_file(model_path)
    if model_path.suffix.lower() == ".torchscript":
        return model_path, sha
    if model_path.suffix.lower() != ".pt":
        raise ModelError(f"{model_path}: the torch backend runs .pt weights or a .torchscript export")
    size = imgsz or DEFAULT_IMGSZ
    target = cache_dir / "torchscript" / f"{model_path.stem}-{sha[:16]}-{size[0]}x{size[1]}.torchscript"
    if target.is_file():
        log.info("using cached TorchScript export %s", target)
        return target, sha
    export_pt(model_path, size, target, fmt="torchscript")
    return target, sha


def export_pt(
    pt_path: Path, imgsz: tuple[int, int], target: Path, dynamic_batch: bool = False, fmt: str = "onnx"
) -> None:
    """Export Ultralytics weights to ONNX (or ``fmt`` "torchscript", or "openvino": a folder) at ``target``
    (atomic): fixed size; batch dynamic if asked (Ultralytics' dynamic export makes height and width
    dynamic too; the engine profile pins them). TorchScript is traced at batch 1; its batch dimension stays
    free."""
    os.environ.setdefault("YOLO_VERBOSE", "False")  # keep Ultralytics' banner out of the daemon's log
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ModelError(
            f"{pt_path}: exporting .pt weights needs Ultralytics; install the extra "
            "(pip install 'edge-daemon[export]') or point model.path at an .onnx file"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to %s at %dx%d (first use only) ...", pt_path.name, fmt, *imgsz)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as tmp:
        work = Path(tmp) / pt_path.name
        shutil.copyfile(pt_path, work)  # Ultralytics writes next to the weights; keep that in our temp dir
        try:
            extras: dict[str, dict[str, Any]] = {
                "onnx": {"dynamic": dynamic_batch},
                "torchscript": {"device": "cpu"},
            }
            extra = extras.get(fmt, {})
            with warnings.catch_warnings():  # tracer and deprecation warnings are Ultralytics' business
                warnings.simplefilter("ignore")
                out = YOLO(str(work)).export(format=fmt, imgsz=list(imgsz), verbose=False, **extra)
        except Exception as exc:  # Ultralytics raises many types; all mean "this export failed"
            label = {"onnx": "ONNX", "torchscript": "TorchScript"}.get(fmt, fmt)
            raise ModelError(f"{pt_path}: {label} export at imgsz {imgsz} failed: {exc}") from None
        exported = Path(str(out))
        if exported.is_file():
            with exported.open("rb") as fh:
                os.fsync(fh.fileno())
        os.replace(exported, target)  # a folder (OpenVINO) too, onto a target that is absent
    log.info("exported %s", target)
