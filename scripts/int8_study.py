"""INT8 study: how far Q/DQ INT8 variants of a config's model stay from FP32, and how fast they run.

Evaluation: ``--frames`` frames spread over the first camera's clip; FP32 detections at conf >= 0.25 are
the reference, a variant's at conf >= 0.001 are scored against them (``coco_agreement``). Calibration:
the first 96 frames of the config's calibration set. Quantized as the CPU route does it (uint8 asymmetric
activations, int8 symmetric per-channel weights, QDQ, ``CalibStridedMinMax`` 8), with:

- ``--ranges``: ``entropy`` and ``ortminmax``, ONNX Runtime's own calibrators, or ranges per tensor from
  2048-bin asymmetric histograms collected once, passed as ``TensorQuantOverrides``: ``minmax`` (the
  observed min/max: ``ortminmax`` but for Softmax outputs, which ONNX Runtime pins to [0, 1]), ``pctX``
  (two-sided percentile cut), ``mse`` (least expected squared quantization error, 256 levels);
- ``--format tensorrt`` (calib): symmetric int8 activations, the Q/DQ model TensorRT's explicit route builds
  from (ONNX Runtime runs it here: agreement and distance, not TensorRT's speed); ``kl2048`` is TensorRT's
  entropy method (KL divergence on 2048 bins), symmetric;
- ``--float-set``: a named set of :mod:`edge_daemon.build.quant.floatset` or "+"-joined parts: named sets,
  ``hfa`` (head-final+attn), ``attn``, ``concat`` (Concats outside the head), block numbers N (all of
  ``/model.N/``), e.g. ``head+attn+12``.

``floor``: OpenVINO bf16 against FP32 (the metric's noise floor); ``calib``: agreement, output distance,
speed vs FP32, nodes in float; ``sensitivity``: the output distance with one /model.N/ block quantized;
``bootstrap``: mAP50-95 over 30 resamples of the evaluation frames; ``openvino``: OpenVINO INT8 quantized by
NNCF (the daemon's ``build.quant.openvino.nncf_quantize``) per float set, its float layers in f32 or bf16.

    .venv/bin/python scripts/int8_study.py floor -c configs/int8-cpu.yaml
    .venv/bin/python scripts/int8_study.py calib -c configs/int8-cpu.yaml --ranges entropy minmax pct99.99 pct99.999 pct99.9 mse --float-set head-final+attn
    .venv/bin/python scripts/int8_study.py calib -c configs/int8-cpu.yaml --ranges entropy kl2048 mse --format tensorrt
    .venv/bin/python scripts/int8_study.py sensitivity -c configs/int8-cpu.yaml --ranges mse
    .venv/bin/python scripts/int8_study.py bootstrap -c configs/int8-cpu.yaml --ranges entropy mse
    .venv/bin/python scripts/int8_study.py openvino -c configs/int8-cpu.yaml
"""  # noqa: E501

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pickle
import re
import statistics
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnxruntime import quantization as oq

from edge_daemon.build import calibration
from edge_daemon.build.export import resolve_onnx
from edge_daemon.build.quant.agreement import PREDICTION_CONF, REFERENCE_CONF, coco_agreement
from edge_daemon.build.quant.floatset import NAMED_SETS, excluded_nodes, head_prefix
from edge_daemon.build.quant.qdq import _carry_metadata, _Reader
from edge_daemon.build.quant.ranges import HIST_BINS, Histogram, collect_histograms, mse_range
from edge_daemon.build.quant.search import _distance, restore_float
from edge_daemon.config import OnnxRuntimeEngineConfig, load_settings
from edge_daemon.errors import ModelError
from edge_daemon.files import atomic_write
from edge_daemon.model.info import model_info
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams, decoder, fit
from edge_daemon.runtime import Artifact, load_engine
from edge_daemon.tools.quant_report import _frames, _predict
from edge_daemon.types import Detections, LetterboxMeta

