"""What makes a TensorRT engine, calibration cache or timing cache valid for *this* device.

A plan is only valid for the TensorRT version, GPU (compute capability) and L4T release it was built on,
and an INT8 calibration cache only for the model, input shape, batch profile, algorithm and calibration
data it was computed from. Every one of those goes into the key; the key's digest names the files, so a
JetPack upgrade, a new GPU, new weights or new calibration frames can never load a stale artifact.
No TensorRT import here: the key is computed before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The device an artifact is built for. ``l4t`` is e.g. ``R36.4.0``, or ``""`` off Jetson."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100)
    l4t: str = ""
    integrated: bool = False

    def short(self) -> str:
        """A file-name-safe tag: ``sm87-trt10.3.0-R36.4.0``."""
        tag = f"sm{self.compute_capability.replace('.', '')}-trt{self.trt_version}"
        return _safe(f"{tag}-{self.l4t}" if self.l4t else tag)


def read_l4t_release(path: Path = NV_TEGRA_RELEASE) -> str:
    """``R36.4.0`` from ``# R36 (release), REVISION: 4.0, ...``; ``""`` when not on a Jetson."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", text)
    return f"R{match.group(1)}.{match.group(2)}" if match else ""


@dataclass(frozen=True, slots=True)
class BatchProfile:
    """Dynamic batch optimization profile: min 1, opt, max."""

    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.opt <= self.max:
            raise ValueError(f"batch profile needs 1 <= opt <= max, got opt={self.opt} max={self.max}")


@dataclass(frozen=True, slots=True)
class EngineKey:
    """Everything an engine depends on. ``calib_*`` are empty for fp32/fp16 builds; ``quantization`` is
    set for explicit INT8 only (the Q/DQ model's excluded nodes), so a new exclusion set rebuilds."""

    model_sha256: str
    input_hw: tuple[int, int]
    batch: BatchProfile
    precision: str  # the precision asked for: fp32 | fp16 | int8
    calib_algorithm: str
    calib_data_sha256: str
    device: DeviceInfo
    dla_core: int | None
    quantization: str = ""  # explicit INT8: what shaped the Q/DQ model (the nodes kept in float)

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["input_hw"] = list(self.input_hw)
        if not self.quantization:  # keys without it keep the digests they had before it existed
            data.pop("quantization")
        return data

    def digest(self) -> str:
        return _digest(self.as_dict())

    def calibration_digest(self) -> str:
        """Key of the INT8 calibration cache: not the precision flags or DLA core, but the rest."""
        d = self.as_dict()
        for k in ("precision", "dla_core"):
            d.pop(k)
        return _digest(d)

    def timing_digest(self) -> str:
        """Key of the timing cache: only the device matters (layer timings are per GPU and TensorRT)."""
        return _digest({"device": asdict(self.device)})

    def engine_name(self, model_stem: str) -> str:
        h, w = self.input_hw
        dla = f"-dla{self.dla_core}" if self.dla_core is not None else ""
        base = f"{model_stem}-{h}x{w}-b{self.batch.max}-{self.precision}{dla}-{self.device.short()}"
        return _safe(f"{base}-{self.digest()[:12]}")


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