CALIB_FRAMES = 96
CHUNK = 8  # calibration frames whose activations are held at once
BOOTSTRAP = 30
Array = npt.NDArray[np.float32]
Inputs = list[tuple[Array, LetterboxMeta]]
Row = dict[str, Any]


def hist_range(kind: str, hist: Any, edges: Any, mn: float, mx: float, sym: bool) -> tuple[float, float]:
    """The activation range ``kind`` (``minmax``, ``mse`` or ``pctX``) picks from one tensor's histogram;
    ``sym`` (the TensorRT format) makes it -t..t."""
    if kind == "mse":
        return mse_range((hist.astype(np.float64), edges.astype(np.float64), mn, mx), sym)
    if kind == "minmax":
        lo, hi = mn, mx
    else:
        cut = (100 - float(kind[3:])) / 100
        cdf = np.cumsum(hist) / hist.sum()
        lo = max(min(float(edges[np.searchsorted(cdf, cut)]), 0.0), mn)
        hi = min(max(float(edges[np.searchsorted(cdf, 1 - cut) + 1]), 0.0), mx)
    t = max(-lo, hi)
    return (-t, t) if sym else (lo, hi)


class Study:
    """A config's model, evaluation frames, FP32 reference, calibration data and cached INT8 models."""

    def __init__(self, config: Path, frames: int, out: Path) -> None:
        self.settings = s = load_settings(config)
        if not isinstance(s.engine, OnnxRuntimeEngineConfig):
            raise SystemExit(f"{config}: the study needs engine.backend: onnxruntime")
        self.calibration = s.engine.calibration
        self.base = s.engine.model_copy(update={"precision": "fp32"})
        self.fp32_path, sha = resolve_onnx(s.model.path, s.model.imgsz, s.model.cache_dir)
        out.mkdir(parents=True, exist_ok=True)  # cached inputs, references, histograms and models
        self.prefix = f"{out}/{config.stem}-{sha[:8]}"
        fp32 = load_engine(self.base, self.fp32_path)
        self.input_hw = hw = fp32.info.input_hw
        self.info = model_info(fp32.info.metadata, hw, s.model.path, sha, fp32.info.output_shapes)
        # FP32 detections at the reference's conf (the pseudo-labels) and at the predictions' (floor)
        self.inputs: Inputs
        self.ref: list[Detections]
        self.ref_low: list[Detections]
        cache = Path(f"{self.prefix}-inputs{frames}.pkl")
        if cache.exists():
            self.inputs, self.ref, self.ref_low = pickle.loads(cache.read_bytes())
        else:
            self.inputs = [preprocess(img, hw, fit(self.info.task)) for img in _frames(s, frames)]
            self.ref = _predict(fp32, self.inputs, self.info.head, self.params(REFERENCE_CONF))[0]
            self.ref_low = _predict(fp32, self.inputs, self.info.head, self.params(PREDICTION_CONF))[0]
            atomic_write(cache, pickle.dumps((self.inputs, self.ref, self.ref_low)))
        fp32.close()
        self.model = onnx.load(str(self.fp32_path))
        self.names: list[str] = [n.name for n in self.model.graph.node]
        self.input_name: str = self.model.graph.input[0].name
        print(f"model {self.fp32_path}, {len(self.inputs)} frames, {sum(map(len, self.ref))} FP32 detections")

    def params(self, conf: float) -> DecodeParams:
        i = self.info
        return DecodeParams(i.num_classes, conf=conf, iou=self.settings.detect.iou, keypoints=i.kpt_shape)

    @cached_property
    def cset(self) -> calibration.CalibrationSet:
        s = self.settings
        return calibration.calibration_set(self.calibration, s.cameras[0], s.model.cache_dir)

    @cached_property
    def batches(self) -> list[Array]:
        return list(calibration.batches(self.cset, self.input_hw, 1))[:CALIB_FRAMES]

    @cached_property
    def pre(self) -> Path:
        """The FP32 model after ONNX Runtime's quantization pre-processing."""
        pre = Path(f"{self.prefix}-pre.onnx")
        if not pre.exists():
            tmp = pre.with_suffix(".tmp.onnx")
            oq.quant_pre_process(str(self.fp32_path), str(tmp), skip_symbolic_shape=True)
            tmp.replace(pre)
        return pre

    @cached_property
    def histograms(self) -> dict[str, Histogram]:
        """tensor -> (counts, edges, min, max): the daemon's 2048-bin histograms, collected once (cached)."""
        path = Path(f"{self.prefix}-{self.cset.sha256[:8]}-hist{HIST_BINS}.pkl")
        if path.exists():
            return dict(pickle.loads(path.read_bytes()))
        hists = collect_histograms(self.pre, _Reader(self.input_name, self.batches), CHUNK)
        atomic_write(path, pickle.dumps(hists))
        return hists

    def float_set(self, spec: str) -> list[str]:
        """Node names to keep in float for a named set or a "+"-joined composite (see the docstring)."""
        if spec in NAMED_SETS:
            return excluded_nodes(self.names, spec)  # type: ignore[arg-type]
        ops = {n.name: n.op_type for n in self.model.graph.node}
        chosen: set[str] = set()
        for part in spec.split("+"):
            if part in ("hfa", *NAMED_SETS):
                named = "head-final+attn" if part == "hfa" else part
                chosen |= set(excluded_nodes(self.names, named))  # type: ignore[arg-type]
            elif part == "attn":
                chosen |= {n for n in self.names if "/attn/" in n}
            elif part == "concat":
                head = head_prefix(self.names)
                chosen |= {n for n in self.names if ops[n] == "Concat" and not n.startswith(head)}
            elif part.isdigit():
                chosen |= {n for n in self.names if n.startswith(f"/model.{part}/")}
            else:
                raise SystemExit(f"float set {spec!r}: unknown part {part!r}")
        return [n for n in self.names if n in chosen]

    def quantized(self, kind: str, fset: str, fmt: str = "cpu") -> tuple[Path, int]:
        """The Q/DQ model for range choice ``kind``, float set ``fset`` and format ``fmt`` (cpu: uint8
        activations; tensorrt: symmetric int8) (cached), and its float nodes."""
        excluded = self.float_set(fset)
        tag = "" if fmt == "cpu" else f"-{fmt}"
        path = Path(f"{self.prefix}-{self.cset.sha256[:8]}-{kind}-{fset}{tag}.onnx")
        if path.exists():
            return path, len(excluded)
        symmetric = fmt == "tensorrt"
        extra: dict[str, Any] = {"ActivationSymmetric": symmetric, "WeightSymmetric": True}
        extra["CalibStridedMinMax"] = CHUNK
        method = oq.CalibrationMethod.Entropy if kind == "entropy" else oq.CalibrationMethod.MinMax
        if kind == "minmax" or kind.startswith(("pct", "mse")):
            extra["TensorQuantOverrides"] = {
                t: [{"rmin": np.float32(min(lo, 0.0)), "rmax": np.float32(max(hi, 0.0))}]
                for t, (hist, edges, mn, mx) in self.histograms.items()
                for lo, hi in [hist_range(kind, hist, edges, float(mn), float(mx), symmetric)]
            }
        elif kind == "kl2048":
            extra["TensorQuantOverrides"] = self.kl_ranges()
        elif kind not in ("entropy", "ortminmax"):
            raise SystemExit(f"unknown --ranges {kind!r}: entropy, ortminmax, minmax, mse, pctX, kl2048")
        tmp, started = path.with_suffix(".tmp.onnx"), time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # ONNX Runtime's quantizer prints progress
            oq.quantize_static(
                str(self.pre),
                str(tmp),
                _Reader(self.input_name, self.batches),
                quant_format=oq.QuantFormat.QDQ,
                activation_type=oq.QuantType.QInt8 if symmetric else oq.QuantType.QUInt8,
                weight_type=oq.QuantType.QInt8,
                per_channel=True,
                calibrate_method=method,
                nodes_to_exclude=excluded,
                extra_options=extra,
            )
        _carry_metadata(self.model, tmp)
        tmp.replace(path)
        print(f"quantized {path.name} in {time.perf_counter() - started:.0f}s", flush=True)
        return path, len(excluded)

    def kl_ranges(self) -> dict[str, Any]:
        """TensorRT's entropy method: KL divergence on 2048-bin histograms of |x| (ONNX Runtime's code,
        which ``quantize_static`` runs with 128 bins only), as symmetric overrides."""
        with tempfile.TemporaryDirectory() as tmp:
            options = {"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128}
            method = oq.CalibrationMethod.Entropy
            cal = oq.create_calibrator(str(self.pre), None, f"{tmp}/aug.onnx", method, extra_options=options)
            reader = _Reader(self.input_name, self.batches)
            with contextlib.redirect_stdout(io.StringIO()):
                for start in range(0, len(self.batches), CHUNK):
                    reader.set_range(start, start + CHUNK)
                    cal.collect_data(reader)
                data = cal.compute_data()
        out = {}
        for name, tensor in data.data.items():
            t = np.float32(max(abs(float(v)) for v in tensor.range_value))
            out[name] = [{"rmin": -t, "rmax": t}]
        return out

    def predict(self, path: Path) -> list[Detections]:
        engine = load_engine(self.base, Artifact(path, precision="int8"))
        preds = _predict(engine, self.inputs, self.info.head, self.params(PREDICTION_CONF))[0]
        engine.close()
        return preds

    @cached_property
    def ref_raw(self) -> list[Array]:
        """FP32's raw main output on every 3rd evaluation frame: what output distances compare against."""
        return raw_outputs(self.model, self.inputs[::3])

    def distance(self, model: Any, step: int = 3) -> float:
        """Mean output distance to FP32 on every ``step``-th evaluation frame (a multiple of 3)."""
        pairs = zip(raw_outputs(model, self.inputs[::step]), self.ref_raw[:: step // 3], strict=True)
        return float(np.mean([_distance(got, ref, self.info.num_classes) for got, ref in pairs]))

    def score(self, name: str, preds: list[Detections], **extra: Any) -> Row:
        m50, m, per_class = coco_agreement(self.ref, preds, self.info.names)
        worst = [[k, round(v, 3)] for k, v in sorted(per_class.items(), key=lambda kv: kv[1])[:5]]
        person = per_class.get("person")
        row: Row = {"variant": name, "map50": m50, "map50_95": m, "person": person, **extra, "worst": worst}
        show = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items())
        p = "-" if person is None else f"{person:.3f}"
        print(f"{name:<28} mAP50 {m50:.3f} mAP50-95 {m:.3f} person {p} {show} worst {worst}", flush=True)
        return row


def session(model: Any) -> Any:
    """A CPU session (``model``: a path or a ModelProto) whose worker threads do not spin after a run."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    data = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def raw_outputs(model: Any, inputs: Inputs) -> list[Array]:
    sess = session(model)
    return [sess.run(None, {sess.get_inputs()[0].name: x})[0][0] for x, _ in inputs]


def latency(path: Path, x: Array, runs: int = 30) -> float:
    """Median seconds per ONNX Runtime run of the model at ``path`` on one frame."""
    sess = session(path)
    return median_seconds(lambda: sess.run(None, {sess.get_inputs()[0].name: x}), runs)


def median_seconds(run: Any, runs: int = 30) -> float:
    """Median seconds of ``run()``, after 3 untimed calls."""
    times = []
    for i in range(runs + 3):
        started = time.perf_counter()
        run()
        if i >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def resampled(study: Study, preds: list[Detections], rng: Any) -> list[float]:
    """mAP50-95 against FP32 over ``BOOTSTRAP`` resamples (with replacement) of the evaluation frames."""
    vals = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(preds), len(preds))
        with contextlib.suppress(ModelError):  # a draw without any FP32 detection: nothing to score
            ref, got = [study.ref[i] for i in idx], [preds[i] for i in idx]
            vals.append(coco_agreement(ref, got, study.info.names)[1])
    return vals


def floor(study: Study, args: argparse.Namespace) -> list[Row]:
    """OpenVINO's bf16 (``--hints``) against FP32: the agreement a near-lossless runtime gets."""
    import openvino as ov

    rows = [study.score("fp32 self", study.ref_low)]
    decode = decoder(study.info.head, study.params(PREDICTION_CONF))
    for hint in args.hints:
        compiled = ov.Core().compile_model(str(study.fp32_path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        request, preds = compiled.create_infer_request(), []
        for tensor, meta in study.inputs:
            result = request.infer({0: tensor})
            preds.append(decode(tuple(np.asarray(result[o])[0] for o in compiled.outputs), meta))
        rows.append(study.score(f"openvino {hint}", preds))
    return rows


def calib(study: Study, args: argparse.Namespace) -> list[Row]:
    """Agreement, output distance, speed vs FP32 and float nodes per float set and range choice."""
    rows, fp32_s = [], latency(study.fp32_path, study.inputs[0][0])
    for fset in args.float_set:
        for kind in args.ranges:
            path, floats = study.quantized(kind, fset, args.format)
            preds = study.predict(path)
            speed = fp32_s / latency(path, study.inputs[0][0])  # the TensorRT format: not TensorRT's speed
            extra = {"distance": study.distance(path), "speed": speed, "float_nodes": floats}
            name = f"{kind}/{fset}" + ("" if args.format == "cpu" else f"/{args.format}")
            rows.append(study.score(name, preds, ranges=kind, float_set=fset, format=args.format, **extra))
    return rows


def sensitivity(study: Study, args: argparse.Namespace) -> list[Row]:
    """Distance (every 6th frame) with only one /model.N/ block quantized, from the all-layers model."""
    rows: list[Row] = []
    head_final = set(study.float_set("head-final"))
    blocks: dict[str, set[str]] = {}
    for n in study.names:
        m = re.match(r"^/model\.(\d+)/", n)
        blocks.setdefault(m.group(1) if m else "other", set()).add(n)
    order = sorted(blocks, key=lambda b: int(b) if b.isdigit() else 1 << 30)
    plans = [("all layers", set()), ("all but head-final", head_final)]
    plans += [(f"only /model.{b}/", set(study.names) - (blocks[b] - head_final)) for b in order]
    for kind in args.ranges:
        naive = onnx.load(str(study.quantized(kind, "none")[0]))
        for name, keep in plans:
            d = study.distance(restore_float(naive, study.model, keep) if keep else naive, step=6)
            quantized = len(study.names) - len(keep)
            rows.append({"variant": f"{kind}: {name}", "ranges": kind, "distance": d, "quantized": quantized})
            print(f"{kind}: {name:<24} ({quantized:>3} nodes quantized) dist {d:.4f}", flush=True)
    return rows


def bootstrap(study: Study, args: argparse.Namespace) -> list[Row]:
    """mAP50-95 of each range choice and its spread over resamples of the evaluation frames."""
    rows, rng = [], np.random.default_rng(0)  # one generator for the run: each variant its own draws
    for kind in args.ranges:
        preds = study.predict(study.quantized(kind, args.float_set)[0])
        full = coco_agreement(study.ref, preds, study.info.names)[1]
        vals = resampled(study, preds, rng)
        lo, hi = (float(v) for v in np.percentile(vals, [5, 95]))
        row = {"variant": kind, "ranges": kind, "float_set": args.float_set, "map50_95": full}
        row |= {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "p5": lo, "p95": hi}
        rows.append(row)
        spread = f"mean {row['mean']:.3f} std {row['std']:.3f} 5-95% [{lo:.3f}, {hi:.3f}]"
        print(f"{kind}: mAP50-95 {full:.3f}, bootstrap over frames: {spread}", flush=True)
    return rows


def ov_evaluate(study: Study, model: Any, hint: str, name: str, rng: Any, **extra: Any) -> tuple[Row, float]:
    """An OpenVINO model (IR or ONNX) on the evaluation frames: agreement, its bootstrap, output distance and
    the median latency of single-frame runs (LATENCY hint, float layers in ``hint`` precision)."""
    import openvino as ov

    decode = decoder(study.info.head, study.params(PREDICTION_CONF))
    props = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(model, "CPU", props)
    request, preds, dists = compiled.create_infer_request(), [], []
    for i, (tensor, meta) in enumerate(study.inputs):
        result = request.infer({0: tensor})
        outs = tuple(np.asarray(result[o])[0] for o in compiled.outputs)
        preds.append(decode(outs, meta))
        if i % 3 == 0:
            dists.append(_distance(outs[0], study.ref_raw[i // 3], study.info.num_classes))
    x = study.inputs[0][0]
    seconds = median_seconds(lambda: request.infer({0: x}))
    boot = resampled(study, preds, rng)
    row = study.score(name, preds, distance=float(np.mean(dists)), bootstrap=float(np.mean(boot)),
                      bootstrap_std=float(np.std(boot)), ms=seconds * 1000, **extra)  # fmt: skip
    return row, seconds


def openvino_int8(study: Study, args: argparse.Namespace) -> list[Row]:
    """OpenVINO INT8 (NNCF, the daemon's own ``nncf_quantize``) per float set, its float layers in each of
    ``--hints``: agreement, its bootstrap, output distance, latency against OpenVINO f32 and ONNX Runtime
    FP32 (medians of 30 single-frame runs, LATENCY hint)."""
    import openvino as ov

    from edge_daemon.build.quant.openvino import nncf_quantize

    core, rng = ov.Core(), np.random.default_rng(0)

    def evaluate(model: Any, hint: str, name: str, **extra: Any) -> tuple[Row, float]:
        return ov_evaluate(study, model, hint, name, rng, **extra)

    ort_s = latency(study.fp32_path, study.inputs[0][0])
    row, f32_s = evaluate(core.read_model(str(study.fp32_path)), "f32", "openvino f32")
    rows = [row]
    for fset in args.float_set:
        model, floats = nncf_quantize(study.fp32_path, study.batches, fset)
        for hint in args.hints:
            row, s = evaluate(model, hint, f"nncf/{fset}/{hint}", float_set=fset, float_nodes=len(floats))
            row |= {"speed_vs_openvino_f32": f32_s / s, "speed_vs_onnxruntime_fp32": ort_s / s}
            print(f"   {f32_s / s:.2f}x OpenVINO f32, {ort_s / s:.2f}x ONNX Runtime FP32", flush=True)
            rows.append(row)
    return rows


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"floor": floor, "calib": calib, "sensitivity": sensitivity, "bootstrap": bootstrap}
    commands["openvino"] = openvino_int8
    defaults = {"calib": ["entropy", "mse"], "sensitivity": ["mse"], "bootstrap": ["entropy", "mse"]}
    for name, func in commands.items():
        p = sub.add_parser(name, help=(func.__doc__ or "").split("\n")[0])
        p.add_argument("-c", "--config", type=Path, required=True)
        p.add_argument("--frames", type=int, default=300)
        p.add_argument("--out", type=Path, default=Path(".cache/int8-study"))
        p.add_argument("--json", type=Path, help="write every row to this JSON file")
        if name in ("floor", "openvino"):
            default = ["bf16"] if name == "floor" else ["f32", "bf16"]
            p.add_argument("--hints", nargs="+", default=default, help="OpenVINO inference precisions")
        if name == "openvino":
            p.add_argument("--float-set", nargs="+", default=["head-final", "head-final+attn", "head"])
        elif name != "floor":
            p.add_argument("--ranges", nargs="+", default=defaults[name])
        if name == "calib":
            p.add_argument("--float-set", nargs="+", default=["head-final+attn"])
            p.add_argument("--format", choices=["cpu", "tensorrt"], default="cpu")
        elif name == "bootstrap":
            p.add_argument("--float-set", default="head-final+attn")
    args = parser.parse_args()
    rows = commands[args.command](Study(args.config, args.frames, args.out), args)
    if args.json:
        args.json.write_text(json.dumps({"command": args.command, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
